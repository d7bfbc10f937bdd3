"""Acc@P, Acc@S and mIoU exactly as method.md defines them, under both protocols of the field.

- Per sketch (the CVPR 2024 paper): each metric computed on one sketch, then averaged over the
  sketches where it is defined.
- Dataset level (CAVT, WACV 2025): one pixel and one stroke confusion matrix summed over the set;
  overall accuracy, mean class accuracy, mIoU and frequency-weighted IoU from them.

Inputs use one class index space of size C. Pixel maps: int arrays, -1 = not evaluated; only
pixels whose TRUE label is >= 0 count (a prediction of -1 there is simply wrong). Strokes: (S,)
int arrays; strokes whose true label is -1 (unlabelled, or outside the vocabulary) are excluded.
Confusion matrices have rows = truth, columns = prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def confusion(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C + 1) int64 counts over elements with true >= 0: rows = truth, columns = prediction,
    the last column = predictions outside [0, C) (e.g. -1, nothing predicted), which are wrong."""
    pred = np.asarray(pred).ravel()
    true = np.asarray(true).ravel()
    keep = true >= 0
    pred, true = pred[keep].astype(np.int64), true[keep].astype(np.int64)
    valid = (pred >= 0) & (pred < num_classes)
    cols = np.where(valid, pred, num_classes)
    counts = np.bincount(true * (num_classes + 1) + cols, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def _accuracy(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix[:, : matrix.shape[0]]) / total) if total else math.nan


def _ious(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and a mask of classes with a non-empty union."""
    c = matrix.shape[0]
    square = matrix[:, :c]
    tp = np.diag(square).astype(np.float64)
    true_total = matrix.sum(1)  # includes invalid predictions
    pred_total = square.sum(0)
    union = true_total + pred_total - tp
    defined = union > 0
    return np.where(defined, tp / np.maximum(union, 1), np.nan), defined


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


@dataclass(frozen=True)
class SketchScore:
    """One sketch's metrics as fractions in [0, 1] (NaN when undefined) and its sizes."""

    name: str
    acc_p: float
    acc_s: float
    miou: float
    pixels: int
    strokes: int


def score_sketch(pred_pixels, true_pixels, pred_strokes, true_strokes, num_classes: int, name: str = "") -> SketchScore:
    pixel = confusion(pred_pixels, true_pixels, num_classes)
    stroke = confusion(pred_strokes, true_strokes, num_classes)
    ious, defined = _ious(pixel)
    return SketchScore(
        name=name,
        acc_p=_accuracy(pixel),
        acc_s=_accuracy(stroke),
        miou=float(ious[defined].mean()) if defined.any() else math.nan,
        pixels=int(pixel.sum()),
        strokes=int(stroke.sum()),
    )


def _pct(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(100.0 * float(value), 4)


@dataclass
class Scores:
    """Summary of a set: `per_sketch` means and `dataset` (pooled confusion) metrics, fractions."""

    per_sketch: dict[str, float]
    dataset: dict[str, float]

    def to_dict(self) -> dict:
        """Percentages 0-100 as plain floats; None where undefined (valid JSON, no NaN)."""
        return {
            "per_sketch": {k: _pct(v) for k, v in self.per_sketch.items()},
            "dataset": {k: _pct(v) for k, v in self.dataset.items()},
        }


@dataclass
class Evaluator:
    """Accumulates per-sketch scores and the pooled confusion matrices over a fixed class list."""

    class_names: list[str]
    sketch_scores: list[SketchScore] = field(default_factory=list)

    def __post_init__(self):
        c = len(self.class_names)
        self.pixel_confusion = np.zeros((c, c + 1), dtype=np.int64)
        self.stroke_confusion = np.zeros((c, c + 1), dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def add(self, pred_pixels, true_pixels, pred_strokes, true_strokes, name: str = "") -> SketchScore:
        c = self.num_classes
        pixel = confusion(pred_pixels, true_pixels, c)
        stroke = confusion(pred_strokes, true_strokes, c)
        self.pixel_confusion += pixel
        self.stroke_confusion += stroke
        score = score_sketch(pred_pixels, true_pixels, pred_strokes, true_strokes, c, name)
        self.sketch_scores.append(score)
        return score

    def summary(self) -> Scores:
        per_sketch = {
            key: _nanmean([getattr(s, key) for s in self.sketch_scores]) for key in ("acc_p", "acc_s", "miou")
        }
        ious, defined = _ious(self.pixel_confusion)
        true_total = self.pixel_confusion.sum(1)
        present = true_total > 0
        recall = np.diag(self.pixel_confusion[:, : self.num_classes]) / np.maximum(true_total, 1)
        freq = true_total / max(true_total.sum(), 1)
        dataset = {
            "acc_p": _accuracy(self.pixel_confusion),
            "acc_s": _accuracy(self.stroke_confusion),
            "mean_class_acc": float(recall[present].mean()) if present.any() else math.nan,
            "miou": float(ious[defined].mean()) if defined.any() else math.nan,
            "fw_iou": float((freq[defined] * ious[defined]).sum()) if defined.any() else math.nan,
        }
        return Scores(per_sketch, dataset)

    def per_category(self) -> list[dict]:
        """Rows of {name, iou, accuracy, support (true pixels), strokes} sorted by IoU (desc, undefined last)."""
        ious, defined = _ious(self.pixel_confusion)
        true_total = self.pixel_confusion.sum(1)
        stroke_total = self.stroke_confusion.sum(1)
        tp = np.diag(self.pixel_confusion[:, : self.num_classes])
        rows = [
            {
                "name": name,
                "iou": _pct(ious[i]) if defined[i] else None,
                "accuracy": _pct(tp[i] / true_total[i]) if true_total[i] else None,
                "support": int(true_total[i]),
                "strokes": int(stroke_total[i]),
            }
            for i, name in enumerate(self.class_names)
            if defined[i] or true_total[i]
        ]
        return sorted(rows, key=lambda r: (r["iou"] is None, -(r["iou"] or 0.0), r["name"]))
