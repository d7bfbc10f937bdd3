"""What every writer needs of a SegmentResult: a consistency check, per-label counts, names, provenance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sketchkit.types import SegmentResult, Sketch

UNKNOWN = "unknown"


def check_result(result: SegmentResult) -> None:
    """Raise ValueError when the arrays of a result disagree (a bug upstream, not bad user input)."""
    num_strokes, num_classes = result.sketch.num_strokes, len(result.labels)
    size = result.raster.size
    problems = []
    if result.raster.stroke_ids.shape != (size, size):
        problems.append(f"stroke_ids {result.raster.stroke_ids.shape} != ({size}, {size})")
    if result.pixel_labels.shape != (size, size):
        problems.append(f"pixel_labels {result.pixel_labels.shape} != ({size}, {size})")
    if result.scores.shape != (num_classes, size, size):
        problems.append(f"scores {result.scores.shape} != ({num_classes}, {size}, {size})")
    for name, array, shape in (("votes.labels", result.votes.labels, (num_strokes,)),
                               ("votes.confidence", result.votes.confidence, (num_strokes,))):
        if np.shape(array) != shape:
            problems.append(f"{name} {np.shape(array)} != {shape}")
    top_shape = np.shape(result.votes.top)
    if len(top_shape) != 2 or top_shape[0] != num_strokes or top_shape[1] < 1:
        problems.append(f"votes.top {top_shape} is not ({num_strokes}, K >= 1)")
    sketch = result.sketch
    for name, array in (("sketch.stroke_widths", sketch.stroke_widths), ("sketch.instance_ids", sketch.instance_ids),
                        ("sketch.labels", sketch.labels)):
        if array is not None and len(array) != num_strokes:
            problems.append(f"{name} has {len(array)} entries for {num_strokes} strokes")
    if not problems:
        if result.raster.stroke_ids.size and result.raster.stroke_ids.max() >= num_strokes:
            problems.append("stroke_ids name a stroke the sketch does not have")
        for name, array in (("pixel_labels", result.pixel_labels), ("votes.labels", result.votes.labels),
                            ("votes.top", result.votes.top)):
            if np.size(array) and (np.max(array) >= num_classes or np.min(array) < -1):
                problems.append(f"{name} hold class indices outside [-1, {num_classes})")
    for i, stroke in enumerate(result.sketch.strokes):
        if stroke.ndim != 2 or stroke.shape[1] != 2 or len(stroke) == 0 or not np.isfinite(stroke).all():
            problems.append(f"stroke {i} is not a non-empty finite (P, 2) array")
            break
    if problems:
        raise ValueError("inconsistent SegmentResult: " + "; ".join(problems))


def label_counts(result: SegmentResult) -> dict[str, int]:
    """Strokes per predicted label: every vocabulary name (0 allowed), then 'unknown' when some stroke has none."""
    labels = np.asarray(result.votes.labels, dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=len(result.labels))
    out: dict[str, int] = {}
    for name, count in zip(result.labels, counts):
        out[name] = out.get(name, 0) + int(count)  # a repeated name pools its strokes
    if (labels < 0).any():
        out[UNKNOWN] = out.get(UNKNOWN, 0) + int((labels < 0).sum())
    return out


def stroke_class_pixel_counts(result: SegmentResult) -> np.ndarray:
    """(S, C) int64: per stroke, its ink pixels (raster size) labelled with each class."""
    num_strokes, num_classes = result.sketch.num_strokes, len(result.labels)
    ids, pixel_labels = result.raster.stroke_ids, result.pixel_labels
    ink = (ids >= 0) & (pixel_labels >= 0)
    flat = ids[ink].astype(np.int64) * num_classes + pixel_labels[ink].astype(np.int64)
    return np.bincount(flat, minlength=num_strokes * num_classes).reshape(num_strokes, num_classes)


def finite_or_none(value: float, digits: int = 4) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def plain_number(value: float) -> int | float:
    """An int when the value is integral (canvas 1100 -> 1100), else the float."""
    value = float(value)
    return int(value) if value.is_integer() else value


def source_name(sketch: Sketch, index: int | None = None) -> str:
    if sketch.source:
        return Path(sketch.source).stem
    return "sketch" if index is None else f"sketch-{index}"


def result_sources(results: list[SegmentResult]) -> list[str]:
    return [r.sketch.source for r in results if r.sketch.source]


def provenance(result: SegmentResult) -> dict:
    """How the result was made, recorded by every output format: the model (and its weights: backbone,
    fingerprint, adapter path and SHA-256 prefix), the scoring rule, the threshold, and what the reader
    skipped in the input."""
    return {"model": result.model, "weights": result.weights, "scoring": result.scoring, "threshold": result.threshold,
            "skipped": dict(result.sketch.skipped or {})}
