"""Acc@P, Acc@S and mIoU as method.md ("Metrics") defines them, under both protocols of the field.

- Per sketch (the CVPR 2024 paper): each metric is computed on one sketch, then averaged over the
  sketches where it is defined (`sketchkit.scores.Scores.per_sketch`).
- Dataset level (CAVT, WACV 2025): one pixel and one stroke confusion matrix summed over the whole
  set; overall accuracy, mean class accuracy, mIoU and frequency-weighted IoU come from them
  (`sketchkit.scores.Scores.dataset`).

Inputs share one class index space of size C (the caller maps per-sketch label sets into it):
- pixel maps: int arrays of any one shape, values in [-1, C). Only pixels whose TRUE label is >= 0
  are evaluated; a predicted -1 there (nothing predicted) is simply wrong.
- strokes: (S,) int arrays, values in [-1, C). Strokes whose true label is -1 (unlabelled, or
  outside the vocabulary) are excluded; a predicted -1 on a labelled stroke is wrong.

Confusion matrices are (C, C + 1) int64: rows = truth, columns = prediction, and the extra last
column counts evaluated elements predicted -1, so they stay in the support and in the union of
their true class. Metrics are fractions in [0, 1] (NaN when undefined) until `to_dict()`, which
gives percentages 0-100 as plain floats and None for undefined (valid JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import InputError, UsageError

PER_SKETCH_METRICS = ("acc_p", "acc_s", "miou")
DATASET_METRICS = ("acc_p", "acc_s", "mean_class_acc", "miou", "fw_iou")


# ----------------------------------------------------------------------------------- confusion


def _labels(values, what: str) -> np.ndarray:
    """`values` as an int64 array, or InputError naming `what` (empty lists are accepted)."""
    array = np.asarray(values)
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind not in "iub":
        raise InputError(f"{what} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def confusion(pred, true, num_classes: int, *, what: str = "labels") -> np.ndarray:
    """(C, C + 1) int64 counts over the elements with true >= 0.

    pred, true: int arrays of the same shape, values in [-1, C). Rows = truth, columns =
    prediction; column C counts predictions of -1. One np.bincount over true * (C + 1) + pred.
    """
    pred, true = _labels(pred, f"predicted {what}"), _labels(true, f"true {what}")
    if pred.shape != true.shape:
        raise InputError(f"predicted and true {what} differ in shape: {pred.shape} vs {true.shape}")
    for array, side in ((pred, "predicted"), (true, "true")):
        if array.size and (array.min() < -1 or array.max() >= num_classes):
            raise InputError(f"{side} {what} must lie in [-1, {num_classes}), found [{array.min()}, {array.max()}]")
    evaluated = true >= 0
    cols = np.where(pred[evaluated] >= 0, pred[evaluated], num_classes)
    counts = np.bincount(true[evaluated] * (num_classes + 1) + cols, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray | float:
    """num / den, NaN where den == 0 (no warnings)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)
    return out if out.ndim else float(out)


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the non-NaN entries, NaN when there is none; the sum is exact (math.fsum), so the mean does
    not depend on the order of the classes (one process or several give the same bits)."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return math.fsum(defined.tolist()) / len(defined) if len(defined) else math.nan


def _pct(value: float) -> float | None:
    """Fraction -> plain-float percentage; None when undefined."""
    return None if value is None or math.isnan(value) else 100.0 * float(value)


