"""Pixel class scores -> stroke labels by majority vote.

Each ink pixel votes for its argmax class; a stroke takes the class with most votes, ties going
to the larger summed score over the stroke's pixels, then to the smaller class index. Pixels whose
scores are all equal (no preference, e.g. all-zero one-hot rows) abstain.

A stroke without a vote at raster size (it owns no pixel, being covered by later strokes, or
all its pixels abstain) is drawn alone at `hidden_scale` times the raster size with the same
framing, and votes at its own pixels there with the scores bilinearly upsampled to that size
(as torch.nn.functional.interpolate, align_corners=False). It never takes a neighbour's label: a stroke with no pixel even then (outside the
frame), or beyond the first MAX_SOLO_REDRAWS strokes that still need a re-draw of their own,
votes with the scores of the raster pixels nearest to its own points.
"""

from __future__ import annotations

import numpy as np

from sketchkit.errors import InputError
from sketchkit.raster import render_stroke_ids
from sketchkit.types import Raster, Sketch, StrokeVotes


MAX_SOLO_REDRAWS = 256
"""Most hidden strokes re-drawn one at a time (each a full render at hidden_scale x the raster
size); any further ones vote with the scores of the raster pixels nearest to their points."""


def _as_scores(scores, size: int) -> np.ndarray:
    """(C, size, size) float32 numpy array from numpy or torch input; InputError on a bad shape."""
    if hasattr(scores, "detach"):  # torch tensor
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 3 or scores.shape[1:] != (size, size) or scores.shape[0] < 1:
        raise InputError(f"scores must have shape (C, {size}, {size}), got {scores.shape}")
    return scores


def pixel_labels(scores, raster: Raster) -> np.ndarray:
    """(size, size) int32 argmax class of `scores` (C, size, size) on ink pixels, -1 elsewhere."""
    scores = _as_scores(scores, raster.size)
    return np.where(raster.ink, scores.argmax(axis=0), -1).astype(np.int32)


