"""Many files through read -> raster -> model -> vote -> write, for `sketchkit segment`.

One bad file is reported and skipped (or stops the run with `strict`); outputs keep the inputs'
relative paths under the output folder; `skip_existing` resumes a big batch.

Inputs are streamed: folders are walked as the run goes (`sketchkit.data.iter_folder_files`), every
drawing of a multi-drawing file is read lazily, and a result is dropped once written, so memory does
not grow with the number of inputs (what grows: one folder's listing at a time, and with
`skip_existing` and an `out_h5` the 8-byte keys of the sketches already stored).

Names: `sketchkit.outputs` (each input's outputs repeat its path under the output folder, never
shared by two inputs). The `out_h5` parts: `sketchkit.io.results_store`.

Claims. Before the model runs on a drawing, its output set is claimed (`sketchkit.files.claim_outputs`:
a locked hidden file beside the outputs); a set claimed by another live run is left alone, and the
claim file stays behind only when a writer died mid-set, which marks the set as partial. With
`skip_existing` a drawing counts as done only when all its outputs exist, no claim file is there,
and (with `out_h5`) the results file holds it; anything else is redone, whole.

Several processes (`sketchkit.inference.shard`): the stream is numbered by unit (a file, or one
drawing of an .ndjson file, which every process reads to keep the drawings' names), unit u goes to
rank u % world, each rank writes its own per-file outputs and its own parts of `out_h5` and of the
csv/coco summaries, and rank 0 merges the parts when every rank is done.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from .errors import SketchkitError, UsageError
from .files import check_output_path, claim_outputs, claim_path
from .inference.engine import Engine, Timings
from .inference.policy import LabelPolicy
from .inference.shard import Shard
from .io.results_store import PART_ROWS, ResultsStore
from .io.summary import RunSummary
from .outputs import (FORMAT_SUFFIX, InputWalk, check_targets, exact_outputs, output_files, parse_formats,
                      remove_outputs, remove_temp_files, run_output_paths, unique_bases)
from .render import Palette
from .types import SegmentResult, Sketch

__all__ = ["Drawing", "FileOutcome", "InputWalk", "SegmentJob", "STREAMED_SUFFIXES", "parse_formats", "run_segment",
           "unique_bases"]

STREAMED_SUFFIXES = (".ndjson",)
"""Files whose drawings are units of their own (split across processes one drawing at a time)."""


# ---- the job ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawing:
    """One sketch to segment: its file, its name in the file ("" when the file holds one sketch), its
    place in the job's stream (`unit`, and `index` among the drawings of a one-unit file) and the base
    path of its outputs."""

    path: Path
    name: str = ""
    unit: int = 0
    index: int = 0
    base: Path | None = None

    @property
    def stem(self) -> Path:
        """The outputs' path without suffix: `base`, or `base/name` for a drawing of a multi-drawing file."""
        return self.base / self.name if self.name else self.base


@dataclass
class FileOutcome:
    """One drawing's outcome: its result and written files, or its error, or skipped (`skipped_because`:
    "outputs exist" or "claimed by another run"). `name` is the drawing's name in its file ("" for
    single-sketch files)."""

    path: Path
    name: str = ""
    result: SegmentResult | None = None
    outputs: list[Path] = field(default_factory=list)
    error: SketchkitError | None = None
    skipped: bool = False
    skipped_because: str = ""
    unit: int = 0


@dataclass
class SegmentJob:
    """What to segment and where to write it. `labels` says where each sketch's labels come from
    (its `caption`, when set, is also the caption recorded in the outputs). `inputs`: files and
    folders (walked). `out_h5`: one results file for the whole run; `scores`: what HDF5 outputs keep of
    the score maps (`sketchkit.io.hdf5_columnar.SCORE_MODES`)."""

    inputs: Sequence[Path]
    out: Path
    formats: Sequence[str]
    labels: LabelPolicy = field(default_factory=LabelPolicy.from_caption)
    threshold: float | None = None
    batch_size: int = 8
    prefetch: int = 0
    top_k: int = 3
    palette: Palette | None = None
    csv_per: str = "stroke"
    overwrite: bool = False
    skip_existing: bool = False
    strict: bool = False
    out_h5: Path | None = None
    scores: str = "none"
    h5_part_rows: int = PART_ROWS


def job_id(job: SegmentJob) -> str:
    """What identifies a run across resumes: its outputs and inputs (the `job` attribute of its parts)."""
    text = "\0".join([str(job.out_h5), str(job.out), *map(str, job.inputs)])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def run_segment(job: SegmentJob, segmenter, *, timings: Timings | None = None, shard: Shard | None = None,
                counter=None) -> Iterator[FileOutcome]:
    """Yield one FileOutcome per drawing this process owns, in input order (the engine encodes and votes;
    this reads and writes). Every drawing of a multi-drawing file (QuickDraw) is segmented as its own
    sketch. `counter` (`shard.counter()`, made here when None) counts done, failed and skipped drawings
    over every process; when the stream ends this process waits for the others, and rank 0 merges the
    parts of `out_h5` into it."""
    return _SegmentRun(job, segmenter, timings=timings, shard=shard or Shard(), counter=counter).outcomes()


