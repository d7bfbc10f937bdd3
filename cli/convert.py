"""`sketchkit convert IN OUT`: any readable sketch to any writer, chosen by OUT's extension.

Examples:
    sketchkit convert scene.json scene.svg      # FrISS JSON -> labelled SVG (ground-truth labels)
    sketchkit convert drawing.png drawing.svg   # bitmap -> pseudo-strokes as SVG paths
    sketchkit convert scene.svg scene.h5
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import OverwriteOpt, QuietOpt, cell, stdout


def convert(
    source: Annotated[Path, typer.Argument(help="Input sketch (SVG, PNG/JPG, FrISS JSON, QuickDraw ndjson, FS-COCO .npy).")],
    target: Annotated[Path, typer.Argument(help="Output: .svg, .h5, .png (overlay), .json, or a .masks folder.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="svg | json | png | h5 | masks, when the output's suffix does not say it.")] = None,
    palette: Annotated[Optional[str], typer.Option("--palette", help="Label colours: a matplotlib colormap name or a JSON file {label: colour}.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convert a sketch between formats, keeping strokes and their labels.

    Example: sketchkit convert scene.json scene.svg
    """
    from sketchkit.files import check_output_path
    from sketchkit.inference import ground_truth_result
    from sketchkit.io import read_sketch
    from sketchkit.render import Palette
    from sketchkit.write import write_result

    if fmt != "masks" and not target.suffix.lower() == ".masks":
        check_output_path(target, [source], overwrite)
    colours = Palette.from_spec(palette)
    sketch = read_sketch(source)
    path = write_result(ground_truth_result(sketch), target, fmt, overwrite=overwrite, palette=colours)
    if quiet:
        stdout.print(cell(path), highlight=False, soft_wrap=True)
    else:
        labelled = sum(label is not None for label in (sketch.labels or ()))
        stdout.print(cell(f"{source} -> {path}: {sketch.num_strokes} strokes, {labelled} labelled"), highlight=False,
                     soft_wrap=True)
