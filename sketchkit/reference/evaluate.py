"""The reference's evaluation geometry and metrics (`test.py` 60-90, `utils.py` 338-408).

Index space: a sketch's classes are its sorted unique stroke labels (`reference_classes`, test.py
60-61); class c is index c, and -1 is test.py's "blank_pixel" (no ink / no class). Every tie below
goes to the smallest index, i.e. to the first class in sorted order, as in the reference; when
mapping into a global vocabulary keep that order (the reference's `all_classes` is sorted too).

- Ground truth per pixel (`gt_pixel_classes`, `pixel_level_segmentation`): the class with the most
  strokes whose footprint covers the pixel (ties: smallest index); -1 where no footprint covers it.
- Stroke vote (`stroke_votes`, `compute_accuracy` 375-381): the mode of the predicted pixel labels
  over the stroke's whole footprint (ties: smallest index); -1 for an empty footprint.
- Metrics (`score`): Acc@P over the ground-truth ink pixels (the prediction is forced to blank
  elsewhere, test.py 86), Acc@S over all strokes, mIoU over the classes with a non-empty union, each
  class IoU rounded to float32 as `compute_miou` stores it. The counts come from
  `sketchkit.metrics.ConfusionMatrix`, whose definitions coincide with these.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sketchkit.metrics import ConfusionMatrix, SketchScore
from sketchkit.reference.frame import Footprints


def reference_classes(labels: Sequence[str | None]) -> list[str]:
    """Sorted unique stroke labels (np.unique order: by code point); ValueError for an unlabelled stroke."""
    if any(label is None for label in labels):
        raise ValueError("the reference protocol needs a label on every stroke")
    return sorted(set(labels))


def stroke_classes(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(S,) int64 index of each stroke's label in `classes` (-1 when absent)."""
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.int64)


def gt_pixel_classes(footprints: Footprints, stroke_class: np.ndarray, num_classes: int) -> np.ndarray:
    """(side, side) int64 ground truth: per pixel the class covered by most strokes, ties to the
    smallest index, -1 where no stroke is. stroke_class: (S,) int64 in [0, num_classes); strokes
    with -1 count for nothing."""
    side = footprints.side
    owner_class = np.asarray(stroke_class, dtype=np.int64)[footprints.owners()]
    keep = owner_class >= 0
    pixel, label = _group_mode(footprints.pixels[keep], owner_class[keep], num_classes)
    labels = np.full(side * side, -1, dtype=np.int64)
    labels[pixel] = label
    return labels.reshape(side, side)


def _group_mode(groups: np.ndarray, values: np.ndarray, num_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct group: the most frequent value, ties to the smallest. groups, values: (K,) int64,
    values in [0, num_values). Returns (groups (G,) sorted, modes (G,))."""
    keys = np.sort(groups * num_values + values)  # sort + runs: faster than np.unique's hashing on large scenes
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    keys = keys[starts]
    group, value = np.divmod(keys, num_values)
    order = np.lexsort((value, -counts, group))  # by group, then most frequent, then smallest value
    group, value = group[order], value[order]
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return group[first], value[first]


def stroke_votes(pixel_labels: np.ndarray, footprints: Footprints) -> np.ndarray:
    """(S,) int64 mode of `pixel_labels` ((side, side) int, values >= -1) over each stroke's footprint,
    ties to the smallest value, -1 for a stroke whose footprint is empty."""
    flat = np.asarray(pixel_labels, dtype=np.int64).reshape(-1)
    values = flat[footprints.pixels] + 1  # -1 ("blank") becomes 0, the smallest
    votes = np.full(footprints.num_strokes, -1, dtype=np.int64)
    stroke, mode = _group_mode(footprints.owners(), values, int(values.max(initial=0)) + 1)
    votes[stroke] = mode - 1
    return votes


def reference_miou(matrix: ConfusionMatrix) -> float:
    """`compute_miou`: the mean of the float32-rounded IoUs of the classes with a non-empty union."""
    iou = matrix.class_iou()
    defined = ~np.isnan(iou)
    if not defined.any():
        return float("nan")
    return float(np.sum(iou[defined].astype(np.float32), dtype=np.float32)) / int(defined.sum())


def score(pred_pixels: np.ndarray, gt_pixels: np.ndarray, pred_strokes: np.ndarray, true_strokes: np.ndarray,
          num_classes: int, name: str = "") -> SketchScore:
    """One sketch's reference metrics as a `sketchkit.metrics.SketchScore` (fractions).

    pred_pixels, gt_pixels: (side, side) int, -1 = blank; only gt >= 0 pixels are scored (the
    prediction elsewhere is ignored, as test.py forces it to blank). pred_strokes, true_strokes: (S,)
    int (`stroke_votes`, `stroke_classes`). Acc@S counts every stroke whose true class is known.
    """
    matrix = ConfusionMatrix.of_sketch(pred_pixels, gt_pixels, pred_strokes, true_strokes, num_classes=num_classes)
    return dataclasses.replace(SketchScore.from_confusion(matrix, name), miou=reference_miou(matrix))
