"""`run_bench`: check the options, build the benchmarked backbone once, run the chosen sections in order, judge
the goals. Each section's measuring lives in its own module; this file only wires them to one device and one
report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import UsageError
from .report import SECTIONS, BenchOptions, BenchReport, Environment
from .timing import PeakMemory, device_name, load_average, timer_description, timer_for

DEFAULT_BATCHES = {"cuda": (1, 16, 64, 256), "cpu": (1, 8)}


@dataclass
class BenchRun:
    """What every section of one run shares: the options, the device and dtype, the timer, the built encoder."""

    options: BenchOptions
    device: torch.device
    dtype: torch.dtype
    batches: tuple[int, ...]
    timer: Callable[[Callable[[], object]], float]
    memory: PeakMemory
    files: list[Path]
    encoder: object = None
    import_s: float = 0.0
    build_s: float = 0.0
    progress: Callable[[str], None] = lambda message: None


def run_bench(options: BenchOptions, on_progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run the selected sections on one device and return every figure (see the package docstring)."""
    from ..model.compile import tune_malloc
    from .goals import evaluate_goals

    check_options(options)
    malloc_tuned = tune_malloc() if options.tune_malloc else False
    run = prepare(options, on_progress)
    build(run)
    report = BenchReport(environment(run, malloc_tuned))
    for name in SECTIONS:  # always in this order, whatever order they were asked in
        if name in options.sections:
            SECTION_RUNNERS[name](run, report)
    report.goals = evaluate_goals(report)
    report.environment.load_after = load_average()
    return report


