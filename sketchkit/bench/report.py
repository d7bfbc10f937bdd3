"""What the bench is asked (`BenchOptions`) and what it answers (`BenchReport`): plain dataclasses, JSON-ready.

Every figure that was not measured is None (n/a), with a note saying why where it helps.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..model import DEFAULT_BACKBONE

SECTIONS = ("attention", "encoder", "pipeline", "startup", "serve", "scale")
DEFAULT_SECTIONS = ("attention", "encoder", "pipeline", "startup")
"""What `sketchkit bench` runs when no section is named: serve and scale are asked for by name (scale takes minutes)."""


@dataclass
class BenchOptions:
    """What to measure. Defaults: full-size ViT-B/16 with random weights, the device's default batch sizes."""

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # a weights file; else random init when random_weights, else resolved as in segment
    random_weights: bool = True
    device: str = "auto"  # auto | cpu | cuda
    batches: tuple[int, ...] | None = None  # encoder/attention batch sizes; None: DEFAULT_BATCHES for the device
    dtype: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = True  # time the torch.compile'd encoder rows (first call per shape = compile time, reported)
    compile_mode: str | None = None  # torch.compile mode (see sketchkit.model.compile.COMPILE_MODES)
    compile_backend: str = "inductor"  # aot_eager: trace only (checks graph capture quickly; not a speed figure)
    data: tuple[Path, ...] = ()  # pipeline inputs (files or folders); empty: the bundled examples/*.svg
    labels: tuple[str, ...] | None = None  # pipeline label set; None: each sketch's own labels, else its caption
    limit: int | None = None  # use only the first N input files
    pipeline_batch: int = 8
    pipeline_compile: bool = False  # run the pipeline with the compiled encoder
    min_sketches: int = 8  # each pipeline row repeats passes over the inputs until it processed this many
    repeats: int = 5  # CPU timer: at least this many timed calls after one warm-up call
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    tune_malloc: bool = True  # sketchkit.model.compile.tune_malloc before measuring (CPU page faults)
    serve_repeats: int = 20  # serve: timed POST /segment requests
    scale_sizes: tuple[int, ...] = (2000, 20000)  # scale: synthetic sketches per run (every process count at the first)
    scale_processes: tuple[int, ...] = (1, 2)  # scale: torchrun processes (gloo on CPU)


@dataclass
class Environment:
    device: str  # "cpu" | "cuda"
    device_name: str
    torch: str
    triton: str | None
    threads: int  # torch intra-op threads
    dtype: str  # "float32" | "bfloat16 (autocast)"
    backbone: str
    weights: str  # the encoder's weights_source, e.g. "random weights (random_init)"
    vv_impl: str  # what resolve_impl picks here by default (sdpa on CPU)
    model_import_s: float  # import open_clip (with torchvision) in this process, before the build
    model_build_s: float  # create_encoder: architecture, init or weights, device move
    flops_per_image: int  # analytic, forward_features with dual path and prompts
    timer: str
    memory: str  # how peak memory is measured
    malloc_tuned: bool
    load_before: float | None  # 1-minute load average: other processes competing for the cores spoil timings
    load_after: float | None = None


@dataclass
class Ceiling:
    dtype: str
    size: int  # side of the square matmul
    seconds: float
    gflops: float  # measured GFLOP/s: the device's practical matmul ceiling


@dataclass
class AttentionRow:
    batch: int
    heads: int
    tokens: int
    head_dim: int
    dtype: str
    fused_ms: float | None
    eager_ms: float
    sdpa2_ms: float
    sdpa1_ms: float
    fused_max_error: float | None  # max |fused - fp32 reference| over both outputs
    eager_vs_sdpa1: float  # time ratios: how many one-SDPA-calls each dual path costs
    sdpa2_vs_sdpa1: float
    fused_vs_sdpa1: float | None
    eager_vs_fused: float | None
    note: str = ""


@dataclass
class EncoderRow:
    variant: str  # "eager" | "compiled"
    impl: str  # dual-path attention: "sdpa" | "triton"
    batch: int
    seconds: float | None  # median time of one batch
    images_per_s: float | None
    seconds_per_image: float | None
    gflops: float | None  # achieved GFLOP/s (analytic FLOPs / time)
    ceiling_fraction: float | None
    peak_memory_mb: float | None
    compile_s: float | None  # first call, compile included (compiled rows)
    note: str = ""


@dataclass
class PipelineRow:
    mode: str  # "serial" | "overlapped"
    batch_size: int
    sketches: int  # sketches processed in the timed run
    wall_s: float
    sketches_per_s: float
    seconds_per_sketch: float
    stages: dict[str, float]  # seconds per sketch: read, raster, encode, score, vote, write (+ wait when overlapped)
    peak_memory_mb: float | None
    note: str = ""


@dataclass
class Startup:
    cli_import_s: float | None  # python -c "import sketchkit.cli.app"
    cold_segment_s: float | None  # python -m sketchkit.cli segment FILE (one process; see cold_backbone)
    command: str
    model_build_s: float  # the benchmarked backbone, in this process
    model: str
    note: str = ""
    cold_backbone: str = "tiny-random"  # the backbone of the cold segment run


@dataclass
class ScaleRow:
    processes: int
    sketches: int  # synthetic drawings in the run's input
    threads: int  # torch threads per process (the machine's cores / processes)
    wall_s: float | None  # the slowest process's run_segment: stream, model, writes, and rank 0's merge
    sketches_per_s: float | None
    launch_s: float | None  # torchrun start to exit: process start, imports and model build included
    peak_rss_mb: list[float]  # per rank, getrusage high-water mark
    bytes_per_sketch: float | None  # the run's --out-h5 file (scores none) / sketches
    note: str = ""

    @property
    def peak_rss_max_mb(self) -> float | None:
        return max(self.peak_rss_mb) if self.peak_rss_mb else None


@dataclass
class OutputSize:
    scores: str  # none | top1 | fp16
    sketches: int
    source: str  # what was segmented: "FrISS test" | "synthetic"
    bytes_per_sketch: float | None
    file_bytes: int


@dataclass
class Goal:
    """One target of the speed issue against this run (see goals.GOALS)."""

    name: str
    target: str  # comparison and value, e.g. "<= 0.25"
    measured: float | None
    unit: str
    met: bool | None  # None: not measured here, or measured off the goal's setting (see note)
    note: str = ""


@dataclass
class BenchReport:
    environment: Environment
    ceiling: Ceiling | None = None
    attention: list[AttentionRow] = field(default_factory=list)
    encoder: list[EncoderRow] = field(default_factory=list)
    pipeline: list[PipelineRow] = field(default_factory=list)
    pipeline_inputs: list[str] = field(default_factory=list)
    startup: Startup | None = None
    serve: list = field(default_factory=list)  # sketchkit.serve.bench.ServeLatency rows
    scale: list[ScaleRow] = field(default_factory=list)
    output_sizes: list[OutputSize] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (n/a values are None)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def write_json(report: BenchReport, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the report as JSON, atomically (an existing file only with `overwrite`)."""
    from ..files import atomic_write_text

    return atomic_write_text(path, report.to_json() + "\n", overwrite=overwrite)
