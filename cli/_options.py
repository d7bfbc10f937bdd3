"""Options shared by several commands, declared once (same flag, same meaning), and the consoles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stdout = Console()
stderr = Console(stderr=True)

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="sketchkit | clip-surgery | clip | oracle (comma list in eval). Default: sketchkit with --adapter, else clip-surgery."),
]
BackboneOpt = Annotated[
    Optional[str],
    typer.Option("--backbone", help="Backbone config: ViT-B-16 or tiny-random (random weights, for tests/offline demos). Default: the adapter's, else ViT-B-16."),
]
WeightsOpt = Annotated[
    Optional[Path],
    typer.Option("--weights", help="Backbone weights (.safetensors, or .pt/.bin read with weights_only). Else $SKETCHKIT_WEIGHTS, else open_clip's download."),
]
AdapterOpt = Annotated[Optional[Path], typer.Option("--adapter", help="Trained adapter (.safetensors) from `sketchkit train`.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Sketches encoded per batch.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="Run the image encoder under torch.compile (the first batch of each size compiles: seconds to a minute).")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Keep only pixels whose min-max normalised score reaches T (paper: 0.71); others become 'background'.")]
ScoringOpt = Annotated[Optional[str], typer.Option("--scoring", help="paper (cosine, bicubic maps, majority vote) | reference (the reference code's test.py, quirks included; imported reference models). Default: reference for an imported reference model, else paper.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N sketches.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable input instead of skipping it.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only result paths / numbers.")]
JsonOutOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write machine-readable results to this JSON file.")]


class _Progress(Progress):
    """A Progress that leaves no bar behind when an error ends it: the error's one line stands alone."""

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None or self.disable:
            return super().__exit__(exc_type, exc, traceback)
        self.live.transient = True  # erased on a terminal, never printed to a file (Progress.stop adds a blank line)
        self.live.stop()


def progress(*, transient: bool = False, disable: bool = False) -> Progress:
    """A rich progress bar on stderr (stdout stays clean for results)."""
    return _Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=transient,
        disable=disable,
    )


def announce_model(segmenter, quiet: bool = False) -> None:
    """Say which model runs; a random-weight model is a warning (its labels are meaningless)."""
    if quiet:
        return
    if segmenter.random_weights:
        stderr.print(Text.assemble(("Warning:", "yellow"), f" model: {segmenter.description}; labels are meaningless "
                                   "(test/demo model)."), highlight=False)
    else:
        stderr.print(Text(f"model: {segmenter.description}"), highlight=False)


def cell(value) -> Text:
    """A table cell shown as plain text (file names and labels may hold '[...]', which Rich would parse as markup)."""
    return value if isinstance(value, Text) else Text(str(value))
