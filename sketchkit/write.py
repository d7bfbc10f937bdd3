"""Write segmentation results: labelled SVG, HDF5, PNG overlay, JSON. Every file is written atomically.

    write_result(result, "scene.svg")                 # format from the suffix
    write_result(result, "scene.out", fmt="json")

Formats, each owned by its module:
- svg:  `sketchkit.io.svg_writer` (read back by `sketchkit.io.svg`): the sketch in its own canvas
        units, one `<path>` per stroke coloured by predicted label, metadata, a legend.
- png:  `sketchkit.render.render_overlay`: strokes at 512 px coloured by label, a title bar, a legend.
- json: here: per-stroke labels, confidence, top-3 and point counts; per-label stroke counts.
- h5:   `sketchkit.io.hdf5` (schema: docs/hdf5.md): everything needed to re-score without the model.
Every format records the model, the scoring rule and the threshold (`sketchkit.results.provenance`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import sketchkit
from sketchkit.errors import UsageError
from sketchkit.files import atomic_write_bytes, atomic_write_text, check_output_path
from sketchkit.results import (check_result, finite_or_none, label_counts, plain_number, provenance, result_sources,
                               stroke_class_pixel_counts)
from sketchkit.types import SegmentResult

FORMATS = ("svg", "h5", "png", "json")
_SUFFIX_FORMATS = {".svg": "svg", ".h5": "h5", ".hdf5": "h5", ".png": "png", ".json": "json"}


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
            f"use one of {', '.join(_SUFFIX_FORMATS)} or give the format explicitly"
        )
    return _SUFFIX_FORMATS[suffix]


def write_result(result: SegmentResult, path: str | os.PathLike, fmt: str | None = None, *,
                 overwrite: bool = True) -> Path:
    """Write one result as svg, h5, png or json (`fmt`, else from the suffix: .svg .h5 .hdf5 .png .json).

    Returns the path written. UsageError for an unknown format, for a path that is the sketch's
    own source file, and for an existing path when overwrite is False.
    """
    path = Path(path)
    fmt = _format_from_path(path, fmt)
    check_result(result)
    check_output_path(path, result_sources([result]), overwrite)
    if fmt == "svg":
        from sketchkit.io.svg_writer import result_to_svg

        return atomic_write_text(path, result_to_svg(result), overwrite=overwrite)
    if fmt == "json":
        return atomic_write_text(path, result_to_json(result), overwrite=overwrite)
    if fmt == "png":
        from sketchkit.render import png_bytes, render_overlay

        return atomic_write_bytes(path, png_bytes(render_overlay(result)), overwrite=overwrite)
    from sketchkit.io.hdf5 import write_results_h5

    return write_results_h5([result], path, overwrite=overwrite)


# -------------------------------------------------------------------------------------------- svg


def result_to_dict(result: SegmentResult) -> dict:
    """The JSON document as a dict: numbers are numbers, no NaN (non-finite values become null).

    top3 entries carry `votes_share`: the share of the stroke's ink pixels (at raster size) labelled
    with that class; it is left out for a stroke with no ink pixel at raster size.
    """
    sketch = result.sketch
    names = result.stroke_label_names
    labels = np.asarray(result.votes.labels)
    pixel_counts = stroke_class_pixel_counts(result)
    totals = pixel_counts.sum(axis=1)
    strokes = []
    for i, points in enumerate(sketch.strokes):
        top3 = []
        for c in np.asarray(result.votes.top3[i]):
            if c < 0:
                continue
            entry: dict = {"label": result.labels[c]}
            if totals[i] > 0:
                entry["votes_share"] = round(float(pixel_counts[i, c] / totals[i]), 4)
            top3.append(entry)
        stroke = {
            "index": i,
            "label": names[i] if labels[i] >= 0 else None,
            "confidence": finite_or_none(result.votes.confidence[i]),
            "top3": top3,
            "num_points": int(len(points)),
            "num_pixels": int(totals[i]),
        }
        if sketch.labels is not None:
            stroke["gt_label"] = sketch.labels[i]
        if sketch.instance_ids is not None and sketch.instance_ids[i] >= 0:
            stroke["instance"] = int(sketch.instance_ids[i])
        strokes.append(stroke)
    return {
        "sketchkit_version": sketchkit.__version__,
        "source": sketch.source,
        **provenance(result),
        "labels": list(result.labels),
        "caption": sketch.caption,
        "canvas": [plain_number(sketch.width), plain_number(sketch.height)],
        "raster_size": result.raster.size,
        "strokes": strokes,
        "label_counts": label_counts(result),
    }


def result_to_json(result: SegmentResult) -> str:
    """`result_to_dict` as indented JSON text (strict: NaN would raise, and none is produced)."""
    return json.dumps(result_to_dict(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# -------------------------------------------------------------------------------------------- png


# ------------------------------------------------------------------------------------------- hdf5


