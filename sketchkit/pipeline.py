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
from typing import Callable, Iterator, Sequence

from .errors import InputError, SketchkitError, UsageError
from .files import check_output_path
from .predictor import Timings, batched, segment_batch
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
    path: Path
    result: SegmentResult | None = None
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False


@dataclass
class SegmentJob:
    inputs: Sequence[Path]
    out: Path
    formats: Sequence[str]
    labels: Sequence[str] | None = None  # fixed label set, or None: from each sketch's caption
    caption: str | None = None
    vocabulary: Sequence[str] | None = None
    threshold: float | None = None
    batch_size: int = 8
    overwrite: bool = False
    skip_existing: bool = False
    strict: bool = False


def _labels_for(job: SegmentJob, sketch: Sketch) -> list[str]:
    from .labels import labels_from_caption

    if job.labels:
        return list(job.labels)
    text = job.caption or sketch.caption
    if not text:
        raise InputError("no labels: pass --labels or --caption, or put a caption .txt beside the file", sketch.source)
    found = labels_from_caption(text, job.vocabulary)
    if not found:
        raise InputError(f"no known category in the caption {text!r} (see `sketchkit labels`, or pass --vocab/--labels)", sketch.source)
    return found


def run_segment(job: SegmentJob, model, *, timings: Timings | None = None, on_done: Callable[[FileOutcome], None] | None = None) -> Iterator[FileOutcome]:
    """Yield one FileOutcome per input, in input order within each batch."""
    from .io import read_sketch
    from .write import write_result

    timings = timings if timings is not None else Timings()
    targets = output_paths(list(job.inputs), job.out, job.formats)
    for batch in batched(job.inputs, job.batch_size):
        ready: list[tuple[Path, Sketch, list[str]]] = []
        for path in batch:
            outputs = targets[path]
            if job.skip_existing and all(p.exists() for p in outputs):
                yield FileOutcome(path, outputs=outputs, skipped=True)
                continue
            try:
                check_output_path_all(outputs, job.inputs, job.overwrite)
                t0 = time.perf_counter()
                sketch = read_sketch(path, caption=job.caption)
                timings.read += time.perf_counter() - t0
                ready.append((path, sketch, _labels_for(job, sketch)))
            except SketchkitError as exc:
                if job.strict or isinstance(exc, UsageError):
                    raise
                yield FileOutcome(path, error=str(exc))
        if not ready:
            continue
        results = segment_batch([s for _, s, _ in ready], [names for _, _, names in ready], model, threshold=job.threshold, timings=timings)
        for (path, _, _), result in zip(ready, results):
            t0 = time.perf_counter()
            written = [write_result(result, target, overwrite=True) for target in targets[path]]
            timings.write += time.perf_counter() - t0
            yield FileOutcome(path, result=result, outputs=written)


def check_output_path_all(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(target, inputs, overwrite)
