"""The inference engine: the one loop from sketches to `SegmentResult`s, shared by every command.

    engine = Engine(segmenter, labels=LabelPolicy.fixed(["tree", "house"]), batch_size=8)
    for outcome in engine.stream(paths, load=read_sketch):   # read -> raster -> encode -> score -> decode
        outcome.result                                       # SegmentResult, or outcome.error
    results = engine.segment([sketch, ...])                  # in memory

`segment`, the Python API (`SketchPredictor`, `sketchkit.segment`), `eval` (and training's
validation) and `bench` all run these methods; options (labels, threshold, batch size, prefetch)
are set here once and reach every stage from here.

Stages, timed in `engine.timings` (seconds summed over sketches): read (the caller's `load`),
raster (`Segmenter.rasterize`), encode (one batched call), score (`Segmenter.score`), vote
(threshold, pixel labels, stroke vote), wait (with prefetch: the model idle, waiting for data).
Prefetch (`prefetch=N`): reading and rasterizing run up to N batches ahead in one background
thread (cairo, numpy and torch release the GIL), so they overlap the model.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import InputError, SketchkitError, UsageError
from ..types import BACKGROUND, Raster, SegmentResult, Sketch
from ..vote import pixel_labels
from .methods import Segmenter
from .policy import LabelPolicy, check_labels

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class Timings:
    """Seconds spent per stage, summed over sketches (`write` is the caller's, e.g. the segment pipeline's)."""

    read: float = 0.0
    raster: float = 0.0
    encode: float = 0.0
    score: float = 0.0
    vote: float = 0.0
    write: float = 0.0
    wait: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Prepared:
    """A sketch ready to encode: its raster in the method's view and its label set."""

    sketch: Sketch
    raster: Raster
    labels: tuple[str, ...]


@dataclass
class Outcome:
    """What `Engine.stream` yields per item: `result` (and the `features` it was scored from), or
    `error` (the item's one-line problem), or neither when `load` returned None (skipped)."""

    item: object
    result: SegmentResult | None = None
    features: object = None
    error: SketchkitError | None = None

    @property
    def skipped(self) -> bool:
        return self.result is None and self.error is None


def apply_threshold(scores: np.ndarray, labels: Sequence[str], threshold: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Min-max normalise each class map to [0, 1] and add a constant `background` channel at
    `threshold`: a pixel keeps its argmax class only when that class's normalised score reaches it."""
    import torch

    from ..model.similarity import minmax_normalise

    check_threshold(threshold)
    normalised = minmax_normalise(torch.from_numpy(np.asarray(scores, dtype=np.float32))).numpy()
    background = np.full((1, *scores.shape[1:]), threshold, dtype=np.float32)
    return np.concatenate([normalised, background]), (*labels, BACKGROUND)


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"the threshold must be within [0, 1], got {threshold}", hint="threshold")


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"the batch size must be a positive whole number, got {batch_size!r}")
    return batch_size


