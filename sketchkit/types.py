"""Data types the pipeline stages trade: io -> raster -> model -> vote -> write.

Conventions used everywhere:
- Points are (x, y) in *canvas units* of the source sketch (SVG user units after
  transforms, JSON canvas pixels, bitmap pixels); y grows downwards.
- A stroke-id map holds the index of the stroke that owns a pixel, -1 where there is no ink.
- Images are float32 grey in [0, 1]: 1 is white paper, 0 is black ink.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from typing import Mapping, Sequence

import numpy as np

BACKGROUND = "background"
"""The class name of pixels and strokes whose best score stays below a threshold."""


@dataclass(frozen=True)
class Sketch:
    """A scene sketch as strokes.

    strokes:        tuple of S arrays, each (P_i, 2) float64 (x, y) in canvas units, P_i >= 1.
                    A stroke of one point (or of zero length) is a dot and is drawn as one.
    width, height:  canvas size in canvas units (> 0).
    stroke_widths:  (S,) float64 line widths in canvas units, or None (renderer default).
    labels:         per-stroke ground-truth category names (None entries = unlabelled), or None.
    instance_ids:   (S,) int64 instance index per stroke (-1 = none), or None.
    caption:        free-text description of the scene, or None.
    source:         path the sketch was read from, or None.
    image:          (H, W) float32 grey image (1 = paper) for sketches read from bitmaps, whose
                    strokes are pseudo-strokes traced from the ink; None for vector sketches.
                    Canvas units are then pixels of this image.
    source_ids:     per-stroke id of the source element the stroke came from (SVG `data-source-id`,
                    else `id`; InkML trace id), None entries where it had none; or None when no
                    stroke has one. Every stroke of an SVG path split at its pen lifts carries the
                    path's id, so several strokes can share one id.
    skipped:        what the reader saw but did not read as strokes, as {kind: count} in order of
                    first occurrence, e.g. {"background rect": 1, "text": 2, "hidden path": 3};
                    {} when it skipped nothing; None for formats whose readers never skip
                    anything (JSON, .npy, bitmaps). Kinds are listed in sketchkit.io.svg and
                    sketchkit.io.inkml. Treat it as read-only.
    display_size:   the source's declared (width, height) with their units, e.g. ("210mm", "297mm"),
                    for writers that keep them; None when the source declared none.
    """

    strokes: tuple[np.ndarray, ...]
    width: float
    height: float
    stroke_widths: np.ndarray | None = None
    labels: tuple[str | None, ...] | None = None
    instance_ids: np.ndarray | None = None
    caption: str | None = None
    source: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    source_ids: tuple[str | None, ...] | None = None
    skipped: dict[str, int] | None = None
    display_size: tuple[str, str] | None = None

    @property
    def num_strokes(self) -> int:
        return len(self.strokes)

    def __repr__(self) -> str:
        labelled = sum(n is not None for n in self.labels) if self.labels is not None else 0
        return (f"Sketch(source={self.source!r}, strokes={self.num_strokes}, points={sum(len(s) for s in self.strokes)}, "
                f"canvas={self.width:g}x{self.height:g}, labelled={labelled}, caption={self.caption!r})")

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and any(label is not None for label in self.labels)

    def label_names(self) -> list[str]:
        """Distinct ground-truth names in order of first appearance."""
        return list(dict.fromkeys(label for label in (self.labels or ()) if label is not None))

    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of all points; raises ValueError when there are none."""
        pts = np.concatenate(self.strokes, axis=0)
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())

    def with_labels(self, labels) -> "Sketch":
        return replace(self, labels=tuple(labels))

    def label_indices(self, names: Sequence[str], mapping: Mapping[str, str | None] | None = None) -> np.ndarray:
        """(S,) int64 index into `names` of each stroke's ground-truth label, after renaming through
        `mapping` when given (a name mapped to None counts as unlabelled); -1 for unlabelled strokes
        and labels not in `names`."""
        index = {name: i for i, name in enumerate(names)}
        labels = self.labels or (None,) * self.num_strokes
        if mapping is not None:
            labels = [mapping.get(n, n) if n is not None else None for n in labels]
        return np.array([index.get(n, -1) if n is not None else -1 for n in labels], dtype=np.int64)


