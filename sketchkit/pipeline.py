"""Many files through read -> raster -> model -> vote -> write, for `sketchkit segment`.

One bad file is reported and skipped (or stops the run with `strict`); outputs keep the inputs'
relative paths under the output folder; `skip_existing` resumes a big batch.

Inputs are streamed: folders are walked as the run goes (`sketchkit.data.iter_folder_files`), every
drawing of a multi-drawing file is read lazily, and a result is dropped once written, so memory does
not grow with the number of inputs (what grows: one folder's listing at a time, and with
`skip_existing` and an `out_h5` the 8-byte keys of the sketches already stored).

Names. Each input's outputs are `out/<its folder relative to the inputs' common folder>/<base>.<fmt>`
(drawing `name` of a multi-drawing file: `<base>/<name>.<fmt>`). `base` is the file's stem; when
two inputs of one folder share a stem (scene.svg, scene.json) each keeps its full name (scene.svg,
scene.json), and a name still taken by another input's outputs (or by a sub-folder) gets `~2`,
`~3`, ... (`unique_bases`), so no input's results replace another's. Paths are not resolved: a
symbolic link is named by the link, not by its target.

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

import contextlib
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import SketchkitError, UsageError
from .files import check_output_path, claim_outputs, claim_path, fit_name, temp_prefix
from .inference.engine import Engine, Timings
from .inference.policy import LabelPolicy
from .inference.shard import Shard
from .io.summary import RunSummary
from .render import Palette
from .types import SegmentResult, Sketch

FORMAT_SUFFIX = {"svg": ".svg", "h5": ".h5", "png": ".png", "json": ".json", "masks": ".masks"}
"""Per-input outputs: one file (a folder for masks) per input and format."""
RUN_OUTPUTS = {"csv": "segmentation.csv", "coco": "segmentation.coco.json"}
"""Run-level outputs: one file for the whole run, in the output folder."""
STREAMED_SUFFIXES = (".ndjson",)
"""Files whose drawings are units of their own (split across processes one drawing at a time)."""
MULTI_DRAWING_SUFFIXES = (".ndjson", ".json")
"""Suffixes of files that may hold several drawings (QuickDraw); others hold one sketch."""
PART_ROWS = 1000
PART_SECONDS = 60.0
"""A part file of `out_h5` is published after PART_ROWS sketches or PART_SECONDS, whichever comes first:
what a killed process can lose and must redo."""


def parse_formats(spec: str) -> list[str]:
    formats = [f.strip().lower() for f in spec.split(",") if f.strip()]
    known = {**FORMAT_SUFFIX, **RUN_OUTPUTS}
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise UsageError(f"unknown output format(s) {', '.join(bad) or spec!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(formats))


def run_output_paths(out: Path, formats: Sequence[str], single_input: bool) -> dict[str, Path]:
    """Format -> file of the run-level outputs: in `out`, or beside it when `out` names one input's file."""
    folder = out.parent if single_input and out.suffix.lower() in FORMAT_SUFFIX.values() else out
    return {f: folder / RUN_OUTPUTS[f] for f in formats if f in RUN_OUTPUTS}