@dataclass(eq=False)
class ConfusionMatrix:
    """Pixel and stroke confusion over C classes, summed over sketches.

    pixels, strokes: (C, C + 1) int64, rows = truth, columns = prediction, last column =
    evaluated elements predicted -1.
    """

    num_classes: int
    pixels: np.ndarray = field(default=None, repr=False)
    strokes: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if self.num_classes < 0:
            raise UsageError(f"num_classes must be >= 0, got {self.num_classes}")
        shape = (self.num_classes, self.num_classes + 1)
        for name in ("pixels", "strokes"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, np.zeros(shape, dtype=np.int64))
            elif value.shape != shape:
                raise UsageError(f"{name} confusion must have shape {shape}, got {value.shape}")

    @classmethod
    def of_sketch(cls, pred_pixels, true_pixels, pred_strokes=None, true_strokes=None, *, num_classes: int) -> "ConfusionMatrix":
        """The confusion of one sketch; a None pair (no pixel maps, or no strokes) counts nothing."""
        def pair(pred, true, what):
            if pred is None and true is None:
                return None
            if pred is None or true is None:
                raise InputError(f"give both predicted and true {what}, or neither")
            return confusion(pred, true, num_classes, what=what)

        return cls(num_classes, pair(pred_pixels, true_pixels, "pixels"), pair(pred_strokes, true_strokes, "strokes"))

    def update(self, pred_pixels, true_pixels, pred_strokes=None, true_strokes=None) -> "ConfusionMatrix":
        """Add one sketch (arguments as `score_sketch`); returns that sketch's own confusion."""
        sketch = ConfusionMatrix.of_sketch(pred_pixels, true_pixels, pred_strokes, true_strokes, num_classes=self.num_classes)
        self += sketch
        return sketch

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise UsageError(f"cannot add a {other.num_classes}-class confusion to a {self.num_classes}-class one")
        self.pixels += other.pixels
        self.strokes += other.strokes
        return self

    def grow(self, num_classes: int) -> None:
        """Widen to `num_classes` (a growing vocabulary): existing indices keep their counts."""
        if num_classes < self.num_classes:
            raise UsageError(f"cannot shrink a confusion matrix from {self.num_classes} to {num_classes} classes")
        old = self.num_classes
        for name in ("pixels", "strokes"):
            grown = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
            matrix = getattr(self, name)
            grown[:old, :old] = matrix[:, :old]
            grown[:old, num_classes] = matrix[:, old]
            setattr(self, name, grown)
        self.num_classes = num_classes

    # ---- per-class quantities: (C,) arrays ------------------------------------------------
    def _square(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[:, : self.num_classes]

    def support(self) -> np.ndarray:
        """(C,) int64 evaluated pixels per true class."""
        return self.pixels.sum(1)

    def predicted(self) -> np.ndarray:
        """(C,) int64 evaluated pixels predicted as each class."""
        return self._square(self.pixels).sum(0)

    def class_iou(self) -> np.ndarray:
        """(C,) float64 pixel IoU per class; NaN where the union of true and predicted is empty."""
        tp = np.diag(self._square(self.pixels))
        return _ratio(tp, self.support() + self.predicted() - tp)

    def class_accuracy(self) -> np.ndarray:
        """(C,) float64 pixel recall per class; NaN for classes absent from the truth."""
        return _ratio(np.diag(self._square(self.pixels)), self.support())

    def class_stroke_accuracy(self) -> np.ndarray:
        """(C,) float64 stroke recall per class; NaN for classes with no labelled stroke."""
        return _ratio(np.diag(self._square(self.strokes)), self.strokes.sum(1))

    # ---- summary metrics: fractions, NaN when undefined -----------------------------------
    def pixel_accuracy(self) -> float:
        return _ratio(np.trace(self._square(self.pixels)), self.pixels.sum())

    def stroke_accuracy(self) -> float:
        return _ratio(np.trace(self._square(self.strokes)), self.strokes.sum())

    def mean_iou(self) -> float:
        """Mean IoU over the classes with a non-empty union."""
        return _mean_defined(self.class_iou())

    def mean_class_accuracy(self) -> float:
        """Mean recall over the classes present in the truth."""
        return _mean_defined(self.class_accuracy())

    def fw_iou(self) -> float:
        """IoU weighted by true pixel frequency: sum_c support_c / total * IoU_c."""
        support = self.support()
        total = support.sum()
        if total == 0:
            return math.nan
        present = support > 0
        return float((support[present] / total * self.class_iou()[present]).sum())

    def dataset_metrics(self) -> dict[str, float]:
        """The CAVT protocol: keys DATASET_METRICS, fractions."""
        return {
            "acc_p": self.pixel_accuracy(),
            "acc_s": self.stroke_accuracy(),
            "mean_class_acc": self.mean_class_accuracy(),
            "miou": self.mean_iou(),
            "fw_iou": self.fw_iou(),
        }

    def per_category(self, names: Sequence[str]) -> list[dict]:
        """Table rows for every class seen in truth or prediction (pixels or strokes).

        Each row: name, iou, accuracy (pixel recall), stroke_accuracy (percent or None),
        support (true pixels), predicted (pixels), strokes (labelled strokes). Sorted by IoU,
        highest first, undefined last, then by name.
        """
        if len(names) != self.num_classes:
            raise UsageError(f"per_category needs {self.num_classes} names, got {len(names)}")
        iou, acc, stroke_acc = self.class_iou(), self.class_accuracy(), self.class_stroke_accuracy()
        support, predicted = self.support(), self.predicted()
        stroke_support = self.strokes.sum(1)
        stroke_predicted = self._square(self.strokes).sum(0)
        seen = np.flatnonzero((support + predicted + stroke_support + stroke_predicted) > 0)
        rows = [
            {
                "name": names[c],
                "iou": _pct(iou[c]),
                "accuracy": _pct(acc[c]),
                "stroke_accuracy": _pct(stroke_acc[c]),
                "support": int(support[c]),
                "predicted": int(predicted[c]),
                "strokes": int(stroke_support[c]),
            }
            for c in seen
        ]
        return sorted(rows, key=lambda r: (r["iou"] is None, -(r["iou"] or 0.0), r["name"]))


# ------------------------------------------------------------------------------------ exact sums


class ExactSum:
    """A float sum kept exactly (Shewchuk's partials, as `math.fsum`): the total is the correctly rounded
    sum whatever the order of the values, so sums made in several processes and added together give the
    bits one process gives."""

    def __init__(self, partials=()):
        self.partials: list[float] = []
        for value in partials:
            self.add(value)

    def add(self, value: float) -> None:
        x = float(value)
        kept = []
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                kept.append(low)
            x = high
        kept.append(x)
        self.partials = kept

    def __iadd__(self, other: "ExactSum") -> "ExactSum":
        for value in other.partials:
            self.add(value)
        return self

    @property
    def total(self) -> float:
        return math.fsum(self.partials)


class MeanOfDefined:
    """The mean of the non-NaN values added (NaN when none): an exact sum and a count, so means over
    several processes' shares are the one-process mean."""

    def __init__(self):
        self.sum = ExactSum()
        self.count = 0

    def add(self, value: float) -> None:
        if not math.isnan(value):
            self.sum.add(value)
            self.count += 1

    def __iadd__(self, other: "MeanOfDefined") -> "MeanOfDefined":
        self.sum += other.sum
        self.count += other.count
        return self

    @property
    def mean(self) -> float:
        return self.sum.total / self.count if self.count else math.nan


# ------------------------------------------------------------------------------------ per sketch


@dataclass(frozen=True)
class SketchScore:
    """One sketch's metrics as fractions in [0, 1] (NaN when undefined) and the counts behind them.

    pixels / strokes: evaluated pixels (true >= 0) / labelled strokes; *_correct: of those, right.
    classes: classes with a non-empty pixel union (the mIoU denominator).
    """

    acc_p: float
    acc_s: float
    miou: float
    pixels: int
    pixels_correct: int
    strokes: int
    strokes_correct: int
    classes: int
    name: str = ""

    @classmethod
    def from_confusion(cls, matrix: ConfusionMatrix, name: str = "") -> "SketchScore":
        square = matrix.num_classes
        return cls(
            acc_p=matrix.pixel_accuracy(),
            acc_s=matrix.stroke_accuracy(),
            miou=matrix.mean_iou(),
            pixels=int(matrix.pixels.sum()),
            pixels_correct=int(np.trace(matrix.pixels[:, :square])),
            strokes=int(matrix.strokes.sum()),
            strokes_correct=int(np.trace(matrix.strokes[:, :square])),
            classes=int((~np.isnan(matrix.class_iou())).sum()),
            name=name,
        )

    def to_dict(self) -> dict:
        """Percentages (None when undefined) and counts, JSON-ready."""
        return {
            "name": self.name,
            **{k: _pct(getattr(self, k)) for k in PER_SKETCH_METRICS},
            "pixels": self.pixels,
            "strokes": self.strokes,
            "classes": self.classes,
        }


def score_sketch(pred_pixels, true_pixels, pred_strokes, true_strokes, num_classes: int, name: str = "") -> SketchScore:
    """Acc@P, Acc@S and mIoU of one sketch.

    pred_pixels, true_pixels: int arrays of one shape (e.g. (H, W)), values in [-1, C); only pixels
    with true >= 0 are evaluated. pred_strokes, true_strokes: (S,) int, true -1 = excluded.
    Either pair may be None (nothing of that kind to score: the metric is NaN).
    mIoU: per class, |pred & true| / |pred | true| over evaluated pixels, averaged over the
    classes whose union is non-empty (a class predicted but absent from the truth counts, IoU 0).
    """
    matrix = ConfusionMatrix.of_sketch(pred_pixels, true_pixels, pred_strokes, true_strokes, num_classes=num_classes)
    return SketchScore.from_confusion(matrix, name)