def check_options(options: BenchOptions) -> None:
    unknown = [s for s in options.sections if s not in SECTIONS]
    if unknown or not options.sections:
        raise UsageError(f"unknown bench section(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}")
    if options.batches is not None and (not options.batches or min(options.batches) < 1):
        raise UsageError(f"batch sizes must be positive integers, got {options.batches}")
    for name in ("pipeline_batch", "min_sketches", "repeats", "serve_repeats"):
        if getattr(options, name) < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(options, name)}")
    for name in ("scale_sizes", "scale_processes"):
        values = getattr(options, name)
        if not values or min(values) < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be positive whole numbers, got {values}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 -> a torch dtype."""
    name = name.lower()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name in ("fp32", "float32"):
        return torch.float32
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    raise UsageError(f"unknown dtype {name!r}; choose auto, fp32 or bf16")


def prepare(options: BenchOptions, on_progress: Callable[[str], None] | None = None) -> BenchRun:
    """Device, dtype, timer and inputs (found before the build, so a bad input fails fast)."""
    from ..inference import resolve_device
    from .pipeline import find_inputs

    device = resolve_device(options.device)
    files = find_inputs(options.data, options.limit) if {"pipeline", "startup"} & set(options.sections) else []
    run = BenchRun(options, device, resolve_dtype(options.dtype, device),
                   tuple(options.batches or DEFAULT_BATCHES[device.type]), timer_for(device, options.repeats),
                   PeakMemory(device), files)
    if on_progress is not None:
        run.progress = on_progress
    return run


def build(run: BenchRun) -> None:
    """Build the benchmarked backbone, timing the import of open_clip apart from the build itself."""
    from ..model.factory import create_encoder

    options = run.options
    run.progress(f"building {options.backbone}")
    start = time.perf_counter()
    import open_clip  # noqa: F401  (a cold process pays this once; timed apart from the build)

    run.import_s = time.perf_counter() - start
    start = time.perf_counter()
    run.encoder = create_encoder(options.backbone, weights=options.weights, device=run.device,
                                 random_init=options.random_weights and not options.weights)
    run.build_s = time.perf_counter() - start


def environment(run: BenchRun, malloc_tuned: bool) -> Environment:
    from ..model.attention import resolve_impl
    from .encoder import encoder_flops

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    encoder, device, dtype = run.encoder, run.device, run.dtype
    return Environment(
        device=device.type, device_name=device_name(device), torch=torch.__version__, triton=triton_version,
        threads=torch.get_num_threads(),
        dtype="float32" if dtype == torch.float32 else f"{str(dtype).replace('torch.', '')} (autocast)",
        backbone=run.options.backbone, weights=encoder.weights_source,
        vv_impl=resolve_impl(encoder.vv_impl, device), model_import_s=run.import_s, model_build_s=run.build_s,
        flops_per_image=encoder_flops(encoder), timer=timer_description(device, run.options.repeats),
        memory=run.memory.description, malloc_tuned=malloc_tuned, load_before=load_average(),
    )


# ---- sections: each fills its part of the report ------------------------------------------------------------------


def run_attention(run: BenchRun, report: BenchReport) -> None:
    from .attention import bench_attention

    run.progress("attention: fused vs eager vs SDPA")
    lay = run.encoder.layout
    tokens = 1 + lay.grid[0] * lay.grid[1] + run.encoder.prompts.shape[0]
    report.attention = bench_attention(run.batches, lay.heads, tokens, lay.width // lay.heads, run.device, run.dtype,
                                       run.timer)


def run_encoder(run: BenchRun, report: BenchReport) -> None:
    from .encoder import bench_encoder
    from .timing import matmul_ceiling

    options = run.options
    run.progress(f"matmul ceiling ({run.dtype})")
    report.ceiling = matmul_ceiling(run.device, run.dtype, run.timer)
    report.encoder = bench_encoder(run.encoder, run.batches, run.device, run.dtype, timer=run.timer, memory=run.memory,
                                   ceiling=report.ceiling, compile=options.compile, compile_mode=options.compile_mode,
                                   compile_backend=options.compile_backend, on_progress=run.progress)


def run_pipeline(run: BenchRun, report: BenchReport) -> None:
    from ..inference import segmenter_on
    from .encoder import with_impl
    from .pipeline import bench_pipeline

    options, encoder = run.options, run.encoder
    if options.pipeline_compile:
        from ..model.compile import compile_encoder

        encoder = compile_encoder(with_impl(encoder, encoder.vv_impl), mode=options.compile_mode,
                                  backend=options.compile_backend)
    report.pipeline_inputs = [str(f) for f in run.files]
    report.pipeline = bench_pipeline(segmenter_on("clip-surgery", encoder, run.device), run.files, run.device,
                                     batch_size=options.pipeline_batch, memory=run.memory, labels=options.labels,
                                     min_sketches=options.min_sketches, on_progress=run.progress)


def run_startup(run: BenchRun, report: BenchReport) -> None:
    from ..io import read_sketch
    from .pipeline import bench_labels
    from .startup import bench_startup

    options = run.options
    run.progress("startup: cold segment in a fresh process")
    sample = run.files[0]
    labels = options.labels or bench_labels(None).labels_for(read_sketch(sample))
    report.startup = bench_startup(sample, labels, run.build_s, f"{options.backbone} ({run.encoder.weights_source})",
                                   weights=options.weights, backbone=options.backbone)


def run_serve(run: BenchRun, report: BenchReport) -> None:
    from ..serve.bench import default_scene, measure

    options = run.options
    scene = default_scene(options.data[0] if options.data else None)
    report.serve = measure(scene, backbones=[options.backbone], repeats=options.serve_repeats, device=options.device,
                           on_progress=run.progress, encoders={options.backbone: run.encoder})


def run_scale(run: BenchRun, report: BenchReport) -> None:
    from .pipeline import find_inputs
    from .scale import bench_output_sizes, bench_scale, write_synthetic

    options = run.options
    report.scale = bench_scale(options.scale_sizes, options.scale_processes, on_progress=run.progress)
    run.progress("scale: bytes per sketch of the results file")
    friss = SHARED_FRISS_TEST if not options.data else None
    if friss is not None and friss.is_dir():
        files, source = find_inputs([friss], options.limit or 100), "FrISS test"
        report.output_sizes = bench_output_sizes(files, source)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="sketchkit-bytes-") as tmp:
            files = find_inputs(list(options.data), options.limit) if options.data else \
                sorted(write_synthetic(Path(tmp), options.limit or 100).glob("*.ndjson"))
            report.output_sizes = bench_output_sizes(files, "given inputs" if options.data else "synthetic")


SHARED_FRISS_TEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "friss" / "test"
"""FrISS test scenes beside the repository (../shared/data): the sketches the output-size target is stated for."""

SECTION_RUNNERS: dict[str, Callable[[BenchRun, BenchReport], None]] = {
    "attention": run_attention, "encoder": run_encoder, "pipeline": run_pipeline, "startup": run_startup,
    "serve": run_serve, "scale": run_scale,
}