def output_files(base: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """The per-input outputs of one drawing: `<base>.<fmt>`, or `<base>/<name>.<fmt>` for drawing `name`
    of a file that holds several (QuickDraw), named by key id or index."""
    stem = base / name if name else base
    return [stem.parent / (stem.name + FORMAT_SUFFIX[f]) for f in formats if f in FORMAT_SUFFIX]


# ---- naming -----------------------------------------------------------------------------------------------------


def _output_names(base: str, multi: bool) -> set[str]:
    names = {base + suffix for suffix in FORMAT_SUFFIX.values()}
    return names | {base} if multi else names


def unique_bases(names: Sequence[str], reserved: Sequence[str] = ()) -> dict[str, str]:
    """File name -> output base for the inputs `names` of one folder, each base's outputs distinct from
    every other's and from `reserved` (sub-folder names, whose outputs share the output folder).

    The stem when no other input of the folder has it (scene.svg -> scene), else the full name
    (scene.svg, scene.json), then `name~2`, `name~3`, ... while taken; a name too long for the
    filesystem is cut and given a hash (`fit_name`). Decided in sorted name order, so the same folder
    always gives the same names."""
    distinct = sorted(set(names))
    stems = Counter(Path(n).stem for n in distinct)
    taken = set(reserved)
    out = {}
    for name in distinct:
        stem = Path(name).stem
        multi = Path(name).suffix.lower() in MULTI_DRAWING_SUFFIXES
        candidates = [fit_name(c) for c in ([stem] if stems[stem] == 1 and stem else []) + [name]]
        chosen, k = None, 2
        while chosen is None:
            for candidate in candidates:
                if not _output_names(candidate, multi) & taken:
                    chosen = candidate
                    break
            candidates = [fit_name(f"{name}~{k}")]
            k += 1
        taken |= _output_names(chosen, multi)
        out[name] = chosen
    return out


@dataclass(frozen=True)
class InputFile:
    """One input file: `path` as given or found (links not resolved) and `base`, its outputs' path
    without a suffix."""

    path: Path
    base: Path


class InputWalk:
    """The job's input files, streamed in a stable order: the arguments in order, each folder walked in
    sorted order. `root` is the inputs' common folder (the folder arguments themselves, the files'
    folders), whose layout the output folder repeats. `single`: one file argument and an `out` with a
    known suffix, written exactly."""

    def __init__(self, arguments: Sequence[Path], out: Path):
        self.arguments = [Path(a) for a in arguments]
        self.out = Path(out)
        for argument in self.arguments:
            try:
                os.stat(argument)
            except OSError as exc:  # missing, a link loop, a name too long
                from .errors import InputError, as_sketchkit_error

                raise as_sketchkit_error(exc, argument) or InputError("not found", argument) from None
        self.single = (len(self.arguments) == 1 and not self.arguments[0].is_dir()
                       and self.out.suffix.lower() in FORMAT_SUFFIX.values())
        if not self.single and self.out.exists() and not self.out.is_dir():
            raise UsageError(f"output folder {self.out} exists and is not a folder")
        folders = [a if a.is_dir() else a.parent for a in self.arguments]
        absolute = [os.path.abspath(f) for f in folders]
        self.root = Path(os.path.commonpath(absolute)) if absolute else Path.cwd()
        self._out_abs = os.path.abspath(self.out)
        files_by_folder: dict[str, list[str]] = {}
        reserved: dict[str, set[str]] = {}
        for argument, folder in zip(self.arguments, absolute):
            if argument.is_dir():
                relative = Path(os.path.relpath(folder, self.root))
                if relative.parts:
                    parent = os.path.normpath(os.path.join(self.root, *relative.parts[:-1]))
                    reserved.setdefault(parent, set()).add(relative.parts[-1])
            else:
                files_by_folder.setdefault(folder, []).append(argument.name)
        self._argument_bases = {folder: unique_bases(names, reserved.get(folder, ()))
                                for folder, names in files_by_folder.items()}
        self._folder_cache: dict[str, dict[str, str]] = {}

    def base_of_argument(self, path: Path) -> Path:
        folder = os.path.abspath(path.parent)
        if self.single:
            return self.out.with_suffix("")
        return self._out_folder(folder) / self._argument_bases[folder][path.name]

    def _out_folder(self, folder: str) -> Path:
        relative = os.path.relpath(folder, self.root)
        return self.out if relative == "." else self.out / relative

    def _folder_bases(self, folder: str) -> dict[str, str]:
        from .data import iter_folder_files

        found = self._folder_cache.get(folder)
        if found is None:
            names = [p.name for p in iter_folder_files(folder, recursive=False)]
            with os.scandir(folder) as scan:
                subfolders = [e.name for e in scan if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
            reserved = set(subfolders)
            if os.path.normpath(os.path.abspath(self._out_folder(folder))) == os.path.normpath(folder):
                reserved |= set(os.listdir(folder))  # outputs beside their inputs: never onto another file there
            if len(self._folder_cache) > 64:
                self._folder_cache.clear()
            found = self._folder_cache[folder] = unique_bases(names, sorted(reserved))
        return found

    def __iter__(self) -> Iterator[InputFile]:
        from .data import iter_folder_files

        for argument in self.arguments:
            if not argument.is_dir():
                yield InputFile(argument, self.base_of_argument(argument))
                continue
            for path in iter_folder_files(argument, exclude=(self._out_abs,)):
                folder = os.path.abspath(path.parent)
                yield InputFile(path, self._out_folder(folder) / self._folder_bases(folder)[path.name])

    def count(self) -> int:
        """Input files (not drawings), by walking the folders once more."""
        from .data import iter_folder_files

        return sum(1 if not a.is_dir() else sum(1 for _ in iter_folder_files(a, exclude=(self._out_abs,)))
                   for a in self.arguments)


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
    the score maps (`sketchkit.io.hdf5.SCORE_MODES`)."""

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


def key_hash(key: str) -> int:
    """The 64-bit hash `ResultsStore` remembers a stored sketch by."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


def _stored_keys(paths: Sequence[Path]) -> np.ndarray:
    """Sorted 64-bit hashes of the sketch names stored in columnar results files (read through io/h5check.py)."""
    from .io.h5check import open_h5, read_array

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
        from .io.hdf5 import check_score_mode

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
        from .io.hdf5 import ResultsWriter

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
        from .io.hdf5 import merge_results_h5

        if not self.shard.is_main:
            return None
        parts = [p for p in self._part_files() if self.resume or p.name.startswith(self.session)]
        inputs = ([self.path] if self.resume and self.path.exists() else []) + parts
        if not inputs:
            from .io.hdf5 import ResultsWriter

            ResultsWriter(self.path, scores=self.scores, attrs=self.attrs).close()
        else:
            staged = self.parts / f"merged-{self.session}.h5"
            merge_results_h5(inputs, staged, overwrite=True)
            os.replace(staged, self.path)
        import shutil

        shutil.rmtree(self.parts, ignore_errors=True)  # merged parts, and what killed writers left there
        self.release(complete=True)
        return self.path

    def release(self, *, complete: bool) -> None:
        if self._claim is not None:
            self._claim.release(complete=complete)
            self._claim = None


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
    from .write import write_result

    shard = shard or Shard()
    counter = counter if counter is not None else shard.counter()
    engine = Engine(segmenter, labels=job.labels, threshold=job.threshold, batch_size=job.batch_size,
                    prefetch=job.prefetch, timings=timings, strict=job.strict, top_k=job.top_k)
    walk = InputWalk(job.inputs, job.out)
    file_formats = [f for f in job.formats if f in FORMAT_SUFFIX]
    run_paths = run_output_paths(job.out, job.formats, walk.single)
    for path in run_paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(path, job.inputs, job.overwrite)
    store = None
    if job.out_h5 is not None:
        Path(job.out_h5).parent.mkdir(parents=True, exist_ok=True)
        check_output_path(job.out_h5, job.inputs, overwrite=True)
        store = ResultsStore(Path(job.out_h5), scores=job.scores, shard=shard, resume=job.skip_existing,
                             overwrite=job.overwrite, job=job_id(job), part_rows=job.h5_part_rows)
    try:
        run_claims = [] if shard.distributed else _claim_run_outputs(run_paths.values())
    except BaseException:
        if store is not None:
            store.abort()
        raise
    claims: dict[int, object] = {}

    def targets(drawing: Drawing) -> list[Path]:
        if walk.single and not drawing.name:
            return _exact_outputs(job.out, file_formats)
        return output_files(drawing.base, drawing.name, file_formats)

    def key(drawing: Drawing) -> str:
        return _relative_key(drawing.stem, job.out)

    def complete(drawing: Drawing, check_claim: bool = True) -> bool:
        """All outputs there, no writer's claim left, and stored in out_h5."""
        outputs = targets(drawing)
        if not outputs and store is None:
            return False
        if outputs and (not all(p.exists() for p in outputs)
                        or (check_claim and os.path.lexists(claim_path(drawing.stem)))):
            return False
        return store is None or store.done(key(drawing))

    def load(item: tuple[Drawing, object]) -> Sketch | None:
        drawing, sketch = item
        if isinstance(sketch, SketchkitError):
            raise sketch
        if sketch is None or (job.skip_existing and complete(drawing)):
            return None
        outputs = targets(drawing)
        if outputs:
            claim = claim_outputs(drawing.stem)
            if claim is None:
                if job.skip_existing:
                    return None  # another run is writing it
                raise UsageError(f"output {drawing.stem} is being written by another run")
            claims[id(item)] = claim
            if not job.overwrite and not job.skip_existing and not claim.stale:
                existing = [p for p in outputs if os.path.lexists(p)]
                if existing:
                    raise UsageError(f"output {existing[0]} exists", hint="overwrite")
            if job.skip_existing and not claim.stale and complete(drawing, check_claim=False):
                claims.pop(id(item)).release()  # finished by another run since we looked
                return None
            if claim.stale:
                _remove_temp_files(outputs)
            _check_targets(outputs, drawing.path)
        return sketch

    summary = RunSummary(csv_path=run_paths.get("csv"), coco_path=run_paths.get("coco"), csv_per=job.csv_per,
                         overwrite=job.overwrite, part=shard.rank if shard.distributed else None)
    try:
        with summary:
            for outcome in engine.stream(_drawings(job, walk, shard, complete, engine.timings), load):
                item = outcome.item
                drawing = item[0]
                claim = claims.pop(id(item), None)
                if outcome.skipped:
                    if claim is not None:
                        claim.release(complete=not claim.stale)
                    reason = "outputs exist" if item[1] is None or complete(drawing) else "claimed by another run"
                    counter.tick(skipped=1)
                    yield FileOutcome(drawing.path, drawing.name, outputs=targets(drawing), skipped=True,
                                      skipped_because=reason, unit=drawing.unit)
                elif outcome.error is not None:
                    if claim is not None:
                        claim.release(complete=not claim.stale)
                    counter.tick(failed=1)
                    yield FileOutcome(drawing.path, drawing.name, error=outcome.error, unit=drawing.unit)
                else:
                    start = time.perf_counter()
                    written = []
                    try:
                        for target in targets(drawing):
                            written.append(write_result(outcome.result, target, overwrite=True, palette=job.palette,
                                                        scores=job.scores))
                        if store is not None:
                            store.add(outcome.result, key(drawing), (drawing.unit, drawing.index))
                    except BaseException:
                        _remove_outputs(targets(drawing))  # Ctrl-C, a full disk: no partial set stays
                        if claim is not None:
                            claim.release(complete=True)
                        raise
                    if claim is not None:
                        claim.release(complete=True)
                    summary.add(outcome.result, (drawing.unit, drawing.index))
                    engine.timings.write += time.perf_counter() - start
                    counter.tick(done=1)
                    yield FileOutcome(drawing.path, drawing.name, result=outcome.result, outputs=written,
                                      unit=drawing.unit)
        if store is not None:
            store.close()
        counter.finish()
        if store is not None:
            store.finish()
        for claim in run_claims:
            claim.release()
        if run_paths and shard.distributed and shard.is_main:  # every rank's summary part is published
            from .io.summary import merge_summary_parts, summary_parts

            merge_summary_parts(summary_parts(run_paths.get("csv") or run_paths["coco"]), csv_path=run_paths.get("csv"),
                                coco_path=run_paths.get("coco"), csv_per=job.csv_per, overwrite=job.overwrite)
    except BaseException:
        for claim in [*claims.values(), *run_claims]:
            claim.release(complete=not claim.stale)
        if store is not None:
            store.abort()
        raise


def _relative_key(stem: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(stem, out)).as_posix()
    except ValueError:
        return stem.as_posix()


def _exact_outputs(out: Path, formats: Sequence[str]) -> list[Path]:
    """One input written to `out` exactly, its other formats beside it with their own suffixes."""
    others = [p for p in output_files(out.with_suffix(""), "", formats) if p != out]
    return [out] + others if any(FORMAT_SUFFIX[f] == out.suffix.lower() for f in formats) else others


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
            _remove_temp_files([path])
        claims.append(claim)
    return claims


def _remove_temp_files(outputs: Sequence[Path]) -> None:
    """The temporary files a killed writer left beside outputs whose claim we now hold (sketchkit.files
    names them `.<name>.tmp-XXXXXXXX`)."""
    for target in outputs:
        for leftover in target.parent.glob(glob_escape(temp_prefix(target)) + "*"):
            try:
                if leftover.is_dir() and not leftover.is_symlink():
                    import shutil

                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
            except OSError:
                pass


def _remove_outputs(outputs: Sequence[Path]) -> None:
    """Remove what a failed write of one output set (held under our claim) left: its files and temp files."""
    import shutil

    for target in outputs:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                target.unlink()
    _remove_temp_files(outputs)


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _check_targets(outputs: Sequence[Path], source: Path) -> None:
    """Each output's folder exists; no output is the file being read (or a non-folder where masks go)."""
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == FORMAT_SUFFIX["masks"]:
            if target.exists() and not target.is_dir():
                raise UsageError(f"output {target} exists and is not a folder")
            continue
        check_output_path(target, [source], overwrite=True)
