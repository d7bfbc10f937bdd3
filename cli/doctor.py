"""`sketchkit doctor`: versions, devices, kernels and how weights would resolve."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ._options import BackboneOpt, WeightsOpt, stdout


def doctor(
    backbone: BackboneOpt = "ViT-B-16",
    weights: WeightsOpt = None,
    check_weights: Annotated[bool, typer.Option("--check-weights/--no-check-weights", help="Try to resolve the backbone weights (may download).")] = True,
) -> None:
    """Print what sketchkit sees on this machine, so set-up problems can be fixed alone."""
    from sketchkit.diagnostics import collect

    table = Table(title="sketchkit doctor", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("status", overflow="fold")
    for item, status in collect(backbone, str(weights) if weights else None, check_weights=check_weights):
        table.add_row(item, status)
    stdout.print(table)
