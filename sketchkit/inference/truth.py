"""A sketch's own ground-truth labels as a SegmentResult, so every writer can draw them (`convert`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..raster import DEFAULT_SIZE, rasterize
from ..types import SegmentResult, Sketch, StrokeVotes


def ground_truth_result(sketch: Sketch, size: int = DEFAULT_SIZE, *, names: Sequence[str] | None = None) -> SegmentResult:
    """Unlabelled strokes stay unlabelled (-1); pixel maps are the labels drawn through the stroke-id map.

    `names`: the label list (its order sets the colours), default the sketch's names in order of first
    appearance; a stroke label missing from it counts as unlabelled."""
    raster = rasterize(sketch, size)
    names = sketch.label_names() if names is None else list(names)
    stroke_labels = sketch.label_indices(names).astype(np.int32)
    ids = raster.stroke_ids
    pixel = np.where(ids >= 0, stroke_labels[np.clip(ids, 0, None)] if len(stroke_labels) else -1, -1).astype(np.int32)
    scores = np.zeros((len(names), size, size), dtype=np.float32)
    rows, cols = np.nonzero(pixel >= 0)
    scores[pixel[rows, cols], rows, cols] = 1.0
    votes = StrokeVotes(stroke_labels, (stroke_labels >= 0).astype(np.float32), stroke_labels[:, None].copy())
    return SegmentResult(sketch, raster, tuple(names), scores, pixel, votes, model="ground truth", scoring="ground truth")
