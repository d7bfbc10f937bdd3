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


def output_paths(inputs: Sequence[Path], out: Path, formats: Sequence[str]) -> dict[Path, list[Path]]:
    """Map each input to its output files: `out/<path relative to the inputs' common folder>.<fmt>`.

    A single input with `out` carrying a known suffix writes exactly that file. Inputs that differ
    only in their suffix (scene.svg, scene.json) keep it: `out/scene.svg.<fmt>`, `out/scene.json.<fmt>`.
    """
    if len(inputs) == 1 and out.suffix.lower() in FORMAT_SUFFIX.values():
        formats = [f for f in formats if f in FORMAT_SUFFIX]
        fmt_of = {v: k for k, v in FORMAT_SUFFIX.items()}
        others = [f for f in formats if FORMAT_SUFFIX[f] != out.suffix.lower()]
        return {inputs[0]: [out] + [out.with_suffix(FORMAT_SUFFIX[f]) for f in others if fmt_of[out.suffix.lower()] != f]}
    formats = [f for f in formats if f in FORMAT_SUFFIX]
    resolved = [p.resolve() for p in inputs]
    root = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path.cwd()
    stems = Counter(p.relative_to(root).with_suffix("") for p in set(resolved))
    mapping = {}
    for original, path in zip(inputs, resolved):
        relative = path.relative_to(root).with_suffix("")
        if stems[relative] > 1:  # scene.svg and scene.json side by side: keep the suffix (scene.svg.json)
            relative = path.relative_to(root)
        mapping[original] = [out / relative.parent / (relative.name + FORMAT_SUFFIX[f]) for f in formats]
    return mapping


@dataclass
class FileOutcome:
    """One input's outcome: its result and written files, or its error, or skipped (outputs exist)."""

    path: Path
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
    """Yield one FileOutcome per input, in input order (the engine reads, encodes and votes; this writes)."""
    from .io import read_sketch
    from .write import write_result

    engine = Engine(segmenter, labels=job.labels, threshold=job.threshold, batch_size=job.batch_size,
                    prefetch=job.prefetch, timings=timings, strict=job.strict, top_k=job.top_k)
    targets = output_paths(list(job.inputs), job.out, job.formats)
    run_paths = run_output_paths(job.out, job.formats, len(job.inputs) == 1)
    for path in run_paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(path, job.inputs, job.overwrite)

    def load(path: Path) -> Sketch | None:
        outputs = targets[path]
        if job.skip_existing and all(p.exists() for p in outputs):
            return None
        check_output_paths(outputs, job.inputs, job.overwrite)
        return read_sketch(path, caption=job.labels.caption)

    with RunSummary(csv_path=run_paths.get("csv"), coco_path=run_paths.get("coco"), csv_per=job.csv_per,
                    overwrite=job.overwrite) as summary:
        for outcome in engine.stream(job.inputs, load):
            path = outcome.item
            if outcome.skipped:
                yield FileOutcome(path, outputs=targets[path], skipped=True)
            elif outcome.error is not None:
                yield FileOutcome(path, error=outcome.error)
            else:
                start = time.perf_counter()
                written = [write_result(outcome.result, target, overwrite=True, palette=job.palette)
                           for target in targets[path]]
                summary.add(outcome.result)
                engine.timings.write += time.perf_counter() - start
                yield FileOutcome(path, result=outcome.result, outputs=written)


def check_output_paths(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == FORMAT_SUFFIX["masks"]:  # a folder of PNGs
            if target.exists() and not (overwrite and target.is_dir()):
                raise UsageError(f"output {target} exists", hint="overwrite" if target.is_dir() else None)
            continue
        check_output_path(target, inputs, overwrite)