class _SegmentRun:
    """One `run_segment` call: the engine's stream, with each drawing's output set claimed before the
    model runs and written (or removed whole) after it."""

    def __init__(self, job: SegmentJob, segmenter, *, timings: Timings | None, shard: Shard, counter):
        self.job, self.shard = job, shard
        self.counter = counter if counter is not None else shard.counter()
        self.engine = Engine(segmenter, labels=job.labels, threshold=job.threshold, batch_size=job.batch_size,
                             prefetch=job.prefetch, timings=timings, strict=job.strict, top_k=job.top_k)
        self.walk = InputWalk(job.inputs, job.out)
        self.file_formats = [f for f in job.formats if f in FORMAT_SUFFIX]
        self.run_paths = run_output_paths(job.out, job.formats, self.walk.single)
        if job.skip_existing and not job.overwrite:  # a finished run's csv/coco summaries stay as they are
            self.run_paths = {f: p for f, p in self.run_paths.items() if not os.path.lexists(p)}
        for path in self.run_paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            check_output_path(path, job.inputs, job.overwrite)
        self.store = None
        if job.out_h5 is not None:
            Path(job.out_h5).parent.mkdir(parents=True, exist_ok=True)
            check_output_path(job.out_h5, job.inputs, overwrite=True)
            self.store = ResultsStore(Path(job.out_h5), scores=job.scores, shard=shard, resume=job.skip_existing,
                                      overwrite=job.overwrite, job=job_id(job), part_rows=job.h5_part_rows)
        try:
            self.run_claims = [] if shard.distributed else _claim_run_outputs(self.run_paths.values())
        except BaseException:
            if self.store is not None:
                self.store.abort()
            raise
        self.claims: dict[int, object] = {}  # id(stream item) -> its output set's claim

    def targets(self, drawing: Drawing) -> list[Path]:
        if self.walk.single and not drawing.name:
            return exact_outputs(self.job.out, self.file_formats)
        return output_files(drawing.base, drawing.name, self.file_formats)

    def key(self, drawing: Drawing) -> str:
        return _relative_key(drawing.stem, self.job.out)

    def complete(self, drawing: Drawing, check_claim: bool = True) -> bool:
        """All outputs there, no writer's claim left, and stored in out_h5."""
        outputs = self.targets(drawing)
        if not outputs and self.store is None:
            return False
        if outputs and (not all(p.exists() for p in outputs)
                        or (check_claim and os.path.lexists(claim_path(drawing.stem)))):
            return False
        return self.store is None or self.store.done(self.key(drawing))

    def load(self, item: tuple[Drawing, object]) -> Sketch | None:
        """The engine's loader: the sketch to segment, or None to skip it (done, or another run's)."""
        drawing, sketch = item
        if isinstance(sketch, SketchkitError):
            raise sketch
        job = self.job
        if sketch is None or (job.skip_existing and self.complete(drawing)):
            return None
        outputs = self.targets(drawing)
        if outputs:
            claim = claim_outputs(drawing.stem)
            if claim is None:
                if job.skip_existing:
                    return None  # another run is writing it
                raise UsageError(f"output {drawing.stem} is being written by another run")
            self.claims[id(item)] = claim
            if not job.overwrite and not job.skip_existing and not claim.stale:
                existing = [p for p in outputs if os.path.lexists(p)]
                if existing:
                    raise UsageError(f"output {existing[0]} exists", hint="overwrite")
            if job.skip_existing and not claim.stale and self.complete(drawing, check_claim=False):
                self.claims.pop(id(item)).release()  # finished by another run since we looked
                return None
            if claim.stale:
                remove_temp_files(outputs)
            check_targets(outputs, drawing.path)
        return sketch

    def outcomes(self) -> Iterator[FileOutcome]:
        job, store = self.job, self.store
        summary = RunSummary(csv_path=self.run_paths.get("csv"), coco_path=self.run_paths.get("coco"),
                             csv_per=job.csv_per, overwrite=job.overwrite,
                             part=self.shard.rank if self.shard.distributed else None)
        try:
            with summary:
                drawings = _drawings(job, self.walk, self.shard, self.complete, self.engine.timings)
                for outcome in self.engine.stream(drawings, self.load):
                    yield self.outcome(outcome, summary)
            if store is not None:
                store.close()
            self.counter.finish()
            if store is not None:
                store.finish()
            for claim in self.run_claims:
                claim.release()
            self.merge_summary_parts()
        except BaseException:
            for claim in [*self.claims.values(), *self.run_claims]:
                claim.release(complete=not claim.stale)
            if store is not None:
                store.abort()
            raise

    def outcome(self, outcome, summary: RunSummary) -> FileOutcome:
        """One drawing's outcome from the engine: skipped, failed, or its outputs written."""
        item = outcome.item
        drawing = item[0]
        claim = self.claims.pop(id(item), None)
        if outcome.skipped or outcome.error is not None:
            if claim is not None:
                claim.release(complete=not claim.stale)
            if outcome.error is not None:
                self.counter.tick(failed=1)
                return FileOutcome(drawing.path, drawing.name, error=outcome.error, unit=drawing.unit)
            reason = "outputs exist" if item[1] is None or self.complete(drawing) else "claimed by another run"
            self.counter.tick(skipped=1)
            return FileOutcome(drawing.path, drawing.name, outputs=self.targets(drawing), skipped=True,
                               skipped_because=reason, unit=drawing.unit)
        start = time.perf_counter()
        try:
            written = self.write(outcome.result, drawing)
        finally:
            if claim is not None:
                claim.release(complete=True)
        summary.add(outcome.result, (drawing.unit, drawing.index))
        self.engine.timings.write += time.perf_counter() - start
        self.counter.tick(done=1)
        return FileOutcome(drawing.path, drawing.name, result=outcome.result, outputs=written, unit=drawing.unit)

    def write(self, result: SegmentResult, drawing: Drawing) -> list[Path]:
        """Write one drawing's output set (and its row of out_h5); on any failure none of the set stays."""
        from .write import write_result

        written = []
        try:
            for target in self.targets(drawing):
                written.append(write_result(result, target, overwrite=True, palette=self.job.palette,
                                            scores=self.job.scores))
            if self.store is not None:
                self.store.add(result, self.key(drawing), (drawing.unit, drawing.index))
        except BaseException:
            remove_outputs(self.targets(drawing))  # Ctrl-C, a full disk: no partial set stays
            raise
        return written

    def merge_summary_parts(self) -> None:
        """Rank 0 of several processes: join every rank's csv/coco part into the run's files."""
        run_paths, job = self.run_paths, self.job
        if run_paths and self.shard.distributed and self.shard.is_main:
            from .io.summary import merge_summary_parts, summary_parts

            merge_summary_parts(summary_parts(run_paths.get("csv") or run_paths["coco"]), csv_path=run_paths.get("csv"),
                                coco_path=run_paths.get("coco"), csv_per=job.csv_per, overwrite=job.overwrite)


