"""`sketchkit doctor`: versions, devices, kernels and how weights would resolve."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ._errors import HINT_FLAGS
from ._options import BackboneOpt, QuietOpt, WeightsOpt, cell, stdout


def doctor(
    backbone: BackboneOpt = None,
    weights: WeightsOpt = None,
    check_weights: Annotated[bool, typer.Option("--check-weights/--no-check-weights", help="Try to resolve the backbone weights (may download).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON (a list of {item, status, ok}).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Print what sketchkit sees on this machine; exit 1 when something must be fixed (e.g. weights).

    Example: sketchkit doctor --backbone ViT-B-16 --weights ~/weights/vit-b-16.safetensors
    """
    from sketchkit.diagnostics import collect

    checks = collect(backbone, str(weights) if weights else None, check_weights=check_weights)
    if as_json:
        stdout.print_json(json.dumps([c.to_dict() for c in checks]))
    elif not quiet:
        table = Table(title="sketchkit doctor", show_header=False)
        table.add_column("item", style="bold")
        table.add_column("status", overflow="fold")
        for check in checks:
            status = check.status if check.ok or check.item != "weights" else f"{check.status} ({HINT_FLAGS['weights']})"
            table.add_row(cell(check.item), Text(status, style="" if check.ok else "red"))
        stdout.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