class Engine:
    """Runs one Segmenter: labels from `labels` (default: each sketch's caption), optional `threshold`
    (min-max normalised maps, pixels below it become "background"), batches of `batch_size`, the
    `top_k` ranked classes kept per stroke."""

    def __init__(self, segmenter: Segmenter, *, labels: LabelPolicy | None = None, threshold: float | None = None,
                 batch_size: int = 8, prefetch: int = 0, timings: Timings | None = None, strict: bool = False,
                 top_k: int = 3):
        check_threshold(threshold)
        if prefetch < 0:
            raise UsageError(f"prefetch depth must be at least 0, got {prefetch}")
        self.segmenter = segmenter
        self.policy = labels or LabelPolicy.from_caption()
        self.threshold = threshold
        self.batch_size = check_batch_size(batch_size)
        self.prefetch = prefetch
        self.strict = strict
        self.top_k = top_k
        self.timings = timings if timings is not None else Timings()

    # ---- stages ----------------------------------------------------------------------------------
    def prepare(self, sketch: Sketch, *, labels: Sequence[str] | None = None, raster: Raster | None = None) -> Prepared:
        """Label set (given, else the policy's) and the method's raster (given, else drawn here)."""
        names = tuple(check_labels(labels) if labels is not None else self.policy.labels_for(sketch))
        if raster is None:
            start = time.perf_counter()
            raster = self.segmenter.rasterize(sketch)
            self.timings.raster += time.perf_counter() - start
        return Prepared(sketch, raster, names)

    def encode(self, prepared: Sequence[Prepared]) -> list:
        start = time.perf_counter()
        features = self.segmenter.encode([p.raster for p in prepared], [p.sketch for p in prepared])
        self.timings.encode += time.perf_counter() - start
        return features

    def decode(self, prepared: Prepared, features, labels: Sequence[str] | None = None) -> SegmentResult:
        """Scores for the label set (the prepared one, or `labels`), then threshold, pixel labels and stroke vote."""
        names = list(check_labels(labels)) if labels is not None else list(prepared.labels)
        start = time.perf_counter()
        scores = self.segmenter.score(features, names)
        scored = time.perf_counter()
        result = self._finish(prepared, names, scores, features)
        self.timings.score += scored - start
        self.timings.vote += time.perf_counter() - scored
        return result

    def _finish(self, prepared: Prepared, names: list[str], scores: np.ndarray, features) -> SegmentResult:
        segmenter, sketch, raster = self.segmenter, prepared.sketch, prepared.raster
        scores_at = None
        if self.threshold is not None:
            scores, names = apply_threshold(scores, names, self.threshold)
        elif segmenter.exact:  # strokes hidden at raster size are re-scored exactly at a finer raster
            labels = list(names)

            def scores_at(transform, strokes):
                return segmenter.score_at(features, labels, transform, strokes)
        return SegmentResult(
            sketch=sketch, raster=raster, labels=tuple(names), scores=scores, pixel_labels=pixel_labels(scores, raster),
            votes=segmenter.vote(scores, raster, sketch, scores_at=scores_at, top_k=self.top_k), model=segmenter.description,
            threshold=self.threshold, scoring=segmenter.scoring, weights=segmenter.weights,
        )

    # ---- loops -----------------------------------------------------------------------------------
    def segment(self, sketches: Sequence[Sketch], labels: Sequence[Sequence[str]] | None = None) -> list[SegmentResult]:
        """In-memory sketches -> results (labels[i] for sketches[i] when given, else the policy's)."""
        prepared = [self.prepare(s, labels=None if labels is None else labels[i]) for i, s in enumerate(sketches)]
        results = []
        for start in range(0, len(prepared), self.batch_size):
            batch = prepared[start : start + self.batch_size]
            results += [self.decode(p, f) for p, f in zip(batch, self.encode(batch))]
        return results

    def stream(self, items: Iterable[T], load: Callable[[T], Sketch | None]) -> Iterator[Outcome]:
        """For each item, in order: load (read) it, prepare, encode a batch at a time, decode.

        `load` returns the Sketch, or None to skip the item. A SketchkitError from `load`, labels or
        raster becomes that item's `Outcome.error` (with `strict`, or a UsageError, it is raised).
        """
        batches = _batched(items, self.batch_size)
        source = prefetch(batches, lambda batch: [self._load(item, load) for item in batch], self.prefetch) \
            if self.prefetch else (self._load_batch(batch, load) for batch in batches)
        try:
            while True:
                waited = time.perf_counter()
                loaded = next(source, None)
                if loaded is None:
                    return
                if self.prefetch:
                    self.timings.wait += time.perf_counter() - waited
                yield from self._run_batch(loaded)
        finally:
            if hasattr(source, "close"):
                source.close()  # stops a prefetch thread when the consumer stops early

    def _load_batch(self, batch: list, load) -> list[tuple]:
        return [self._load(item, load) for item in batch]

    def _load(self, item, load) -> tuple:
        """(item, Prepared | None, error | None)."""
        try:
            start = time.perf_counter()
            sketch = load(item)
            self.timings.read += time.perf_counter() - start
            return item, (None if sketch is None else self.prepare(sketch)), None
        except SketchkitError as exc:
            if self.strict or isinstance(exc, UsageError):
                raise
            return item, None, exc

    def _run_batch(self, loaded: list[tuple]) -> Iterator[Outcome]:
        ready = [p for _, p, _ in loaded if p is not None]
        features = iter(self._encode_reporting(ready))
        for item, prepared, error in loaded:
            if prepared is None:
                yield Outcome(item, error=error)
                continue
            feats = next(features)
            if isinstance(feats, SketchkitError):
                yield Outcome(item, error=feats)
                continue
            yield Outcome(item, self.decode(prepared, feats), feats)

    def _encode_reporting(self, ready: list[Prepared]) -> list:
        """Features of a batch; when the method refuses the batch (InputError), each sketch is encoded
        alone so that only the bad ones fail (their entry is the error)."""
        if not ready:
            return []
        try:
            return self.encode(ready)
        except InputError:
            if self.strict or len(ready) == 1:
                raise
        out = []
        for prepared in ready:
            try:
                out += self.encode([prepared])
            except InputError as exc:
                out.append(exc)
        return out


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_DONE = object()


def prefetch(items: Iterable[T], load: Callable[[T], U], depth: int = 2) -> Iterator[U]:
    """Yield load(item) for each item, in order, computed up to `depth` items ahead by one background thread.

    An exception raised by `load` is re-raised here at the item that raised it; closing the generator
    early stops the thread after its current item.
    """
    if depth < 1:
        raise UsageError(f"prefetch depth must be at least 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set() or not put((True, load(item))):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
            return
        put((True, _DONE))

    worker = threading.Thread(target=produce, name="sketchkit-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = ready.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        worker.join()
