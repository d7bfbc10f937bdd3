"""Write segmentation results: labelled SVG, HDF5, PNG overlay, JSON. Every file is written atomically.

    write_result(result, "scene.svg")                 # format from the suffix
    write_result(result, "scene.out", fmt="json")

Formats, each owned by its module:
- svg:  `sketchkit.io.svg_writer` (read back by `sketchkit.io.svg`): the sketch in its own canvas
        units, one `<path>` per stroke coloured by predicted label, metadata, a legend.
- png:  `sketchkit.render.render_overlay`: strokes at 512 px coloured by label, a title bar, a legend.
- json: `sketchkit.io.result_json`: per-stroke labels, confidence, top-k, geometry; per-label counts.
- h5:   `sketchkit.io.hdf5` (schema: docs/hdf5.md): everything needed to re-score without the model.
- masks: `sketchkit.io.masks`: a folder with one PNG per label, index.png and labels.txt.
Run-level outputs (a CSV summary, one COCO JSON for a whole run): `sketchkit.io.summary`.
Every format records the model, the scoring rule and the threshold (`sketchkit.results.provenance`).
"""

from __future__ import annotations

import os
from pathlib import Path

from sketchkit.errors import UsageError
from sketchkit.files import atomic_write_bytes, atomic_write_text, check_output_path
from sketchkit.render import Palette
from sketchkit.results import check_result, result_sources
from sketchkit.types import SegmentResult

FORMATS = ("svg", "h5", "png", "json", "masks")
_SUFFIX_FORMATS = {".svg": "svg", ".h5": "h5", ".hdf5": "h5", ".png": "png", ".json": "json", ".masks": "masks"}


def _format_from_path(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = "h5" if fmt == "hdf5" else fmt
        if fmt not in FORMATS:
            raise UsageError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise UsageError(
            f"cannot tell the output format of {path} from its suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(_SUFFIX_FORMATS)}"
        )
    return _SUFFIX_FORMATS[suffix]


def write_result(result: SegmentResult, path: str | os.PathLike, fmt: str | None = None, *,
                 overwrite: bool = True, palette: Palette | None = None, scores: str | None = None) -> Path:
    """Write one result as svg, h5, png, json or masks (`fmt`, else from the suffix: .svg .h5 .hdf5 .png
    .json .masks, the last a folder of per-label PNGs). `palette` colours the svg and png. `scores`
    ("none", "fp16", "top1"): h5 in the compact columnar layout keeping that much of the score maps;
    None: the per-sketch-group layout with float16 scores (docs/hdf5.md).

    Returns the path written. UsageError for an unknown format, for a path that is the sketch's
    own source file, and for an existing path when overwrite is False.
    """
    path = Path(path)
    fmt = _format_from_path(path, fmt)
    check_result(result)
    if fmt == "masks":
        from sketchkit.io.masks import write_masks

        if path.exists() and (not path.is_dir() or not overwrite):
            raise UsageError(f"output {path} exists" + ("" if path.is_dir() else " and is not a folder"),
                             hint="overwrite" if path.is_dir() else None)
        return write_masks(result, path, overwrite=overwrite)
    check_output_path(path, result_sources([result]), overwrite)
    if fmt == "svg":
        from sketchkit.io.svg_writer import result_to_svg

        return atomic_write_text(path, result_to_svg(result, palette), overwrite=overwrite)
    if fmt == "json":
        from sketchkit.io.result_json import result_to_json

        return atomic_write_text(path, result_to_json(result), overwrite=overwrite)
    if fmt == "png":
        from sketchkit.render import png_bytes, render_overlay

        return atomic_write_bytes(path, png_bytes(render_overlay(result, palette=palette)), overwrite=overwrite)
    if scores is not None:
        from sketchkit.io.hdf5_columnar import write_columnar_h5

        return write_columnar_h5([result], path, scores=scores, overwrite=overwrite)
    from sketchkit.io.hdf5 import write_results_h5

    return write_results_h5([result], path, overwrite=overwrite)




# -------------------------------------------------------------------------------------------- png


# ------------------------------------------------------------------------------------------- hdf5