@dataclass(frozen=True)
class Transform:
    """Maps canvas units to raster pixels: raster = canvas * scale + (offset_x, offset_y).

    Pixel (i, j) covers [j, j+1) x [i, i+1) in raster coordinates; `size` is the raster side.
    """

    scale: float
    offset_x: float
    offset_y: float
    size: int

    def to_raster(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) canvas (x, y) -> (N, 2) raster (x, y)."""
        return points * self.scale + np.array([self.offset_x, self.offset_y])

    def to_canvas(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) raster (x, y) -> (N, 2) canvas (x, y)."""
        return (points - np.array([self.offset_x, self.offset_y])) / self.scale

    def resized(self, size: int) -> "Transform":
        """The same framing at another raster size (e.g. 224 -> 512 for evaluation)."""
        k = size / self.size
        return Transform(self.scale * k, self.offset_x * k, self.offset_y * k, size)


@dataclass(frozen=True)
class Raster:
    """A sketch drawn into a square raster.

    image:      (size, size) float32 grey, anti-aliased, 1 = paper, 0 = ink. Model input.
    stroke_ids: (size, size) int32, index of the stroke owning each ink pixel, -1 = no ink.
                Drawn without anti-aliasing; overlaps go to the stroke drawn last (higher index).
    transform:  canvas -> raster mapping used for both arrays.
    """

    image: np.ndarray
    stroke_ids: np.ndarray
    transform: Transform

    @property
    def size(self) -> int:
        return self.transform.size

    @property
    def ink(self) -> np.ndarray:
        """(size, size) bool mask of pixels owned by a stroke."""
        return self.stroke_ids >= 0


@dataclass(frozen=True)
class StrokeVotes:
    """Per-stroke outcome of the majority vote (S strokes, C classes).

    labels:     (S,) int32 class index per stroke (-1 only for a stroke with no ink at any
                resolution tried, which the rasterizer prevents for finite input).
    confidence: (S,) float32 share of the stroke's pixels that voted for its label, in [0, 1].
    top:        (S, K) int32 the K best class indices by vote count (then summed score), -1 padded
                (K = the vote's top_k, 3 by default).
    """

    labels: np.ndarray
    confidence: np.ndarray
    top: np.ndarray


@dataclass(frozen=True)
class SegmentResult:
    """Everything `segment` produces for one sketch.

    labels:       the C category names; class index c refers to labels[c]. When a threshold
                  is used, the last name is BACKGROUND.
    scores:       (C, size, size) float32 per-pixel class scores at raster size.
    pixel_labels: (size, size) int32 class index for ink pixels, -1 elsewhere.
    votes:        per-stroke labels, confidence and top-k.
    model:        human-readable model description (says when weights are random).
    weights:      what the scores depend on (backbone, weights source and fingerprint, adapter path and
                  SHA-256 prefix; `Segmenter.weights`), or None.
    threshold:    the threshold the maps were cut at, or None (argmax over the labels only).
    scoring:      the scoring rule that made `scores` ("paper"; "reference" for the reference code's).
    """

    sketch: Sketch
    raster: Raster
    labels: tuple[str, ...]
    scores: np.ndarray
    pixel_labels: np.ndarray
    votes: StrokeVotes
    model: str = ""
    threshold: float | None = None
    scoring: str = "paper"
    weights: dict | None = None

    def __repr__(self) -> str:
        return (f"SegmentResult(source={self.sketch.source!r}, strokes={self.sketch.num_strokes}, "
                f"labels={self.labels!r}, model={self.model!r}, scoring={self.scoring!r}, threshold={self.threshold!r})")

    @property
    def stroke_label_names(self) -> list[str]:
        return [self.labels[i] if i >= 0 else "unknown" for i in self.votes.labels]
