"""Evaluation geometry: which ink the pixel metrics count and how a prediction is read there.

The model sees its own raster (224 px). Strokes are scored from its majority vote (strokes hidden
there re-voted at 4x). Pixels are scored at `eval_size` (default 512, the reference scripts'
resolution) over the ink of the sketch drawn at that size with the model raster's framing: a
model's maps are bilinearly upsampled (align_corners=False, read at the ink pixels only), except
for `exact` methods (the oracle), which are asked at eval size on the full stroke set, so the
oracle scores 100 at every resolution.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UsageError
from ..raster import rasterize
from ..types import SegmentResult, Sketch, Transform
from ..vote import bilinear_at
from .report import ModelResult, PredictionRecord
from .vocabulary import Vocabulary


def eval_stroke_ids(sketch: Sketch, transform: Transform, eval_size: int) -> np.ndarray:
    """(E, E) int32 stroke id per pixel (-1 = no ink) of the sketch drawn at `eval_size` with the
    framing of `transform` (the model raster's): the ink the pixel metrics count."""
    return rasterize(sketch, eval_size, transform=transform.resized(eval_size)).stroke_ids


def eval_pixel_labels(result: SegmentResult, ids: np.ndarray, *, segmenter=None, features=None) -> np.ndarray:
    """(E, E) int32 predicted class (index into result.labels) at each ink pixel of `ids`, -1 elsewhere.

    An `exact` segmenter (with the features it encoded) is asked at eval size for the full stroke
    set; otherwise the result's maps are bilinearly upsampled, at the ink pixels only.
    """
    size = ids.shape[0]
    ink = ids >= 0
    out = np.full(ids.shape, -1, dtype=np.int32)
    if not ink.any():
        return out
    if segmenter is not None and segmenter.exact and result.threshold is None:
        transform = result.raster.transform.resized(size)
        strokes = np.arange(result.sketch.num_strokes)
        at = np.asarray(segmenter.score_at(features, list(result.labels), transform, strokes))[:, ink]
    else:
        rows, cols = np.nonzero(ink)
        at = bilinear_at(result.scores, rows, cols, size)
    out[ink] = at.argmax(axis=0)
    return out


def add_scored(result: ModelResult, sketch: Sketch, labels: Sequence[str], stroke_labels: np.ndarray,
               pixel_labels: np.ndarray, ids: np.ndarray, transform: Transform, vocab: Vocabulary,
               global_names: list[str], name: str, order: int | None = None) -> None:
    """Score one prediction given in its own label space (local indices, -1 = none) into `result`.
    A predicted name outside `global_names` ("background" after a threshold) counts as no prediction.
    `order`: the sketch's place in the input (the gallery's tie-break; default: sketches scored so far)."""
    index = {n: i for i, n in enumerate(global_names)}
    lookup = np.array([index.get(n, -1) for n in labels] + [-1], dtype=np.int64)
    true_strokes = vocab.stroke_classes(sketch, global_names)
    pred_strokes = lookup[np.asarray(stroke_labels, dtype=np.int64)]
    ink = ids >= 0
    order = result.evaluator.count if order is None else order
    score = result.evaluator.add(lookup[pixel_labels[ink]], true_strokes[ids[ink]], pred_strokes, true_strokes, name=name)
    excluded = vocab.excluded(sketch)
    result.excluded_classes.update(excluded)
    result.excluded_strokes += sum(excluded.values())
    record = PredictionRecord(sketch, transform, pred_strokes, true_strokes)
    result.gallery.add(order, score, record)
    if result.evaluator.keep_scores:
        result.records.append(record)


def split_scorable(sketches: Sequence[Sketch], vocab: Vocabulary) -> tuple[list[Sketch], list[str]]:
    """(sketches with a stroke in the vocabulary, names of the others)."""
    kept = [s for s in sketches if vocab.scorable(s)]
    skipped = [s.source or f"sketch {i}" for i, s in enumerate(sketches) if not vocab.scorable(s)]
    return kept, skipped


def check_eval_size(eval_size: int) -> None:
    if isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 16:
        raise UsageError(f"the evaluation size must be a whole number of at least 16, got {eval_size!r}")
