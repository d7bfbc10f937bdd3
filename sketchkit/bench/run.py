"""Speed of sketchkit measured in one run on one device: `run_bench(BenchOptions(...)) -> BenchReport`.

Sections (each a list of plain dataclass rows; `BenchReport.to_dict()` gives JSON-ready data, n/a = None):

1. attention: the fused Triton kernel vs the eager dual path (`dual_attention_ref`) vs one SDPA call (the original
   path alone: a block without the v-v path) vs two SDPA calls, at the encoder's own shape (batch, heads,
   tokens = class + patches + prompts, head dim). On CUDA this is `sketchkit.kernels.dual_attention.benchmark`.
2. encoder: images/s of `forward_features` (dual path + prompts, the segmenters' call) per batch size, for
   eager and torch.compile'd, each with the SDPA dual path and with the fused kernel.
3. pipeline: sketches/s of read -> raster -> encode -> score -> vote -> write through the clip-surgery segmenter,
   serial at batch 1 (the warm latency of one sketch) and at the pipeline batch size, and with read + raster
   overlapped with the model by a background thread (`prefetch`). Stage times are seconds per sketch.
4. memory: peak memory per encoder and pipeline row (torch.cuda.max_memory_allocated on CUDA; on CPU the process's
   RSS high-water mark from getrusage, reset before each row through /proc/self/clear_refs where Linux allows).
5. ceiling: a large matmul (fp32 on CPU, bf16 on CUDA: the run's dtype) measured in the same run; each encoder row
   reports its achieved GFLOP/s (analytic FLOPs, `encoder_flops`) as a fraction of it.
6. startup: a cold `python -m sketchkit.cli segment FILE` in a subprocess (the benchmarked backbone reading --weights
   FILE, else tiny-random), the CLI's import time, and the build time of the benchmarked backbone.
7. goals: the targets of the speed issue, each with the measured figure or why it was not measured here.

Timing: triton.testing.do_bench (median) on CUDA; on CPU `cpu_time` (warm-up, then at least `repeats` calls and
MIN_CPU_SECONDS, median). The Triton interpreter is never timed: without a CUDA GPU the Triton rows say n/a.
Random weights (the default: full-size ViT-B/16, random init) are labelled in the report: speed does not depend on
weight values, so no download is needed to measure it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F

from .errors import InputError, UsageError

SECTIONS = ("attention", "encoder", "pipeline", "startup")
DEFAULT_BATCHES = {"cuda": (1, 16, 64, 256), "cpu": (1, 8)}
CEILING_SIZE = {"cuda": 8192, "cpu": 2048}  # square matmul side for the FLOP ceiling
VIT_B16_GFLOP = 35.1  # published cost of one 224 px image through plain ViT-B/16 (no dual path, no prompts)
MIN_CPU_SECONDS = 0.2  # CPU timer: keep calling until this much time was measured (short calls get more repeats)
MAX_CPU_CALLS = 1000
PIPELINE_FORMATS = ("svg", "json")  # what `sketchkit segment` writes by default
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENCODER_VARIANTS = (("eager", "sdpa"), ("compiled", "sdpa"), ("eager", "triton"), ("compiled", "triton"))
NO_GPU = "n/a: no CUDA GPU"  # the Triton interpreter is never timed

T = TypeVar("T")
U = TypeVar("U")


# ---- options and results -----------------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    """What to measure. Defaults: full-size ViT-B/16 with random weights, the device's default batch sizes."""

    backbone: str = "ViT-B-16"
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
    sections: tuple[str, ...] = SECTIONS
    tune_malloc: bool = True  # sketchkit.model.compile.tune_malloc before measuring (CPU page faults)


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
class Goal:
    name: str
    target: str
    measured: float | None
    unit: str
    met: bool | None  # None: not measured here (see note)
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
    goals: list[Goal] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (n/a values are None)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


# ---- timers and memory ---------------------------------------------------------------------------------------------


