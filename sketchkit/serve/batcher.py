"""One worker thread owns the model: a bounded queue of jobs, encoded in batches, each decoded alone.

    batcher = Batcher(segmenter, max_queue=32, max_batch=8)
    batcher.start()
    future = batcher.submit(sketch, labels=("tree", "house"), threshold=None)   # Overloaded when full
    result = future.result()                                                    # SegmentResult
    batcher.stop()

Batching: the worker takes the oldest job, then every job already waiting (up to `max_batch`), and
encodes their rasters in one `Engine.encode` call; requests that arrive while a batch runs form the
next batch, so batching adds no waiting time to a lone request. Labels and threshold are per job:
each job is decoded on its own (`Engine.decode`).

Encoded features are kept for the last `cache_size` distinct sketches (keyed by their strokes,
canvas and image), so asking the same drawing again with other labels or another threshold (the
page's threshold slider, a corrected label list) costs only the cheap decode.

Only the worker thread touches the model (its text-feature cache is not thread-safe), so the web
server's threads never run torch.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, SketchkitError
from ..inference import Engine, Prepared, Segmenter
from ..inference.engine import check_threshold
from ..types import Sketch

DEFAULT_QUEUE = 32
"""Jobs that may wait for the model; one more is refused (HTTP 503 with Retry-After)."""

DEFAULT_BATCH = 8
"""Most sketches encoded in one call."""

DEFAULT_CACHE = 16
"""Distinct sketches whose encoded features are kept."""


class Overloaded(SketchkitError):
    """The queue is full. `retry_after`: whole seconds after which a retry is likely to be accepted."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Job:
    sketch: Sketch
    labels: tuple[str, ...]
    threshold: float | None
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    """What the worker did: jobs finished, batches run, the largest batch, seconds spent on batches."""

    jobs: int = 0
    batches: int = 0
    largest_batch: int = 0
    encoded: int = 0
    cache_hits: int = 0
    busy_s: float = 0.0

    def as_dict(self) -> dict:
        return {"jobs": self.jobs, "batches": self.batches, "largest_batch": self.largest_batch,
                "encoded": self.encoded, "cache_hits": self.cache_hits, "busy_s": round(self.busy_s, 3)}


_STOP = object()


def sketch_key(sketch: Sketch) -> str:
    """A digest of what the encoder sees of a sketch: canvas, strokes (and widths), bitmap image."""
    digest = hashlib.sha256()
    digest.update(np.array([sketch.width, sketch.height, sketch.num_strokes], dtype=np.float64).tobytes())
    for stroke in sketch.strokes:
        digest.update(np.ascontiguousarray(stroke, dtype=np.float64).tobytes())
        digest.update(b"|")
    for extra in (sketch.stroke_widths, sketch.image):
        digest.update(b"#" if extra is None else np.ascontiguousarray(extra).tobytes())
    return digest.hexdigest()


class Batcher:
    """The model's worker thread and its bounded queue (see the module docstring)."""

    def __init__(self, segmenter: Segmenter, *, max_queue: int = DEFAULT_QUEUE, max_batch: int = DEFAULT_BATCH,
                 cache_size: int = DEFAULT_CACHE):
        if max_queue < 1 or max_batch < 1 or cache_size < 0:
            raise ValueError("max_queue and max_batch must be at least 1, cache_size at least 0")
        self.segmenter = segmenter
        self.max_queue, self.max_batch, self.cache_size = max_queue, max_batch, cache_size
        self.stats = BatcherStats()
        self.warm = False
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._engine = Engine(segmenter, batch_size=max_batch)
        self._thread: threading.Thread | None = None

    # ---- the web server's side -------------------------------------------------------------------
    def start(self, warmup: Sketch | None = None, labels: tuple[str, ...] = ("tree",)) -> None:
        """Start the worker; with `warmup`, it first segments that sketch once (then `warm` is True)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(warmup, labels), name="sketchkit-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then end the worker."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        return self._queue.full()

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch (at least 1)."""
        per_batch = self.stats.busy_s / self.stats.batches if self.stats.batches else 1.0
        return max(1, math.ceil(per_batch * (self.pending / self.max_batch + 1)))

    def overloaded(self) -> Overloaded:
        return Overloaded(f"the server is busy: {self.pending} requests are waiting for the model "
                          f"(at most {self.max_queue})", self.retry_after())

    def submit(self, sketch: Sketch, labels, threshold: float | None = None) -> Future:
        """Queue one sketch; the Future gives its SegmentResult or the SketchkitError it raised.
        Raises Overloaded at once when `max_queue` jobs are already waiting."""
        check_threshold(threshold)
        job = Job(sketch, tuple(labels), threshold)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise self.overloaded() from None
        return job.future

    # ---- the worker ------------------------------------------------------------------------------
    def _run(self, warmup: Sketch | None, labels: tuple[str, ...]) -> None:
        if warmup is not None:
            job = Job(warmup, labels, None)
            self._process([job])
            job.future.exception()  # a failed warm-up leaves the model cold, nothing else
            self.stats = BatcherStats()  # the figures count requests only
        self.warm = True
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                batch.append(job)
            start = time.perf_counter()
            self._process(batch)
            self.stats.busy_s += time.perf_counter() - start
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            if stop:
                return

    def _process(self, jobs: list[Job]) -> None:
        """Prepare, encode (cached or in one batch), decode; each job's error goes to its own Future."""
        ready: list[tuple[Job, Prepared, str]] = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                ready.append((job, self._engine.prepare(job.sketch, labels=job.labels), sketch_key(job.sketch)))
            except BaseException as exc:  # noqa: BLE001 - delivered to the waiting request
                job.future.set_exception(exc)
        try:
            features = self._features([(p, key) for _, p, key in ready])
        except BaseException as exc:  # noqa: BLE001
            for job, _, _ in ready:
                job.future.set_exception(exc)
            return
        for (job, prepared, _), feats in zip(ready, features):
            self.stats.jobs += 1
            if isinstance(feats, BaseException):
                job.future.set_exception(feats)
                continue
            try:
                result = Engine(self.segmenter, threshold=job.threshold).decode(prepared, feats)
            except BaseException as exc:  # noqa: BLE001
                job.future.set_exception(exc)
                continue
            job.future.set_result(result)

    def _features(self, items: list[tuple[Prepared, str]]) -> list:
        """Features per item: from the cache, else encoded in one call (a refused batch is encoded
        one sketch at a time so that only the bad ones fail; their entry is the error)."""
        found: dict[str, object] = {}
        missing: list[tuple[Prepared, str]] = []
        for prepared, key in items:
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
                self.stats.cache_hits += 1
            elif key not in {k for _, k in missing}:
                missing.append((prepared, key))
        if missing:
            try:
                encoded = self._engine.encode([p for p, _ in missing])
            except InputError:
                encoded = []
                for prepared, _ in missing:
                    try:
                        encoded += self._engine.encode([prepared])
                    except InputError as exc:
                        encoded.append(exc)
            self.stats.encoded += len(missing)
            for (_, key), feats in zip(missing, encoded):
                found[key] = feats
                if not isinstance(feats, BaseException) and self.cache_size:
                    self._cache[key] = feats
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return [found[key] for _, key in items]

