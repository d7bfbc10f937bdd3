"""Many files through read -> raster -> model -> vote -> write, for `sketchkit segment`.

One bad file is reported and skipped (or stops the run with `strict`); outputs keep the
inputs' relative paths under the output folder so names never collide; `skip_existing`
resumes a big batch.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from .errors import SketchkitError, UsageError
from .files import check_output_path
from .inference.engine import Engine, Timings
from .inference.policy import LabelPolicy
from .io.summary import RunSummary
from .render import Palette
from .types import SegmentResult, Sketch

FORMAT_SUFFIX = {"svg": ".svg", "h5": ".h5", "png": ".png", "json": ".json", "masks": ".masks"}
"""Per-input outputs: one file (a folder for masks) per input and format."""
RUN_OUTPUTS = {"csv": "segmentation.csv", "coco": "segmentation.coco.json"}
"""Run-level outputs: one file for the whole run, in the output folder."""


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


def output_bases(inputs: Sequence[Path], out: Path) -> dict[Path, Path]:
    """Map each input to its outputs' base path (no suffix): `out/<path relative to the inputs' common
    folder>`. A single input with `out` carrying a known suffix: `out` without it. Inputs that differ
    only in their suffix (scene.svg, scene.json) keep it: `out/scene.svg`, `out/scene.json`."""
    if len(inputs) == 1 and out.suffix.lower() in FORMAT_SUFFIX.values():
        return {inputs[0]: out.with_suffix("")}
    resolved = [p.resolve() for p in inputs]
    root = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path.cwd()
    stems = Counter(p.relative_to(root).with_suffix("") for p in set(resolved))
    mapping = {}
    for original, path in zip(inputs, resolved):
        relative = path.relative_to(root).with_suffix("")
        if stems[relative] > 1:  # scene.svg and scene.json side by side: keep the suffix (scene.svg.json)
            relative = path.relative_to(root)
        mapping[original] = out / relative
    return mapping


def output_files(base: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """The per-input outputs of one drawing: `<base>.<fmt>`, or `<base>/<name>.<fmt>` for drawing `name`
    of a file that holds several (QuickDraw), named by key id or index."""
    stem = base / name if name else base
    return [stem.parent / (stem.name + FORMAT_SUFFIX[f]) for f in formats if f in FORMAT_SUFFIX]


def output_paths(inputs: Sequence[Path], out: Path, formats: Sequence[str]) -> dict[Path, list[Path]]:
    """Each (single-drawing) input's output files (see `output_bases`; a single input's `out` with a
    known suffix is written exactly)."""
    bases = output_bases(inputs, out)
    if len(inputs) == 1 and out.suffix.lower() in FORMAT_SUFFIX.values():
        own = next((f for f, suffix in FORMAT_SUFFIX.items() if suffix == out.suffix.lower()), None)
        return {inputs[0]: [out] + [p for p in output_files(bases[inputs[0]], "", formats) if p != out and own]}
    return {path: output_files(base, "", formats) for path, base in bases.items()}


@dataclass(frozen=True)
class Drawing:
    """One sketch to segment: its file and its name in the file ("" when the file holds one sketch)."""

    path: Path
    name: str = ""


@dataclass
class FileOutcome:
    """One drawing's outcome: its result and written files, or its error, or skipped (outputs exist).
    `name` is the drawing's name in its file ("" for single-sketch files)."""

    path: Path
    name: str = ""
    result: SegmentResult | None = None
    outputs: list[Path] = field(default_factory=list)
    error: SketchkitError | None = None
    skipped: bool = False


@dataclass
class SegmentJob:
    """What to segment and where to write it. `labels` says where each sketch's labels come from
    (its `caption`, when set, is also the caption recorded in the outputs)."""

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


def run_segment(job: SegmentJob, segmenter, *, timings: Timings | None = None) -> Iterator[FileOutcome]:
    """Yield one FileOutcome per drawing, in input order (the engine encodes and votes; this reads and writes).
    Every drawing of a multi-drawing file (QuickDraw) is segmented as its own sketch."""
    from .write import write_result

    engine = Engine(segmenter, labels=job.labels, threshold=job.threshold, batch_size=job.batch_size,
                    prefetch=job.prefetch, timings=timings, strict=job.strict, top_k=job.top_k)
    single = len(job.inputs) == 1 and job.out.suffix.lower() in FORMAT_SUFFIX.values()
    exact = output_paths(list(job.inputs), job.out, job.formats) if single else {}
    bases = output_bases(list(job.inputs), job.out)
    run_paths = run_output_paths(job.out, job.formats, len(job.inputs) == 1)
    for path in run_paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(path, job.inputs, job.overwrite)

    def targets(drawing: Drawing) -> list[Path]:
        if single and not drawing.name:
            return exact[drawing.path]
        return output_files(bases[drawing.path], drawing.name, job.formats)

    def load(item: tuple[Drawing, object]) -> Sketch | None:
        drawing, sketch = item
        if isinstance(sketch, SketchkitError):
            raise sketch
        if sketch is None or (job.skip_existing and all(p.exists() for p in targets(drawing))):
            return None
        check_output_paths(targets(drawing), job.inputs, job.overwrite)
        return sketch

    with RunSummary(csv_path=run_paths.get("csv"), coco_path=run_paths.get("coco"), csv_per=job.csv_per,
                    overwrite=job.overwrite) as summary:
        for outcome in engine.stream(_drawings(job, targets, engine.timings), load):
            drawing = outcome.item[0]
            if outcome.skipped:
                yield FileOutcome(drawing.path, drawing.name, outputs=targets(drawing), skipped=True)
            elif outcome.error is not None:
                yield FileOutcome(drawing.path, drawing.name, error=outcome.error)
            else:
                start = time.perf_counter()
                written = [write_result(outcome.result, target, overwrite=True, palette=job.palette)
                           for target in targets(drawing)]
                summary.add(outcome.result)
                engine.timings.write += time.perf_counter() - start
                yield FileOutcome(drawing.path, drawing.name, result=outcome.result, outputs=written)


MULTI_DRAWING_SUFFIXES = (".ndjson", ".json")
"""Suffixes of files that may hold several drawings (QuickDraw); others hold one sketch."""


def _drawings(job: SegmentJob, targets, timings: Timings) -> Iterator[tuple[Drawing, object]]:
    """(Drawing, Sketch | error | None) for every drawing of every input, read lazily (in the engine's
    prefetch thread when it has one). None: a one-sketch file whose outputs exist under skip_existing,
    not even read."""
    from .io import iter_drawings

    for path in job.inputs:
        if job.skip_existing and path.suffix.lower() not in MULTI_DRAWING_SUFFIXES \
                and all(p.exists() for p in targets(Drawing(path))):
            yield Drawing(path), None
            continue
        drawings = iter_drawings(path, caption=job.labels.caption)
        while True:
            start = time.perf_counter()
            try:
                name, sketch = next(drawings)
            except StopIteration:
                break
            except SketchkitError as exc:
                if isinstance(exc, UsageError):
                    raise
                yield Drawing(path), exc  # the message names the line or record
                break
            finally:
                timings.read += time.perf_counter() - start
            yield Drawing(path, name), sketch


def check_output_paths(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == FORMAT_SUFFIX["masks"]:  # a folder of PNGs
            if target.exists() and not (overwrite and target.is_dir()):
                raise UsageError(f"output {target} exists", hint="overwrite" if target.is_dir() else None)
            continue
        check_output_path(target, inputs, overwrite)
