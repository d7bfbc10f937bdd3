"""The segmentation facade: encode a sketch once, answer any number of label sets.

    predictor = SketchPredictor(model)
    predictor.set_sketch(sketch)          # rasterize to 224 px + encode
    result = predictor.predict(["tree", "house"], threshold=None)

`segment_batch` runs the same steps for many sketches with batched encoding, and `segment` is
the one-call API: `sketchkit.segment(sketch, labels=[...])`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import InputError, UsageError
from .raster import rasterize
from .types import Raster, SegmentResult, Sketch
from .vote import pixel_labels, vote_strokes

MODEL_SIZE = 224
BACKGROUND = "background"


def apply_threshold(scores: np.ndarray, labels: Sequence[str], threshold: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Min-max normalise each class map to [0, 1] and add a constant `background` channel at
    `threshold`: a pixel keeps its argmax class only when that class's normalised score reaches it."""
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be within [0, 1], got {threshold}")
    flat = scores.reshape(len(scores), -1)
    low, high = flat.min(1)[:, None, None], flat.max(1)[:, None, None]
    normalised = (scores - low) / np.maximum(high - low, 1e-12)
    background = np.full((1, *scores.shape[1:]), threshold, dtype=np.float32)
    return np.concatenate([normalised.astype(np.float32), background]), (*labels, BACKGROUND)


def finish(
    sketch: Sketch,
    raster: Raster,
    labels: Sequence[str],
    scores: np.ndarray,
    model,
    features,
    threshold: float | None,
    line_width: float | None = None,
) -> SegmentResult:
    """Scores at raster size -> pixel labels, stroke votes, SegmentResult."""
    names = list(labels)
    scores_at = None
    if threshold is not None:
        scores, names = apply_threshold(scores, names, threshold)
    elif hasattr(model, "score_at"):  # models that can answer at a finer raster for hidden strokes
        def scores_at(transform, strokes):
            return model.score_at(features, list(labels), transform, strokes)
    return SegmentResult(
        sketch=sketch,
        raster=raster,
        labels=tuple(names),
        scores=scores,
        pixel_labels=pixel_labels(scores, raster),
        votes=vote_strokes(scores, raster, sketch, line_width=line_width, scores_at=scores_at),
        model=model.description,
    )


def check_labels(labels: Sequence[str]) -> list[str]:
    labels = list(dict.fromkeys(name for name in labels if name and name.strip()))
    if not labels:
        raise UsageError("no labels given: pass --labels, --caption, or a caption file beside the input")
    return labels


class SketchPredictor:
    def __init__(self, model, *, line_width: float | None = None):
        self.model = model
        self.line_width = line_width
        self.sketch: Sketch | None = None

    def set_sketch(self, sketch: Sketch) -> None:
        self.sketch = sketch
        self.raster = rasterize(sketch, MODEL_SIZE, line_width=self.line_width)
        self.features = self.model.encode([self.raster], [sketch])[0]

    def predict(self, labels: Sequence[str], *, threshold: float | None = None) -> SegmentResult:
        if self.sketch is None:
            raise InputError("SketchPredictor.predict called before set_sketch(sketch)")
        labels = check_labels(labels)
        scores = self.model.score(self.features, labels)
        return finish(self.sketch, self.raster, labels, scores, self.model, self.features, threshold, self.line_width)


@dataclass
class Timings:
    """Seconds spent per stage (summed over sketches)."""

    read: float = 0.0
    raster: float = 0.0
    encode: float = 0.0
    score: float = 0.0
    vote: float = 0.0
    write: float = 0.0


def segment_batch(
    sketches: Sequence[Sketch],
    labels: Sequence[Sequence[str]],
    model,
    *,
    threshold: float | None = None,
    line_width: float | None = None,
    timings: Timings | None = None,
) -> list[SegmentResult]:
    """Segment several sketches with one batched encoder call; labels[i] belongs to sketches[i]."""
    import time

    timings = timings if timings is not None else Timings()
    label_sets = [check_labels(names) for names in labels]
    t0 = time.perf_counter()
    rasters = [rasterize(s, MODEL_SIZE, line_width=line_width) for s in sketches]
    t1 = time.perf_counter()
    features = model.encode(rasters, list(sketches))
    t2 = time.perf_counter()
    results = []
    for sketch, raster, feats, names in zip(sketches, rasters, features, label_sets):
        t3 = time.perf_counter()
        scores = model.score(feats, names)
        t4 = time.perf_counter()
        results.append(finish(sketch, raster, names, scores, model, feats, threshold, line_width))
        timings.score += t4 - t3
        timings.vote += time.perf_counter() - t4
    timings.raster += t1 - t0
    timings.encode += t2 - t1
    return results


def batched(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def segment(
    sketch: Sketch,
    labels: Sequence[str] | None = None,
    *,
    caption: str | None = None,
    model=None,
    model_name: str | None = None,
    backbone: str = "ViT-B-16",
    weights: str | None = None,
    adapter: str | None = None,
    device: str = "auto",
    threshold: float | None = None,
    vocabulary: Sequence[str] | None = None,
    on_model: Callable[[object], None] | None = None,
) -> SegmentResult:
    """One-call API mirroring `sketchkit segment`. Pass a built `model` to reuse it across calls."""
    from .labels import labels_from_caption
    from .model.zoo import ModelSpec, build_model, default_model_name

    if labels is None:
        text = caption or sketch.caption
        if not text:
            raise UsageError("give labels=[...] or a caption")
        labels = labels_from_caption(text, vocabulary)
    if model is None:
        spec = ModelSpec(model_name or default_model_name(adapter), backbone, weights, adapter, device)
        model = build_model(spec)
        if on_model:
            on_model(model)
    return segment_batch([sketch], [labels], model, threshold=threshold)[0]


def ground_truth_result(sketch: Sketch, size: int = MODEL_SIZE) -> SegmentResult:
    """A SegmentResult carrying the sketch's own stroke labels (for `convert`): unlabelled strokes
    stay unlabelled (-1); pixel maps are the labels drawn through the stroke-id map."""
    from .types import StrokeVotes

    raster = rasterize(sketch, size)
    names = sketch.label_names()
    index = {name: i for i, name in enumerate(names)}
    stroke_labels = np.array([index.get(n, -1) if n is not None else -1 for n in (sketch.labels or [None] * sketch.num_strokes)], dtype=np.int32)
    ids = raster.stroke_ids
    pixel = np.where(ids >= 0, stroke_labels[np.clip(ids, 0, None)] if len(stroke_labels) else -1, -1).astype(np.int32)
    scores = np.zeros((len(names), size, size), dtype=np.float32)
    rows, cols = np.nonzero(pixel >= 0)
    scores[pixel[rows, cols], rows, cols] = 1.0
    top3 = np.full((sketch.num_strokes, 3), -1, dtype=np.int32)
    top3[:, 0] = stroke_labels
    votes = StrokeVotes(stroke_labels, (stroke_labels >= 0).astype(np.float32), top3)
    return SegmentResult(sketch, raster, tuple(names), scores, pixel, votes, model="ground truth")
