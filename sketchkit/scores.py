"""Pooling sketch scores into both protocols' results: `Scores` (the numbers of a set) and `Evaluator`
(scores sketch after sketch in one global class index space, bounded memory, mergeable across processes).
The formulas are in `sketchkit.metrics`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import InputError, UsageError
from .metrics import PER_SKETCH_METRICS, ConfusionMatrix, ExactSum, MeanOfDefined, SketchScore, _labels, _pct


@dataclass(eq=False)
class Scores:
    """Both protocols for a set of sketches.

    per_sketch: keys PER_SKETCH_METRICS, each the mean over the sketches where it is defined.
    dataset:    keys DATASET_METRICS, from the summed confusion (`confusion`).
    defined:    per per-sketch metric, how many sketches its mean is over.
    """

    per_sketch: dict[str, float]
    dataset: dict[str, float]
    sketches: int
    defined: dict[str, int]
    class_names: tuple[str, ...]
    confusion: ConfusionMatrix = field(repr=False)

    @classmethod
    def from_scores(cls, sketch_scores: Sequence[SketchScore], matrix: ConfusionMatrix, class_names: Sequence[str]) -> "Scores":
        means = {key: MeanOfDefined() for key in PER_SKETCH_METRICS}
        for score in sketch_scores:
            for key in PER_SKETCH_METRICS:
                means[key].add(getattr(score, key))
        return cls.from_means(means, len(sketch_scores), matrix, class_names)

    @classmethod
    def from_means(cls, means: dict[str, MeanOfDefined], sketches: int, matrix: ConfusionMatrix,
                   class_names: Sequence[str]) -> "Scores":
        return cls({k: means[k].mean for k in PER_SKETCH_METRICS}, matrix.dataset_metrics(), sketches,
                   {k: means[k].count for k in PER_SKETCH_METRICS}, tuple(class_names), matrix)

    def to_dict(self) -> dict:
        """{"per_sketch": {...}, "dataset": {...}, "counts": {...}}: percentages 0-100 as plain
        floats, None where undefined (valid JSON, no NaN)."""
        return {
            "per_sketch": {k: _pct(v) for k, v in self.per_sketch.items()},
            "dataset": {k: _pct(v) for k, v in self.dataset.items()},
            "counts": {
                "sketches": self.sketches,
                "sketches_scored": dict(self.defined),
                "pixels": int(self.confusion.pixels.sum()),
                "strokes": int(self.confusion.strokes.sum()),
                "classes": len(self.class_names),
            },
        }

    def per_category(self, names: Sequence[str] | None = None) -> list[dict]:
        """Per-class rows (see ConfusionMatrix.per_category); names default to the class names."""
        return self.confusion.per_category(self.class_names if names is None else names)


class Evaluator:
    """Scores sketch after sketch in one global class index space.

    `class_names` fixes the index space up front; `extend` appends names later (a growing
    vocabulary) without moving existing indices; `to_global` maps a sketch's local labels;
    `reorder` puts the index space in another order at the end. Memory stays bounded: the pooled
    confusion (`confusion`) and, per per-sketch metric, an exact sum and a count (`means`); every
    SketchScore is kept in `sketch_scores` only with `keep_scores` (for `ranked`). `state()` and
    `merge_states` add evaluators of several processes into the one-process numbers exactly.
    """

    def __init__(self, class_names: Sequence[str], *, keep_scores: bool = True):
        self.class_names: list[str] = []
        self._index: dict[str, int] = {}
        self.confusion = ConfusionMatrix(0)
        self.keep_scores = keep_scores
        self.sketch_scores: list[SketchScore] = []
        self.means = {key: MeanOfDefined() for key in PER_SKETCH_METRICS}
        self.count = 0
        duplicates = sorted(n for n, count in Counter(class_names).items() if count > 1)
        if duplicates:
            raise UsageError(f"class names must be distinct; repeated: {', '.join(map(repr, duplicates))}")
        self.extend(class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def pixel_confusion(self) -> np.ndarray:
        return self.confusion.pixels

    @property
    def stroke_confusion(self) -> np.ndarray:
        return self.confusion.strokes

    def extend(self, names: Sequence[str]) -> None:
        """Append the names not yet known (in order); existing indices and counts are kept."""
        new = [n for n in dict.fromkeys(names) if n not in self._index]
        for name in new:
            self._index[name] = len(self.class_names)
            self.class_names.append(name)
        if new:
            self.confusion.grow(len(self.class_names))

    def reorder(self, names: Sequence[str]) -> np.ndarray:
        """Make `names` the index space (every known name in it, new ones appended as in `extend`);
        the confusion follows. Returns the (old C + 1,) lookup old index -> new index (last entry -1 -> -1)."""
        names = list(names)
        missing = [n for n in self.class_names if n not in names]
        if missing or len(set(names)) != len(names):
            raise UsageError(f"a reordering must name every class once; missing {', '.join(map(repr, missing))}")
        lookup = np.array([names.index(n) for n in self.class_names] + [-1], dtype=np.int64)
        size = len(names)
        for attr in ("pixels", "strokes"):
            old = getattr(self.confusion, attr)
            grown = np.zeros((size, size + 1), dtype=np.int64)
            cols = np.append(lookup[:-1], size)
            grown[np.ix_(lookup[:-1], cols)] = old
            setattr(self.confusion, attr, grown)
        self.confusion.num_classes = size
        self.class_names = names
        self._index = {n: i for i, n in enumerate(names)}
        return lookup

    def to_global(self, labels, local_names: Sequence[str], *, grow: bool = False) -> np.ndarray:
        """Local labels (int array indexing `local_names`, -1 = none) -> global indices, same shape.

        Names outside the index space map to -1, or are appended first when `grow`.
        """
        if grow:
            self.extend(local_names)
        lookup = np.array([self._index.get(n, -1) for n in local_names] + [-1], dtype=np.int64)
        labels = _labels(labels, "local labels")
        if labels.size and (labels.min() < -1 or labels.max() >= len(local_names)):
            raise InputError(f"local labels must lie in [-1, {len(local_names)}), found [{labels.min()}, {labels.max()}]")
        return lookup[labels]  # -1 picks the trailing -1

    def add(self, pred_pixels, true_pixels, pred_strokes=None, true_strokes=None, name: str = "") -> SketchScore:
        """Score one sketch (arguments as `score_sketch`, global indices) and pool its confusion."""
        sketch = self.confusion.update(pred_pixels, true_pixels, pred_strokes, true_strokes)
        score = SketchScore.from_confusion(sketch, name)
        self.count += 1
        for key in PER_SKETCH_METRICS:
            self.means[key].add(getattr(score, key))
        if self.keep_scores:
            self.sketch_scores.append(score)
        return score

    def summary(self) -> Scores:
        return Scores.from_means(self.means, self.count, self.confusion, self.class_names)

    def per_category(self) -> list[dict]:
        return self.confusion.per_category(self.class_names)

    def ranked(self, metric: str = "miou", *, best_first: bool = True) -> list[SketchScore]:
        """Sketches where `metric` is defined, best (or worst) first; ties keep input order (needs keep_scores)."""
        if metric not in PER_SKETCH_METRICS:
            raise UsageError(f"unknown per-sketch metric {metric!r}; choose from {', '.join(PER_SKETCH_METRICS)}")
        defined = [s for s in self.sketch_scores if not math.isnan(getattr(s, metric))]
        return sorted(defined, key=lambda s: getattr(s, metric), reverse=best_first)

    def state(self) -> dict:
        """What `merge_states` needs of this evaluator (plain, picklable)."""
        return {"names": list(self.class_names), "pixels": self.confusion.pixels, "strokes": self.confusion.strokes,
                "sums": {k: (list(m.sum.partials), m.count) for k, m in self.means.items()}, "count": self.count}

    def merge_states(self, states: Sequence[dict], names: Sequence[str]) -> None:
        """Become the sum of several evaluators' `state()`s (this one's included or not), in the index
        space `names` (every name of every state in it)."""
        size = len(names)
        index = {n: i for i, n in enumerate(names)}
        pixels = np.zeros((size, size + 1), dtype=np.int64)
        strokes = np.zeros_like(pixels)
        means = {key: MeanOfDefined() for key in PER_SKETCH_METRICS}
        count = 0
        for state in states:
            rows = np.array([index[n] for n in state["names"]], dtype=np.int64)
            cols = np.append(rows, size)
            pixels[np.ix_(rows, cols)] += state["pixels"]
            strokes[np.ix_(rows, cols)] += state["strokes"]
            for key, (partials, defined) in state["sums"].items():
                means[key].sum += ExactSum(partials)
                means[key].count += defined
            count += state["count"]
        self.class_names = list(names)
        self._index = dict(index)
        self.confusion = ConfusionMatrix(size, pixels, strokes)
        self.means, self.count = means, count