def _relative_key(stem: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(stem, out)).as_posix()
    except ValueError:
        return stem.as_posix()


def _drawings(job: SegmentJob, walk: InputWalk, shard: Shard, complete, timings: Timings
              ) -> Iterator[tuple[Drawing, object]]:
    """(Drawing, Sketch | error | None) for every drawing this process owns, read lazily (in the engine's
    prefetch thread when it has one). None: a file whose outputs are complete under skip_existing, not
    even read. Units: a file, or each drawing of an .ndjson file (every process reads those, to number
    and name the drawings as one process would)."""
    from .io import iter_drawings

    unit = 0
    for entry in walk:
        streamed = entry.path.suffix.lower() in STREAMED_SUFFIXES
        if not streamed:
            if not shard.owns(unit):
                unit += 1
                continue
            single = Drawing(entry.path, "", unit, 0, entry.base)
            if job.skip_existing and complete(single):
                yield single, None
                unit += 1
                continue
        drawings = iter_drawings(entry.path, caption=job.labels.caption, sidecar="caption" in job.labels.sources)
        index = 0
        while True:
            start = time.perf_counter()
            try:
                name, sketch = next(drawings)
            except StopIteration:
                break
            except SketchkitError as exc:
                if isinstance(exc, UsageError):
                    raise
                if not streamed or shard.owns(unit):
                    yield Drawing(entry.path, "", unit, index, entry.base), exc  # names the line or record
                if streamed:
                    unit += 1
                break
            finally:
                timings.read += time.perf_counter() - start
            if not streamed:
                yield Drawing(entry.path, name, unit, index, entry.base), sketch
                index += 1
                continue
            if shard.owns(unit):
                yield Drawing(entry.path, name, unit, 0, entry.base), sketch
            unit += 1
        if not streamed:
            unit += 1


def _claim_run_outputs(paths) -> list:
    """Claims on the run's summaries (csv, coco): a run writing them now stops this one before any work, and
    the temporary files a killed writer left are removed."""
    claims = []
    for path in paths:
        claim = claim_outputs(path)
        if claim is None:
            for held in claims:
                held.release()
            raise UsageError(f"output {path} is being written by another run")
        if claim.stale:
            remove_temp_files([path])
        claims.append(claim)
    return claims
