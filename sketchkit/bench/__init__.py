"""Speed of sketchkit measured in one run on one device: `run_bench(BenchOptions(...)) -> BenchReport`.

Sections (each a list of plain dataclass rows; `BenchReport.to_dict()` gives JSON-ready data, n/a = None):

1. attention (`attention.py`): the fused Triton kernel vs the eager dual path vs one SDPA call vs two SDPA calls,
   at the encoder's own shape (batch, heads, tokens = class + patches + prompts, head dim).
2. encoder (`encoder.py`): images/s of `forward_features` per batch size, eager and torch.compile'd, each with the
   SDPA dual path and with the fused kernel; achieved GFLOP/s (`encoder_flops`) as a share of the matmul ceiling.
3. pipeline (`pipeline.py`): sketches/s of `sketchkit segment`'s own loop (`sketchkit.pipeline.run_segment`),
   serial and with the engine's prefetch, with the engine's stage timings.
4. memory: peak memory per encoder and pipeline row (`timing.PeakMemory`).
5. ceiling: a large matmul in the run's dtype, measured in the same run (`timing.matmul_ceiling`).
6. startup (`startup.py`): a cold `segment` in a fresh process, the CLI's import time, the backbone's build time.
7. serve (`sketchkit.serve.bench.measure`): warm POST /segment latency through the real app, in-process client.
8. scale (`scale.py`): `segment` over 2,000 and 20,000 synthetic sketches in 1 and 2 processes (torchrun, gloo):
   sketches/s, each process's peak RSS, and the results file's bytes per sketch for each score storage.
9. goals (`goals.py`): the speed issue's targets, a table of records judged by one function.
Sections 1-4 run by default; serve and scale when named (`--sections serve,scale`).

`report.py` holds the options and result dataclasses, `timing.py` the timers, `run.py` the driver.
Timing: triton.testing.do_bench (median) on CUDA; on CPU `cpu_time` (warm-up, then at least `repeats` calls,
median). The Triton interpreter is never timed: without a CUDA GPU the Triton rows say n/a. Random weights (the
default: full-size ViT-B/16, random init) are labelled in the report: speed does not depend on weight values, so
no download is needed to measure it.
"""

from .encoder import VIT_B16_GFLOP, encoder_flops, with_impl
from .goals import GOALS, GoalSpec, evaluate_goals
from .report import (DEFAULT_SECTIONS, SECTIONS, AttentionRow, BenchOptions, BenchReport, Ceiling, EncoderRow,
                     Environment, Goal, OutputSize, PipelineRow, ScaleRow, Startup, write_json)
from .run import run_bench

__all__ = ["DEFAULT_SECTIONS", "GOALS", "OutputSize", "ScaleRow", "SECTIONS", "VIT_B16_GFLOP", "AttentionRow", "BenchOptions", "BenchReport", "Ceiling",
           "EncoderRow", "Environment", "Goal", "GoalSpec", "PipelineRow", "Startup", "encoder_flops",
           "evaluate_goals", "run_bench", "with_impl", "write_json"]
