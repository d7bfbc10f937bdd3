"""`segment --out-h5`: the run's one columnar results file, written as part files that survive a kill."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UsageError
from ..files import claim_outputs
from ..inference.shard import Shard
from ..types import SegmentResult

PART_ROWS = 1000
PART_SECONDS = 60.0
"""A part file is published after PART_ROWS sketches or PART_SECONDS, whichever comes first: what a
killed process can lose and must redo."""


def key_hash(key: str) -> int:
    """The 64-bit hash `ResultsStore` remembers a stored sketch by."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


def _stored_keys(paths: Sequence[Path]) -> np.ndarray:
    """Sorted 64-bit hashes of the sketch names stored in columnar results files (read through io/h5check.py)."""
    from .h5check import open_h5, read_array

    hashes = []
    for path in paths:
        with open_h5(path) as h5:
            group = h5.get("sketches")
            if group is None or "name_text" not in group:
                continue
            text = read_array(group, "name_text", path, kind="int", ndim=1).tobytes()
            ends = np.concatenate([[0], np.cumsum(read_array(group, "name_length", path, kind="int", ndim=1).astype(np.int64))])
            hashes.append(np.fromiter((key_hash(text[a:b].decode("utf-8", "surrogateescape"))
                                       for a, b in zip(ends[:-1], ends[1:])), dtype=np.uint64, count=len(ends) - 1))
    return np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64)


class ResultsStore:
    """`out_h5`: the run's one columnar results file, written as part files that survive a kill.

    Each process writes `<out_h5>.parts/<session>-r<rank>-<n>.h5`, a new part every PART_ROWS sketches,
    each published whole; `finish` (rank 0, once every rank is done) merges `out_h5` (when resuming)
    and the parts into `out_h5` and removes them. Resuming (`skip_existing`) finds the sketches already
    stored by name in `out_h5` and every part left behind. Rank 0 holds a claim on `out_h5` for the
    run, so a second run on the same file is refused."""

    def __init__(self, path: Path, *, scores: str, shard: Shard, resume: bool, overwrite: bool, job: str,
                 attrs: dict | None = None, part_rows: int = PART_ROWS, part_seconds: float = PART_SECONDS):
        from .hdf5_columnar import check_score_mode

        self.path = Path(path)
        self.scores = check_score_mode(scores)
        self.shard = shard
        self.resume = resume
        self.part_rows = max(1, part_rows)
        self.part_seconds = part_seconds
        self.attrs = {**(attrs or {}), "job": job}
        self.parts = self.path.with_name(self.path.name + ".parts")
        self._claim = None
        problem = None
        if shard.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._claim = claim_outputs(self.path)
            if self._claim is None:
                problem = f"output {self.path} is being written by another run"
            elif not resume and not overwrite and (self.path.exists() or self._part_files()):
                problem = f"output {self.path} exists" if self.path.exists() else \
                    f"{self.parts} holds the parts of an unfinished run"
        session = f"{int(time.time())}{os.getpid() % 100000:05d}"
        problem, session = shard.gather((problem, session))[0]
        if problem is not None:
            self.release(complete=True)  # out_h5's claim marks nothing: its parts folder says what is unfinished
            raise UsageError(problem + ("" if "another run" in problem else
                                        " (resume it with skip-existing, or overwrite it)"),
                             hint=None if "another run" in problem else "overwrite")
        self.session = session
        self.parts.mkdir(parents=True, exist_ok=True)
        self._done = _stored_keys(([self.path] if self.path.exists() else []) + self._part_files()) if resume \
            else np.zeros(0, dtype=np.uint64)
        self._writer = None
        self._part = 0
        self.written: list[Path] = []

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("*.h5")) if self.parts.is_dir() else []

    def done(self, key: str) -> bool:
        if not len(self._done):
            return False
        h = np.uint64(key_hash(key))
        i = int(np.searchsorted(self._done, h))
        return i < len(self._done) and self._done[i] == h

    def add(self, result: SegmentResult, key: str, order: tuple[int, int]) -> None:
        from .hdf5_columnar import ResultsWriter

        if self._writer is None:
            name = f"{self.session}-r{self.shard.rank:05d}-{self._part:06d}.h5"
            self._writer = ResultsWriter(self.parts / name, scores=self.scores, attrs=self.attrs, overwrite=False)
            self._started = time.monotonic()
        self._writer.add(result, name=key, order=order)
        if self._writer.count + len(self._writer._pending) >= self.part_rows \
                or time.monotonic() - self._started >= self.part_seconds:
            self._publish()

    def _publish(self) -> None:
        if self._writer is not None:
            self.written.append(self._writer.close())
            self._writer = None
            self._part += 1

    def close(self) -> None:
        """Publish this process's last part."""
        self._publish()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.release(complete=True)  # the published parts stay for --skip-existing; the claim file need not

    def finish(self) -> Path | None:
        """Rank 0, after every rank closed: merge into `out_h5`; returns it (None on other ranks)."""
        from .hdf5_merge import merge_results_h5

        if not self.shard.is_main:
            return None
        parts = [p for p in self._part_files() if self.resume or p.name.startswith(self.session)]
        inputs = ([self.path] if self.resume and self.path.exists() else []) + parts
        if not inputs:
            from .hdf5_columnar import ResultsWriter

            ResultsWriter(self.path, scores=self.scores, attrs=self.attrs).close()
        else:
            staged = self.parts / f"merged-{self.session}.h5"
            merge_results_h5(inputs, staged, overwrite=True)
            os.replace(staged, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)  # merged parts, and what killed writers left there
        self.release(complete=True)
        return self.path

    def release(self, *, complete: bool) -> None:
        if self._claim is not None:
            self._claim.release(complete=complete)
            self._claim = None
