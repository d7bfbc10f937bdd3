"""`sketchkit raster IN OUT.png`: the model's view of a sketch (aspect kept, centred, thin lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import OverwriteOpt, QuietOpt, cell, stdout


def raster(
    source: Annotated[Path, typer.Argument(help="Input sketch.")],
    target: Annotated[Path, typer.Argument(help="Output image (grey, black ink on white) in the format its suffix names: .png, .jpg, .bmp, .tif, .webp.")],
    size: Annotated[int, typer.Option("--size", min=16, max=8192, help="Raster side in pixels.")] = 224,
    line_width: Annotated[Optional[float], typer.Option("--line-width", min=0.1, help="Line width in raster pixels.")] = None,
    ids: Annotated[Optional[Path], typer.Option("--ids", help="Also save the stroke-id map (int32, -1 = no ink) as .npy.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rasterize a sketch to a square PNG and optionally its stroke-id map.

    Example: sketchkit raster scene.svg scene.png --size 224 --ids scene_ids.npy
    """
    from sketchkit.files import check_output_path
    from sketchkit.io import read_sketch
    from sketchkit.raster import rasterize
    from sketchkit.render import save_raster

    check_output_path(target, [source], overwrite)
    if ids is not None:
        check_output_path(ids, [source, target], overwrite)
    result = rasterize(read_sketch(source, sidecar=False), size, line_width=line_width)
    save_raster(result, target, ids_path=ids, overwrite=overwrite)
    owned = int((result.stroke_ids >= 0).sum())
    if quiet:
        stdout.print(cell(target), highlight=False, soft_wrap=True)
    else:
        stdout.print(cell(f"{source} -> {target} ({size}x{size}, {owned} ink pixels)"), highlight=False, soft_wrap=True)