def cpu_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1, min_seconds: float = MIN_CPU_SECONDS) -> float:
    """Median wall seconds of fn() on CPU: `warmup` untimed calls, then at least `repeats` timed calls, continuing
    (up to MAX_CPU_CALLS) until `min_seconds` were measured, so millisecond calls are not timed just five times."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < MAX_CPU_CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_time(fn: Callable[[], object]) -> float:
    """Median seconds of fn() on CUDA via triton.testing.do_bench (which warms up and synchronises)."""
    from triton.testing import do_bench

    return do_bench(fn, return_mode="median") / 1e3


class PeakMemory:
    """Peak memory of a stretch of work: `reset()` before, `megabytes()` after."""

    def __init__(self, device: torch.device):
        self.device = device
        self.per_row = device.type == "cuda" or self._clear_refs()
        if device.type == "cuda":
            self.description = "torch.cuda.max_memory_allocated per row"
        elif self.per_row:
            self.description = "RSS high-water mark (getrusage ru_maxrss), reset per row via /proc/self/clear_refs"
        else:
            self.description = "process RSS high-water mark (getrusage ru_maxrss), cumulative: cannot reset here"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.per_row:
            self._clear_refs()

    def megabytes(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        import resource  # POSIX only

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


# ---- prefetch ------------------------------------------------------------------------------------------------------


# ---- FLOPs ---------------------------------------------------------------------------------------------------------


def encoder_flops(model, *, dual: bool = True, prompts: bool = True) -> int:
    """FLOPs (2 per multiply-add) of one image through `model.forward_features(dual=, prompts=)`.

    Counts the matmuls, as the 35.1 GFLOP figure of ViT-B/16 does: patch embedding, per block the qkv projection,
    q k^T and (probabilities) v, output projection and MLP; per dual block also v v^T, its (probabilities) v and
    the second output projection; ln_post + proj of the class and patch tokens. Norms, softmax and GELU are left out.
    """
    visual = model.clip.visual
    conv = visual.conv1
    width = conv.out_channels
    patches = model.grid[0] * model.grid[1]
    tokens = 1 + patches + (model.prompts.shape[0] if prompts else 0)
    blocks = visual.transformer.resblocks
    first_dual = len(blocks) - model.config.dual_blocks if dual else len(blocks)
    kernel = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    total = 2 * patches * kernel * width  # patch embedding
    attention = 2 * 2 * tokens * tokens * width  # scores and weighted values, all heads
    projection = 2 * tokens * width * width
    for index, block in enumerate(blocks):
        hidden = block.mlp.c_fc.out_features
        total += 3 * projection + attention + projection + 2 * 2 * tokens * width * hidden
        if index >= first_dual:
            total += attention + projection
    total += 2 * (1 + patches) * width * visual.output_dim  # ln_post + proj
    return total


def matmul_ceiling(device: torch.device, dtype: torch.dtype, timer: Callable, size: int | None = None) -> Ceiling:
    """GFLOP/s of one large square matmul in `dtype`: the practical compute ceiling of this device."""
    size = size or CEILING_SIZE[device.type]
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty(size, size, device=device, dtype=dtype)
    seconds = timer(lambda: torch.mm(a, b, out=out))
    return Ceiling(dtype=str(dtype).replace("torch.", ""), size=size, seconds=seconds, gflops=2 * size**3 / seconds / 1e9)


# ---- helpers -------------------------------------------------------------------------------------------------------


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def triton_timeable(device: torch.device) -> bool:
    """The fused kernel can be timed: a CUDA device, triton installed, and not the interpreter."""
    from .kernels.dual_attention import KERNEL_INTERPRETED, TRITON_AVAILABLE

    return device.type == "cuda" and TRITON_AVAILABLE and not KERNEL_INTERPRETED


def with_impl(model, impl: str):
    """A shallow copy of a SketchCLIP sharing every weight, whose dual path uses `impl`."""
    view = copy.copy(model)
    view.vv_impl = impl
    view.__dict__.pop("forward_features", None)  # drop a compiled forward_features of the original
    return view


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    name = name.lower()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name in ("fp32", "float32"):
        return torch.float32
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    raise UsageError(f"unknown --dtype {name!r}; choose auto, fp32 or bf16")


def _check_options(options: BenchOptions) -> None:
    unknown = [s for s in options.sections if s not in SECTIONS]
    if unknown or not options.sections:
        raise UsageError(f"unknown bench section(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}")
    if options.batches is not None and (not options.batches or min(options.batches) < 1):
        raise UsageError(f"batch sizes must be positive integers, got {options.batches}")
    for name in ("pipeline_batch", "min_sketches", "repeats"):
        if getattr(options, name) < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(options, name)}")


# ---- 1. attention ----------------------------------------------------------------------------------------------------


def bench_attention(batches: Sequence[int], heads: int, tokens: int, head_dim: int, device: torch.device,
                    dtype: torch.dtype, repeats: int = 5) -> list[AttentionRow]:
    """Dual-path attention alone at the encoder's shape, (B, H, N, D) views of a packed qkv like the encoder's."""
    from .kernels.dual_attention import benchmark, dual_attention_ref

    if triton_timeable(device):
        with torch.cuda.device(device):
            timed = benchmark(tuple(batches), seq_len=tokens, heads=heads, head_dim=head_dim, dtype=dtype)
        note = ""
    else:
        timed = []
        for batch in batches:
            generator = torch.Generator().manual_seed(batch)
            qkv = torch.randn(batch, tokens, 3, heads, head_dim, dtype=dtype, generator=generator)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            candidates = {
                "eager": lambda: dual_attention_ref(q, k, v),
                "2x SDPA": lambda: (F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(v, v, v)),
                "1x SDPA": lambda: F.scaled_dot_product_attention(q, k, v),
            }
            with torch.no_grad():
                row = {name: cpu_time(fn, repeats=repeats) * 1e3 for name, fn in candidates.items()}
            timed.append({"batch": batch, "fused": None, **row, "max_abs_error": None})
        note = "fused kernel: n/a without a CUDA GPU (the Triton interpreter is never timed)"
    rows = []
    for row in timed:
        fused, eager, two, one = row["fused"], row["eager"], row["2x SDPA"], row["1x SDPA"]
        rows.append(AttentionRow(
            batch=row["batch"], heads=heads, tokens=tokens, head_dim=head_dim, dtype=str(dtype).replace("torch.", ""),
            fused_ms=fused, eager_ms=eager, sdpa2_ms=two, sdpa1_ms=one, fused_max_error=row["max_abs_error"],
            eager_vs_sdpa1=eager / one, sdpa2_vs_sdpa1=two / one, fused_vs_sdpa1=_ratio(fused, one),
            eager_vs_fused=_ratio(eager, fused), note=note,
        ))
    return rows


# ---- 2. encoder ----------------------------------------------------------------------------------------------------


def bench_encoder(encoder, batches: Sequence[int], device: torch.device, dtype: torch.dtype, *, timer: Callable,
                  memory: PeakMemory, ceiling: Ceiling | None, compile: bool = True, compile_mode: str | None = None,
                  compile_backend: str = "inductor", on_progress: Callable[[str], None] | None = None) -> list[EncoderRow]:
    """images/s of forward_features (dual path, prompts: what the segmenters run) per variant and batch size."""
    from .model.compile import compiled_forward

    flops = encoder_flops(encoder)
    size = encoder.clip.visual.conv1.kernel_size[0] * encoder.grid[0]
    autocast = dtype != torch.float32
    rows = []
    for variant, impl in ENCODER_VARIANTS:
        if impl == "triton" and not triton_timeable(device):
            rows += [EncoderRow(variant, impl, b, *([None] * 7), note=NO_GPU) for b in batches]
            continue
        if variant == "compiled" and not compile:
            rows += [EncoderRow(variant, impl, b, *([None] * 7), note="not measured (--no-compile)") for b in batches]
            continue
        model = with_impl(encoder, impl)
        forward = model.forward_features
        if variant == "compiled":
            forward = compiled_forward(model, mode=compile_mode, backend=compile_backend)
        for batch in batches:
            if on_progress:
                on_progress(f"encoder: {variant} + {impl}, batch {batch}")
            generator = torch.Generator(device=device).manual_seed(batch)
            images = torch.randn(batch, 3, size, size, device=device, generator=generator)

            def call(forward=forward, images=images):
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                    return forward(images)

            memory.reset()
            compile_s = None
            if variant == "compiled":
                start = time.perf_counter()
                call()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                compile_s = time.perf_counter() - start
            seconds = timer(call)
            achieved = flops * batch / seconds / 1e9
            rows.append(EncoderRow(
                variant=variant, impl=impl, batch=batch, seconds=seconds, images_per_s=batch / seconds,
                seconds_per_image=seconds / batch, gflops=achieved,
                ceiling_fraction=achieved / ceiling.gflops if ceiling else None,
                peak_memory_mb=memory.megabytes(), compile_s=compile_s,
                note="trace only (aot_eager backend), not a speed figure" if variant == "compiled" and compile_backend != "inductor" else "",
            ))
    return rows


# ---- 3. pipeline ---------------------------------------------------------------------------------------------------


def find_inputs(data: Sequence[Path], limit: int | None = None) -> list[Path]:
    """Sketch files from files and folders (`sketchkit.data.find_sketches`: folders are walked recursively,
    dataset side files skipped). Empty `data`: the bundled examples/*.svg of a source checkout."""
    from .data import find_sketches

    if not data:
        if not EXAMPLES.is_dir():
            raise UsageError(f"no bundled examples at {EXAMPLES}; pass --data with sketch files or a folder")
        data = (EXAMPLES,)
    files = [f for path in data for f in find_sketches(path)]
    if not files:
        raise UsageError(f"no sketch files in {', '.join(map(str, data))}")
    return files[:limit] if limit else files


def bench_pipeline(segmenter, files: Sequence[Path], device: torch.device, *, batch_size: int, memory: PeakMemory,
                   labels: Sequence[str] | None = None, min_sketches: int = 8,
                   on_progress: Callable[[str], None] | None = None) -> list[PipelineRow]:
    """Sketches/s of `sketchkit segment`'s own loop (`sketchkit.pipeline.run_segment`: read -> raster -> encode ->
    score -> vote -> write svg + json), serial and with the engine's prefetch.

    Each row runs once untimed (text embeddings cached, allocator and compiled shapes warm), then once timed over the
    inputs repeated until at least `min_sketches` were processed. Outputs go to a temporary folder.
    """
    from .inference import Timings
    from .pipeline import SegmentJob, run_segment

    policy = bench_labels(labels)
    sequence = list(files) * max(1, math.ceil(min_sketches / len(files)))
    configs = [("serial", 1), ("serial", batch_size), ("overlapped", batch_size)]
    if batch_size == 1:
        configs = [("serial", 1), ("overlapped", 1)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="sketchkit-bench-") as tmp:
        for mode, size in configs:
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
                note="read + raster in a background thread; 'wait' = model idle for data" if mode == "overlapped" else "",
            ))
    return rows


def bench_labels(labels: Sequence[str] | None):
    """The benchmark's label sets: the given list, else each sketch's own labels, else its caption."""
    from .inference import LabelPolicy

    return LabelPolicy.fixed(labels) if labels else LabelPolicy(("ground-truth", "caption"))


def _drain(outcomes) -> None:
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error


# ---- 6. startup ----------------------------------------------------------------------------------------------------


def _timed_subprocess(args: list[str], timeout: float = 600) -> tuple[float | None, str]:
    start = time.perf_counter()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        return None, f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
    return elapsed, ""


def bench_startup(sample: Path, labels: Sequence[str], model_build_s: float, model: str,
                  weights: str | None = None, backbone: str = "ViT-B-16") -> Startup:
    """Cold start in fresh processes: CLI import, and one `segment` of one file. With a local weights
    file that is the benchmarked backbone reading it (the "cached weights" case); without one, the
    tiny backbone (the same code path; a download is not a start-up cost)."""
    python = sys.executable
    import_s, import_error = _timed_subprocess([python, "-c", "import sketchkit.cli.app"])
    model_args = ["--backbone", backbone, "--weights", str(weights)] if weights else ["--backbone", "tiny-random"]
    with tempfile.TemporaryDirectory(prefix="sketchkit-bench-") as tmp:
        args = [python, "-m", "sketchkit.cli", "segment", str(sample), *model_args, "--labels",
                ",".join(labels), "--out", str(Path(tmp) / "cold.svg"), "--format", "svg", "--quiet"]
        segment_s, segment_error = _timed_subprocess(args)
    shown = f"--backbone {backbone} --weights {Path(weights).name}" if weights else "--backbone tiny-random"
    command = f"python -m sketchkit.cli segment {sample.name} {shown} --labels ..."
    note = "; ".join(e for e in (import_error and f"import: {import_error}", segment_error and f"segment: {segment_error}") if e)
    return Startup(import_s, segment_s, command, model_build_s, model, note, backbone if weights else "tiny-random")


# ---- 7. goals ------------------------------------------------------------------------------------------------------


def _goal(name: str, target: str, measured: float | None, unit: str, ok: Callable[[float], bool], reason: str) -> Goal:
    if reason or measured is None:
        return Goal(name, target, measured, unit, None, reason or "not measured in this run")
    return Goal(name, target, measured, unit, ok(measured))


def evaluate_goals(report: BenchReport) -> list[Goal]:
    """The speed issue's targets against this run's figures. A goal measured off its stated setting says so."""
    env = report.environment
    on_cpu, on_gpu = env.device == "cpu", env.device == "cuda"
    full = env.backbone == "ViT-B-16"
    need_full = "" if full else f"goal is for ViT-B-16, this run used {env.backbone}"
    cpu_only = "" if on_cpu else "CPU goal; this run is on CUDA"
    gpu_only = "" if on_gpu else "needs a CUDA GPU"

    def encoder_row(variant: str, impl: str, batch: int) -> EncoderRow | None:
        return next((r for r in report.encoder if (r.variant, r.impl, r.batch) == (variant, impl, batch) and r.seconds), None)

    serial_1 = next((r for r in report.pipeline if (r.mode, r.batch_size) == ("serial", 1)), None)
    eager_8 = encoder_row("eager", "sdpa", 8)
    fused = [r.fused_vs_sdpa1 for r in report.attention if r.fused_vs_sdpa1 is not None]
    best_256 = max((r.ceiling_fraction for r in report.encoder if r.batch == 256 and r.ceiling_fraction), default=None)
    eager_64, fast_64 = encoder_row("eager", "sdpa", 64), encoder_row("compiled", "triton", 64)
    fp32 = "" if env.dtype == "float32" else "goal is for fp32"
    bf16 = "" if env.dtype.startswith("bfloat16") else "goal is for bf16"
    return [
        _goal("warm end-to-end latency, one sketch (batch 1)", "<= 0.25", serial_1 and serial_1.seconds_per_sketch,
              "s", lambda v: v <= 0.25, cpu_only or need_full or fp32),
        _goal("encoder at batch 8, share of matmul ceiling", ">= 0.80", eager_8 and eager_8.ceiling_fraction, "",
              lambda v: v >= 0.80, cpu_only or need_full or fp32 or ("" if eager_8 else "batch 8 not in --batches")),
        _goal(f"cold start: segment one file ({report.startup.cold_backbone if report.startup else 'tiny-random'})",
              "< 5", report.startup and report.startup.cold_segment_s,
              "s", lambda v: v < 5, cpu_only or ("" if report.startup else "startup section not run")),
        _goal("fused dual path vs one SDPA call (worst batch)", "<= 1.3", max(fused) if fused else None, "x",
              lambda v: v <= 1.3, gpu_only),
        _goal("encoder at batch 256, share of matmul ceiling", ">= 0.50", best_256, "", lambda v: v >= 0.5,
              gpu_only or need_full or bf16),
        _goal("compiled + triton vs eager, batch 64", ">= 1.5",
              _ratio(eager_64 and eager_64.seconds, fast_64 and fast_64.seconds), "x", lambda v: v >= 1.5,
              gpu_only or need_full),
    ]


# ---- driver --------------------------------------------------------------------------------------------------------


def run_bench(options: BenchOptions, on_progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run the selected sections on one device and return every figure (see the module docstring)."""
    from .model.attention import resolve_impl
    from .model.compile import tune_malloc
    from .model.factory import create_encoder
    from .inference import resolve_device

    _check_options(options)
    malloc_tuned = tune_malloc() if options.tune_malloc else False
    device = resolve_device(options.device)
    dtype = _resolve_dtype(options.dtype, device)
    batches = tuple(options.batches or DEFAULT_BATCHES[device.type])
    timer = gpu_time if device.type == "cuda" else (lambda fn: cpu_time(fn, repeats=options.repeats))
    memory = PeakMemory(device)
    files = find_inputs(options.data, options.limit) if {"pipeline", "startup"} & set(options.sections) else []

    if on_progress:
        on_progress(f"building {options.backbone}")
    start = time.perf_counter()
    import open_clip  # noqa: F401  (a cold process pays this once; timed apart from the build)

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    encoder = create_encoder(options.backbone, weights=options.weights, device=device,
                             random_init=options.random_weights and not options.weights)
    build_s = time.perf_counter() - start
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    report = BenchReport(Environment(
        device=device.type,
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        torch=torch.__version__, triton=triton_version, threads=torch.get_num_threads(),
        dtype="float32" if dtype == torch.float32 else f"{str(dtype).replace('torch.', '')} (autocast)",
        backbone=options.backbone, weights=encoder.weights_source, vv_impl=resolve_impl(encoder.vv_impl, device),
        model_import_s=import_s, model_build_s=build_s, flops_per_image=encoder_flops(encoder),
        timer="triton.testing.do_bench, median" if device.type == "cuda"
        else f"perf_counter, median of >= {options.repeats} calls (>= {MIN_CPU_SECONDS} s) after a warm-up call",
        memory=memory.description, malloc_tuned=malloc_tuned, load_before=_load_average(),
    ))
    if "attention" in options.sections:
        if on_progress:
            on_progress("attention: fused vs eager vs SDPA")
        attn = encoder.clip.visual.transformer.resblocks[0].attn
        tokens = 1 + encoder.grid[0] * encoder.grid[1] + encoder.prompts.shape[0]
        report.attention = bench_attention(batches, attn.num_heads, tokens, attn.embed_dim // attn.num_heads,
                                           device, dtype, options.repeats)
    if "encoder" in options.sections:
        if on_progress:
            on_progress(f"matmul ceiling ({dtype})")
        report.ceiling = matmul_ceiling(device, dtype, timer)
        report.encoder = bench_encoder(encoder, batches, device, dtype, timer=timer, memory=memory,
                                       ceiling=report.ceiling, compile=options.compile,
                                       compile_mode=options.compile_mode, compile_backend=options.compile_backend,
                                       on_progress=on_progress)
    if "pipeline" in options.sections:
        pipeline_encoder = encoder
        if options.pipeline_compile:
            from .model.compile import compile_encoder

            pipeline_encoder = compile_encoder(with_impl(encoder, encoder.vv_impl), mode=options.compile_mode,
                                               backend=options.compile_backend)
        report.pipeline_inputs = [str(f) for f in files]
        from .inference import segmenter_on

        report.pipeline = bench_pipeline(segmenter_on("clip-surgery", pipeline_encoder, device), files, device, batch_size=options.pipeline_batch,
                                         memory=memory, labels=options.labels, min_sketches=options.min_sketches,
                                         on_progress=on_progress)
    if "startup" in options.sections:
        if on_progress:
            on_progress("startup: cold segment in a fresh process")
        from .io import read_sketch

        sample = files[0]
        labels = options.labels or bench_labels(None).labels_for(read_sketch(sample))
        report.startup = bench_startup(sample, labels, build_s, f"{options.backbone} ({encoder.weights_source})",
                                       weights=options.weights, backbone=options.backbone)
    report.goals = evaluate_goals(report)
    report.environment.load_after = _load_average()
    return report


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_json(report: BenchReport, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the report as JSON, atomically (an existing file only with `overwrite`)."""
    from .files import atomic_write_text

    return atomic_write_text(path, report.to_json() + "\n", overwrite=overwrite)
