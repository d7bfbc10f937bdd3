"""Section 3, pipeline: sketches/s of `sketchkit segment`'s own loop, `sketchkit.pipeline.run_segment`
(read -> raster -> encode -> score -> vote -> write svg + json through the inference engine), serial at batch 1
(the warm latency of one sketch) and at the pipeline batch size, and with read + raster overlapped with the model
by the engine's prefetch thread. Stage times are the engine's `Timings`, in seconds per sketch.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import UsageError
from .report import PipelineRow
from .timing import PeakMemory

PIPELINE_FORMATS = ("svg", "json")  # what `sketchkit segment` writes by default
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OVERLAPPED_NOTE = "read + raster in a background thread; 'wait' = model idle for data"


def find_inputs(data: Sequence[Path], limit: int | None = None) -> list[Path]:
    """Sketch files from files and folders (`sketchkit.data.find_sketches`: folders are walked recursively,
    dataset side files skipped). Empty `data`: the bundled examples/*.svg of a source checkout."""
    from ..data import find_sketches

    if not data:
        if not EXAMPLES.is_dir():
            raise UsageError(f"no bundled examples at {EXAMPLES}; give sketch files or a folder", hint="data")
        data = (EXAMPLES,)
    files = [f for path in data for f in find_sketches(path)]
    if not files:
        raise UsageError(f"no sketch files in {', '.join(map(str, data))}")
    return files[:limit] if limit else files


def bench_labels(labels: Sequence[str] | None):
    """The benchmark's label sets: the given list, else each sketch's own labels, else its caption."""
    from ..inference import LabelPolicy

    return LabelPolicy.fixed(labels) if labels else LabelPolicy(("ground-truth", "caption"))


def pipeline_configs(batch_size: int) -> list[tuple[str, int]]:
    """The rows: (mode, batch size)."""
    if batch_size == 1:
        return [("serial", 1), ("overlapped", 1)]
    return [("serial", 1), ("serial", batch_size), ("overlapped", batch_size)]


def bench_pipeline(segmenter, files: Sequence[Path], device: torch.device, *, batch_size: int, memory: PeakMemory,
                   labels: Sequence[str] | None = None, min_sketches: int = 8,
                   on_progress: Callable[[str], None] | None = None) -> list[PipelineRow]:
    """One row per `pipeline_configs` entry. Each runs `run_segment` once untimed (text embeddings cached, allocator
    and compiled shapes warm), then once timed over the inputs repeated until at least `min_sketches` were
    processed. Outputs go to a temporary folder."""
    from ..inference import Timings
    from ..pipeline import SegmentJob, run_segment

    policy = bench_labels(labels)
    sequence = list(files) * max(1, math.ceil(min_sketches / len(files)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sketchkit-bench-") as tmp:
        for mode, size in pipeline_configs(batch_size):
            if on_progress:
                on_progress(f"pipeline: {mode}, batch {size}, {len(sequence)} sketches")
            job = SegmentJob(inputs=sequence, out=Path(tmp), formats=PIPELINE_FORMATS, labels=policy, batch_size=size,
                             prefetch=2 if mode == "overlapped" else 0, overwrite=True, strict=True)
            _drain(run_segment(job, segmenter))  # warm-up
            memory.reset()
            timings = Timings()
            start = time.perf_counter()
            _drain(run_segment(job, segmenter, timings=timings))
            wall = time.perf_counter() - start
            stages = {k: v / len(sequence) for k, v in timings.as_dict().items() if mode == "overlapped" or k != "wait"}
            rows.append(PipelineRow(
                mode=mode, batch_size=size, sketches=len(sequence), wall_s=wall, sketches_per_s=len(sequence) / wall,
                seconds_per_sketch=wall / len(sequence), stages=stages, peak_memory_mb=memory.megabytes(),
                note=OVERLAPPED_NOTE if mode == "overlapped" else "",
            ))
    return rows


def _drain(outcomes) -> None:
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
