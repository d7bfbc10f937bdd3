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
from .types import SegmentResult, Sketch

FORMAT_SUFFIX = {"svg": ".svg", "h5": ".h5", "png": ".png", "json": ".json"}


def parse_formats(spec: str) -> list[str]:
    formats = [f.strip().lower() for f in spec.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMAT_SUFFIX]
    if bad or not formats:
        raise UsageError(f"unknown output format(s) {', '.join(bad) or spec!r}; choose from {', '.join(FORMAT_SUFFIX)}")
    return list(dict.fromkeys(formats))


def output_paths(inputs: Sequence[Path], out: Path, formats: Sequence[str]) -> dict[Path, list[Path]]:
    """Map each input to its output files: `out/<path relative to the inputs' common folder>.<fmt>`.

    A single input with `out` carrying a known suffix writes exactly that file. Inputs that differ
    only in their suffix (scene.svg, scene.json) keep it: `out/scene.svg.<fmt>`, `out/scene.json.<fmt>`.
    """
    if len(inputs) == 1 and out.suffix.lower() in FORMAT_SUFFIX.values():
        fmt_of = {v: k for k, v in FORMAT_SUFFIX.items()}
        others = [f for f in formats if FORMAT_SUFFIX[f] != out.suffix.lower()]
        return {inputs[0]: [out] + [out.with_suffix(FORMAT_SUFFIX[f]) for f in others if fmt_of[out.suffix.lower()] != f]}
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
    overwrite: bool = False
    skip_existing: bool = False
    strict: bool = False


def run_segment(job: SegmentJob, segmenter, *, timings: Timings | None = None) -> Iterator[FileOutcome]:
    """Yield one FileOutcome per input, in input order (the engine reads, encodes and votes; this writes)."""
    from .io import read_sketch
    from .write import write_result

    engine = Engine(segmenter, labels=job.labels, threshold=job.threshold, batch_size=job.batch_size,
                    prefetch=job.prefetch, timings=timings, strict=job.strict)
    targets = output_paths(list(job.inputs), job.out, job.formats)

    def load(path: Path) -> Sketch | None:
        outputs = targets[path]
        if job.skip_existing and all(p.exists() for p in outputs):
            return None
        check_output_paths(outputs, job.inputs, job.overwrite)
        return read_sketch(path, caption=job.labels.caption)

    for outcome in engine.stream(job.inputs, load):
        path = outcome.item
        if outcome.skipped:
            yield FileOutcome(path, outputs=targets[path], skipped=True)
        elif outcome.error is not None:
            yield FileOutcome(path, error=outcome.error)
        else:
            start = time.perf_counter()
            written = [write_result(outcome.result, target, overwrite=True) for target in targets[path]]
            engine.timings.write += time.perf_counter() - start
            yield FileOutcome(path, result=outcome.result, outputs=written)


def check_output_paths(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(target, inputs, overwrite)
