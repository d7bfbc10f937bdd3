"""The sketchkit result JSON, both directions: `segment --format json` writes it, every reader reads it back.

    text = result_to_json(result)                 # writer
    sketch = read_result_json(doc, path)          # reader: the strokes with their predicted labels

Document (format "sketchkit-result", version 2):
    format, format_version, sketchkit_version, source, caption, canvas [w, h], raster_size,
    model, weights, scoring, threshold, skipped (the provenance every output records),
    labels (the C class names), label_counts {name: strokes},
    strokes: one object per stroke, in order:
        index, label (predicted name or null), confidence, top [{label, votes_share}],
        num_points, num_pixels, points [[x, y], ...] (canvas units), width (canvas units, when known),
        gt_label (when the sketch had labels), instance (when known), source_id (when known).
Read back, a stroke's `label` becomes the sketch's label of that stroke (as `data-label` does for
the labelled SVG), so `convert out.json out.svg` draws the same labelled strokes.
"""

from __future__ import annotations

import json

import numpy as np

import sketchkit
from sketchkit.errors import InputError
from sketchkit.results import finite_or_none, label_counts, plain_number, provenance, stroke_class_pixel_counts
from sketchkit.types import SegmentResult, Sketch

RESULT_FORMAT = "sketchkit-result"
RESULT_FORMAT_VERSION = 2


def is_result_document(doc: object) -> bool:
    return isinstance(doc, dict) and doc.get("format") == RESULT_FORMAT


def _stroke_entry(result: SegmentResult, i: int, points: np.ndarray, pixel_counts: np.ndarray,
                  totals: np.ndarray, widths) -> dict:
    sketch, labels = result.sketch, np.asarray(result.votes.labels)
    top = []
    for c in np.asarray(result.votes.top[i]):
        if c < 0:
            continue
        entry: dict = {"label": result.labels[c]}
        if totals[i] > 0:
            entry["votes_share"] = round(float(pixel_counts[i, c] / totals[i]), 4)
        top.append(entry)
    stroke = {
        "index": i,
        "label": result.labels[labels[i]] if labels[i] >= 0 else None,
        "confidence": finite_or_none(result.votes.confidence[i]),
        "top": top,
        "num_points": int(len(points)),
        "num_pixels": int(totals[i]),
        "points": [[plain_number(x), plain_number(y)] for x, y in np.asarray(points, dtype=np.float64)],
    }
    if widths is not None and np.isfinite(widths[i]):
        stroke["width"] = plain_number(widths[i])
    if sketch.labels is not None:
        stroke["gt_label"] = sketch.labels[i]
    if sketch.instance_ids is not None and sketch.instance_ids[i] >= 0:
        stroke["instance"] = int(sketch.instance_ids[i])
    if sketch.source_ids is not None and sketch.source_ids[i] is not None:
        stroke["source_id"] = sketch.source_ids[i]
    return stroke


def result_to_dict(result: SegmentResult) -> dict:
    """The JSON document as a dict: numbers are numbers, no NaN (non-finite values become null).

    `top` entries carry `votes_share`: the share of the stroke's ink pixels (at raster size) labelled
    with that class; it is left out for a stroke with no ink pixel at raster size.
    """
    sketch = result.sketch
    pixel_counts = stroke_class_pixel_counts(result)
    totals = pixel_counts.sum(axis=1)
    widths = None if sketch.stroke_widths is None else np.asarray(sketch.stroke_widths, dtype=np.float64)
    strokes = [_stroke_entry(result, i, points, pixel_counts, totals, widths) for i, points in enumerate(sketch.strokes)]
    return {
        "format": RESULT_FORMAT,
        "format_version": RESULT_FORMAT_VERSION,
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
    """`result_to_dict` as JSON text: indented, one line per stroke (points stay on their stroke's line),
    strokes last. Strict: NaN would raise, and none is produced."""
    doc = result_to_dict(result)
    strokes = doc.pop("strokes")

    def dump(value, **kwargs) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **kwargs)

    head = dump(doc, indent=2)[:-2]  # without the closing "\n}"
    rows = ",\n".join("    " + dump(stroke, separators=(", ", ": ")) for stroke in strokes)
    return f"{head},\n  \"strokes\": [\n{rows}\n  ]\n}}\n"


def _points(value: object, index: int, path) -> np.ndarray:
    try:
        points = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"stroke {index}: points are not a list of [x, y] numbers", path) from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise InputError(f"stroke {index}: points must be a non-empty list of [x, y] pairs", path)
    if not np.isfinite(points).all():
        raise InputError(f"stroke {index}: points hold a non-finite number", path)
    return points


def read_result_json(doc: dict, path) -> Sketch:
    """A sketchkit result document -> the Sketch, each stroke labelled with its predicted label."""
    if int(doc.get("format_version", 0)) > RESULT_FORMAT_VERSION:
        raise InputError(f"result format version {doc.get('format_version')} is newer than this sketchkit reads "
                         f"({RESULT_FORMAT_VERSION})", path)
    strokes = doc.get("strokes")
    canvas = doc.get("canvas")
    if not isinstance(strokes, list) or not strokes or not all(isinstance(s, dict) for s in strokes):
        raise InputError("a sketchkit result needs a non-empty list of stroke objects", path)
    if not (isinstance(canvas, list) and len(canvas) == 2 and all(isinstance(v, (int, float)) for v in canvas)):
        raise InputError("a sketchkit result needs canvas [width, height]", path)
    if any("points" not in s for s in strokes):
        raise InputError("this sketchkit result has no stroke geometry (written by a version before format 2)", path)
    points = tuple(_points(s["points"], i, path) for i, s in enumerate(strokes))
    labels = tuple(s.get("label") if isinstance(s.get("label"), str) else None for s in strokes)
    widths = [s.get("width") for s in strokes]
    instances = [s.get("instance") for s in strokes]
    source_ids = [s.get("source_id") if isinstance(s.get("source_id"), str) else None for s in strokes]
    return Sketch(
        strokes=points, width=float(canvas[0]), height=float(canvas[1]),
        stroke_widths=np.array(widths, dtype=np.float64) if all(isinstance(w, (int, float)) for w in widths) else None,
        labels=labels if any(n is not None for n in labels) else None,
        instance_ids=np.array([v if isinstance(v, int) else -1 for v in instances], dtype=np.int64)
        if any(isinstance(v, int) for v in instances) else None,
        caption=doc.get("caption") if isinstance(doc.get("caption"), str) else None,
        source_ids=tuple(source_ids) if any(source_ids) else None,
        skipped=dict(doc["skipped"]) if isinstance(doc.get("skipped"), dict) else None,
    )
