"""`eval --protocol reference`: the reference code's evaluation geometry (`test.py`, `utils.py`).

Per sketch, in the reference's 512-px frame (`sketchkit.reference.frame`): the ground truth drawn from
1-px Bresenham footprints with the cross dilation, a pixel covered by several strokes going to the class
with the most covering strokes (ties: the first of the sorted class list); the prediction's class at
every pixel; each stroke labelled by the mode of the predictions over its whole footprint (ties: the
smaller index; no pixel: blank); Acc@P over ground-truth ink pixels, Acc@S over labelled strokes,
mIoU over the classes with a non-empty union (each IoU float32); averaged over sketches.

Any method can be scored this way: a method scored the reference way already predicts in this frame;
the others' maps are read at the frame's pixel centres (bilinear, through the canvas), and exact
methods (the oracle) are asked at the frame directly (their own strokes, so the oracle is not 100:
its 1.5-px lines are not the reference's dilated Bresenham footprints).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..metrics import SketchScore
from ..reference import ReferenceView
from ..reference import evaluate as reference_eval
from ..types import SegmentResult, Transform


def sample_scores(scores: np.ndarray, source: Transform, target: Transform) -> np.ndarray:
    """(C, n, n) `scores` of a raster with transform `source` read at the pixel centres of a raster with
    transform `target` (n = target.size): bilinear with the half-pixel convention of
    torch.nn.functional.interpolate (align_corners=False), edges clamped."""
    scores = np.asarray(scores, dtype=np.float32)
    if source == target:
        return scores
    centres = np.arange(target.size, dtype=np.float64) + 0.5
    canvas_x = (centres - target.offset_x) / target.scale
    canvas_y = (centres - target.offset_y) / target.scale
    height, width = scores.shape[1:]

    def axis(canvas, offset, extent):
        source_px = canvas * source.scale + offset - 0.5
        clamped = np.clip(source_px, 0, extent - 1)
        low = np.minimum(np.floor(clamped).astype(np.int64), extent - 1)
        return low, np.minimum(low + 1, extent - 1), (clamped - low).astype(np.float32)

    y0, y1, wy = axis(canvas_y, source.offset_y, height)
    x0, x1, wx = axis(canvas_x, source.offset_x, width)
    top = scores[:, y0][:, :, x0] * (1 - wx) + scores[:, y0][:, :, x1] * wx
    bottom = scores[:, y1][:, :, x0] * (1 - wx) + scores[:, y1][:, :, x1] * wx
    return top * (1 - wy)[None, :, None] + bottom * wy[None, :, None]


def frame_scores(result: SegmentResult, view: ReferenceView, segmenter=None, features=None) -> np.ndarray:
    """(C, 512, 512) the result's class scores over the reference frame."""
    if segmenter is not None and segmenter.exact and result.threshold is None:
        return np.asarray(segmenter.score_at(features, list(result.labels), view.transform,
                                             np.arange(result.sketch.num_strokes)))
    return sample_scores(result.scores, result.raster.transform, view.transform)


def score_reference(result: SegmentResult, view: ReferenceView, true_names: Sequence[str | None],
                    classes: Sequence[str], scores: np.ndarray, name: str = "") -> SketchScore:
    """One sketch's reference metrics. true_names: per-stroke true class name (None: unlabelled or outside
    the vocabulary); classes: the scored class list, sorted as the reference sorts it; scores: the
    result's `frame_scores`. Predicted names outside `classes` (background) count as blank."""
    classes = list(classes)
    index = {n: i for i, n in enumerate(classes)}
    lookup = np.array([index.get(n, -1) for n in result.labels] + [-1], dtype=np.int64)
    predicted = lookup[np.asarray(scores).argmax(axis=0)]
    true_strokes = np.array([index.get(n, -1) if n is not None else -1 for n in true_names], dtype=np.int64)
    truth = reference_eval.gt_pixel_classes(view.footprints, true_strokes, len(classes))
    pred_strokes = reference_eval.stroke_votes(predicted, view.footprints)
    return reference_eval.score(predicted, truth, pred_strokes, true_strokes, len(classes), name)


def summarise(scores: Sequence[SketchScore]) -> dict[str, float | None]:
    """The reference's averages over sketches, in percent (None when no sketch defines the metric)."""
    out = {}
    for key in ("acc_p", "acc_s", "miou"):
        values = np.array([getattr(s, key) for s in scores], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[key] = float(values.mean() * 100) if len(values) else None
    return out


def summarise_means(means: dict) -> dict[str, float | None]:
    """`summarise` from running sums (`metrics.MeanOfDefined` per metric), in percent."""
    return {key: (means[key].mean * 100 if means[key].count else None) for key in ("acc_p", "acc_s", "miou")}
