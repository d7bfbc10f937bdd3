"""Section 7, scale: `sketchkit segment` over many sketches in 1 and 2 processes (torchrun, gloo on CPU), its
throughput and each process's peak memory as the input grows, and the bytes per sketch of its results file.

Inputs: synthetic QuickDraw-style drawings (`write_synthetic`, a fixed seed), `FILE_DRAWINGS` per .ndjson file as a
QuickDraw category file holds them, segmented by the tiny random-weight backbone (the figure is the pipeline's cost
and its memory, not the model's) into one `--out-h5` results file without score maps. Each run is
`torchrun --standalone --nproc-per-node P -m sketchkit.bench.scale ...`: every rank times its own `run_segment`
(stream, model, writes, and on rank 0 the merge of the parts) and reports its peak RSS (getrusage). Each run uses
the whole machine: cores / P torch threads per process.

Bytes per sketch: the results file of `out_h5` for each score storage (none, top1, fp16), on FrISS scenes when
../shared/data is there (the issue's target is stated per FrISS sketch), else on the synthetic drawings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .report import OutputSize, ScaleRow

FILE_DRAWINGS = 500
LABELS = ("cat", "tree", "house")
SCALE_BACKBONE = "tiny-random"


def write_synthetic(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` QuickDraw records (3-8 strokes of 8-40 points on a 256 canvas) in .ndjson files of FILE_DRAWINGS."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, FILE_DRAWINGS):
        lines = []
        for key in range(start, min(count, start + FILE_DRAWINGS)):
            strokes = []
            for _ in range(int(rng.integers(3, 9))):
                n = int(rng.integers(8, 41))
                walk = np.cumsum(rng.normal(0, 6, size=(n, 2)), axis=0) + rng.uniform(40, 216, size=2)
                walk = np.clip(np.rint(walk), 0, 255).astype(int)
                strokes.append([walk[:, 0].tolist(), walk[:, 1].tolist()])
            lines.append(json.dumps({"word": "cat", "key_id": str(10**15 + key), "recognized": True,
                                     "drawing": strokes}, separators=(",", ":")))
        (folder / f"part-{start // FILE_DRAWINGS:05d}.ndjson").write_text("\n".join(lines) + "\n")
    return folder


def bench_scale(sizes: Sequence[int], processes: Sequence[int], *, batch_size: int = 16,
                on_progress: Callable[[str], None] | None = None, timeout: float = 3600) -> list[ScaleRow]:
    """A row per run: every process count at sizes[0], and the largest process count at every other size."""
    cores = os.cpu_count() or 1
    runs = [(p, sizes[0]) for p in processes] + [(max(processes), n) for n in sizes[1:]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="sketchkit-scale-") as tmp:
        data = {}
        for n in sorted(set(sizes)):
            data[n] = write_synthetic(Path(tmp) / f"in-{n}", n)
        for world, n in runs:
            if on_progress:
                on_progress(f"scale: {n} sketches, {world} process(es)")
            out = Path(tmp) / f"out-{world}-{n}"
            threads = max(1, cores // world)
            rows.append(_run(data[n], out, world, n, threads, batch_size, timeout))
    return rows


def _run(data: Path, out: Path, world: int, count: int, threads: int, batch_size: int, timeout: float) -> ScaleRow:
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
               "-m", "sketchkit.bench.scale", "--data", str(data), "--out", str(out), "--threads", str(threads),
               "--batch-size", str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ScaleRow(world, count, threads, None, None, None, [], None, f"timed out after {timeout:.0f} s")
    launch = time.perf_counter() - start
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("rank-*.json"))]
    if done.returncode != 0 or len(reports) != world:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        return ScaleRow(world, count, threads, None, None, launch, [], None,
                        f"exit {done.returncode}: {lines[-1] if lines else 'no output'}")
    wall = max(r["wall_s"] for r in reports)
    processed = sum(r["done"] + r["skipped"] for r in reports)
    stored = reports[0].get("bytes")
    return ScaleRow(world, count, threads, wall, processed / wall, launch, [r["peak_rss_mb"] for r in reports],
                    stored / processed if stored and processed else None,
                    "" if processed == count else f"{processed} of {count} sketches processed")


def bench_output_sizes(files: Sequence[Path], source: str, *, modes: Sequence[str] = ("none", "top1", "fp16"),
                       batch_size: int = 8) -> list[OutputSize]:
    """Bytes per sketch of an out_h5 results file for each score storage, one process (the tiny backbone)."""
    from ..inference import ModelSpec, build_segmenter
    from ..pipeline import SegmentJob, run_segment
    from .pipeline import bench_labels

    segmenter = build_segmenter(ModelSpec("clip-surgery", SCALE_BACKBONE, device="cpu"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sketchkit-bytes-") as tmp:
        for mode in modes:
            out = Path(tmp) / mode
            job = SegmentJob(inputs=list(files), out=out, formats=[], batch_size=batch_size, out_h5=out / "all.h5",
                             scores=mode, overwrite=True, labels=bench_labels(None))
            done = sum(1 for o in run_segment(job, segmenter) if o.result is not None)
            size = (out / "all.h5").stat().st_size
            rows.append(OutputSize(mode, done, source, size / done if done else None, size))
    return rows


# ---- the worker: one rank of a scale run (python -m sketchkit.bench.scale under torchrun) ---------------------


def _worker(argv: Sequence[str] | None = None) -> None:
    import resource

    import torch

    from ..inference import ModelSpec, build_segmenter
    from ..inference.policy import LabelPolicy
    from ..inference.shard import join_job
    from ..pipeline import SegmentJob, run_segment

    parser = argparse.ArgumentParser(prog="python -m sketchkit.bench.scale")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shard = join_job("cpu")
    try:
        segmenter = build_segmenter(ModelSpec("clip-surgery", SCALE_BACKBONE, device="cpu"))
        job = SegmentJob(inputs=[args.data], out=args.out, formats=[], labels=LabelPolicy.fixed(LABELS),
                         batch_size=args.batch_size, out_h5=args.out / "all.h5", scores="none", overwrite=True)
        counter = shard.counter()
        start = time.perf_counter()
        for outcome in run_segment(job, segmenter, shard=shard, counter=counter):
            if outcome.error is not None:
                raise outcome.error
        wall = time.perf_counter() - start
        report = {"rank": shard.rank, "world": shard.world, "done": counter.local["done"],
                  "skipped": counter.local["skipped"], "wall_s": wall, "threads": args.threads,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if shard.is_main:
            report["bytes"] = (args.out / "all.h5").stat().st_size
        (args.out / f"rank-{shard.rank:05d}.json").write_text(json.dumps(report))
    finally:
        shard.close()


if __name__ == "__main__":
    _worker()