def _tally(
    stroke_of_pixel: np.ndarray, pixel_scores: np.ndarray, num_strokes: int, *, abstain: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes of K pixels: stroke_of_pixel (K,) int, pixel_scores (C, K) float.

    Returns counts (S, C) int64 votes per class, sums (S, C) float64 summed scores per class and
    pixels (S,) int64 pixels per stroke. With `abstain`, pixels whose scores are all equal cast
    no vote (they still count as pixels of their stroke).
    """
    num_classes = pixel_scores.shape[0]
    pixels = np.bincount(stroke_of_pixel, minlength=num_strokes)
    winner = pixel_scores.argmax(axis=0)
    voting = pixel_scores.max(axis=0) > pixel_scores.min(axis=0) if abstain else slice(None)
    counts = np.bincount(
        stroke_of_pixel[voting] * num_classes + winner[voting], minlength=num_strokes * num_classes
    ).reshape(num_strokes, num_classes)
    # summed scores: pixels grouped by stroke, one reduceat over the groups of strokes with pixels
    sums = np.zeros((num_strokes, num_classes), dtype=np.float64)
    order = np.argsort(stroke_of_pixel, kind="stable")
    present = np.flatnonzero(pixels)
    if present.size:
        starts = np.concatenate(([0], np.cumsum(pixels[present])[:-1]))
        sums[present] = np.add.reduceat(pixel_scores[:, order].astype(np.float64), starts, axis=1).T
    return counts, sums, pixels


def bilinear_at(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """(C, K) float32: `scores` (C, H, W) resized to (size, size) as torch.nn.functional.interpolate
    (bilinear, align_corners=False) does, read only at output pixels (rows, cols) (K,)."""
    scores = np.asarray(scores, dtype=np.float32)
    height, width = scores.shape[1:]

    def axis(index, extent):  # float32 arithmetic, as torch's CPU kernel for float32 input
        scale = np.float32(extent) / np.float32(size)
        source = np.maximum(scale * (np.asarray(index, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
        low = np.minimum(source.astype(np.int64), extent - 1)
        return low, np.minimum(low + 1, extent - 1), (source - low).astype(np.float32)

    y0, y1, wy = axis(rows, height)
    x0, x1, wx = axis(cols, width)
    top = scores[:, y0, x0] * (1 - wx) + scores[:, y0, x1] * wx
    bottom = scores[:, y1, x0] * (1 - wx) + scores[:, y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def _hidden_votes(scores, raster, sketch, hidden, factor, line_width, num_strokes, scores_at):
    """Tally of the strokes `hidden` drawn alone at raster size * factor (see module docstring)."""
    transform = raster.transform.resized(raster.size * factor)
    width = None if line_width is None else line_width * factor

    def tally(strokes):
        ids = render_stroke_ids(sketch, transform, strokes=strokes, line_width=width)
        rows, cols = np.nonzero(ids >= 0)
        if scores_at is None:
            at = bilinear_at(scores, rows, cols, scores.shape[-1] * factor)
        else:
            at = _as_scores(scores_at(transform, np.asarray(strokes)), transform.size)[:, rows, cols]
        return _tally(ids[rows, cols].astype(np.int64), at, num_strokes)

    counts, sums, pixels = tally(hidden)
    # hidden strokes covering one another: draw each remaining one on its own (usually a handful;
    # at most MAX_SOLO_REDRAWS, so a scene of 10^5 piled-up strokes stays seconds, not minutes)
    for stroke in hidden[(counts[hidden].sum(axis=1) == 0)][:MAX_SOLO_REDRAWS]:
        c, s, p = tally([stroke])
        counts[stroke], sums[stroke], pixels[stroke] = c[stroke], s[stroke], p[stroke]
    return counts, sums, pixels


def _nearest_pixel_votes(scores, raster, sketch, strokes, num_strokes):
    """Tally where every point of `strokes` votes with the scores of its nearest raster pixel."""
    chosen = [sketch.strokes[i] for i in strokes]
    owner = np.repeat(strokes, [len(s) for s in chosen])
    xy = np.floor(raster.transform.to_raster(np.concatenate(chosen, axis=0)))
    xy = np.clip(xy, 0, raster.size - 1).astype(np.int64)
    # the last resort: points with flat scores vote too (argmax -> smallest class index)
    return _tally(owner, scores[:, xy[:, 1], xy[:, 0]], num_strokes, abstain=False)


def rank_votes(counts: np.ndarray, sums: np.ndarray, pixels: np.ndarray, top_k: int = 3) -> StrokeVotes:
    """StrokeVotes from per-stroke class counts (S, C), summed scores (S, C) and pixel counts (S,)."""
    num_strokes, num_classes = counts.shape
    # per row: most votes first, then larger summed score, then smaller class index (stable sort)
    order = np.lexsort((-sums, -counts), axis=1)
    ranked_counts = np.take_along_axis(counts, order, axis=1)
    top = np.full((num_strokes, top_k), -1, dtype=np.int32)
    k = min(top_k, num_classes)
    top[:, :k] = np.where(ranked_counts[:, :k] > 0, order[:, :k], -1)
    labels = top[:, 0].copy()
    confidence = np.where(pixels > 0, ranked_counts[:, 0] / np.maximum(pixels, 1), 0.0).astype(np.float32)
    return StrokeVotes(labels=labels, confidence=confidence, top=top)


def vote_strokes(
    scores,
    raster: Raster,
    sketch: Sketch | None = None,
    *,
    hidden_scale: int = 4,
    line_width: float | None = None,
    num_strokes: int | None = None,
    scores_at=None,
    top_k: int = 3,
) -> StrokeVotes:
    """Per-stroke majority vote of pixel class scores.

    scores:       (C, size, size) float class scores at raster size (numpy array or torch tensor).
    raster:       the Raster the scores belong to; raster.stroke_ids says which stroke owns a pixel.
    sketch:       the drawn Sketch; needed to re-draw strokes that own no pixel (else they get -1).
    hidden_scale: the re-draw of such strokes is at raster.size * hidden_scale, same framing.
    line_width:   the line width (raster pixels at raster size) the raster was drawn with, when not
                  the default; scaled by hidden_scale for the re-draw.
    num_strokes:  S when no sketch is given (default: highest id in the map + 1).
    scores_at:    optional `f(transform, strokes) -> (C, n, n)` scores at a finer raster (n =
                  transform.size) where only `strokes` are drawn, for models that can answer at any
                  resolution (the oracle); default: bilinear upsampling of `scores`.
    top_k:        how many ranked classes each stroke keeps (`StrokeVotes.top`).

    Returns StrokeVotes: labels (S,) int32, confidence (S,) float32 = winning votes / stroke pixels,
    top (S, top_k) int32 classes by (votes, summed score), -1 for classes without votes.
    """
    scores = _as_scores(scores, raster.size)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a positive integer, got {top_k!r}")
    if int(hidden_scale) != hidden_scale or hidden_scale < 1:
        raise InputError(f"hidden_scale must be a positive integer, got {hidden_scale!r}")
    ids = raster.stroke_ids
    if sketch is not None:
        num_strokes = sketch.num_strokes
    elif num_strokes is None:
        num_strokes = int(ids.max()) + 1
    if ids.max() >= num_strokes:
        raise InputError(f"stroke-id map names stroke {int(ids.max())} but the sketch has {num_strokes} strokes")

    ink = ids >= 0
    counts, sums, pixels = _tally(ids[ink].astype(np.int64), scores[:, ink], num_strokes)
    hidden = np.flatnonzero(counts.sum(axis=1) == 0)
    if sketch is not None and hidden.size:
        c, s, p = _hidden_votes(scores, raster, sketch, hidden, int(hidden_scale), line_width, num_strokes, scores_at)
        counts[hidden], sums[hidden], pixels[hidden] = c[hidden], s[hidden], p[hidden]
        still = hidden[counts[hidden].sum(axis=1) == 0]
        if still.size:
            c, s, p = _nearest_pixel_votes(scores, raster, sketch, still, num_strokes)
            counts[still], sums[still], pixels[still] = c[still], s[still], p[still]
    return rank_votes(counts, sums, pixels, top_k)


def vote_labels(
    labels: np.ndarray,
    raster: Raster,
    num_classes: int,
    sketch: Sketch | None = None,
    *,
    hidden_scale: int = 4,
    line_width: float | None = None,
    num_strokes: int | None = None,
    top_k: int = 3,
) -> StrokeVotes:
    """`vote_strokes` on per-pixel labels: (size, size) int class in [0, num_classes), -1 = none.

    The labels become one-hot scores; pixels labelled -1 abstain.
    """
    labels = np.asarray(labels)
    if labels.shape != (raster.size, raster.size):
        raise InputError(f"pixel labels must have shape ({raster.size}, {raster.size}), got {labels.shape}")
    if labels.size and (labels.max() >= num_classes or labels.min() < -1):
        raise InputError(f"pixel labels must lie in [-1, {num_classes}), got {labels.min()}..{labels.max()}")
    one_hot = (labels[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)
    return vote_strokes(
        one_hot, raster, sketch, hidden_scale=hidden_scale, line_width=line_width, num_strokes=num_strokes, top_k=top_k
    )
