"""`sketchkit bench`: speed on this machine, measured in one run (kernel, encoder, pipeline, memory, FLOP ceiling).

Examples:
    sketchkit bench                                   # full-size ViT-B/16, random weights, default batch sizes
    sketchkit bench --backbone tiny-random --batches 1,2 --min-sketches 3     # a quick run
    sketchkit bench --data ../shared/data/friss/test --limit 16 --batches 1,8 --json bench.json
    sketchkit bench --sections attention,encoder --no-compile
    sketchkit bench --sections serve --backbone tiny-random --serve-repeats 10     # warm POST /segment latency
    sketchkit bench --sections scale                   # 1 and 2 processes over 2,000 / 20,000 sketches (minutes)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._options import BackboneOpt, BatchOpt, DeviceOpt, JsonOutOpt, LimitOpt, OverwriteOpt, QuietOpt, WeightsOpt, cell, stderr, stdout

NA = Text("n/a", style="dim")
PIPED_WIDTH = 160  # tables are wide; when stdout is not a terminal, do not squeeze them into 80 columns


def _batches(spec: str | None, flag: str = "--batches") -> tuple[int, ...] | None:
    from sketchkit.errors import UsageError

    if spec is None:
        return None
    try:
        values = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} takes a comma list of whole numbers, got {spec!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} takes positive whole numbers, got {spec!r}")
    return values


def bench(
    backbone: BackboneOpt = None,
    random_weights: Annotated[bool, typer.Option("--random-weights/--no-random-weights", help="Random init (default: speed does not depend on weight values; the report says so), or resolve weights as `segment` does.")] = True,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    batches: Annotated[Optional[str], typer.Option("--batches", help="Comma list of encoder batch sizes. Default: 1,16,64,256 on CUDA, 1,8 on CPU.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16")] = "auto",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="Also time the torch.compile'd encoder (compile time is reported).")] = True,
    compile_mode: Annotated[Optional[str], typer.Option("--compile-mode", help="torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs")] = None,
    compile_backend: Annotated[str, typer.Option("--compile-backend", help="torch.compile backend; aot_eager only checks graph capture (no speed figure).")] = "inductor",
    data: Annotated[Optional[List[Path]], typer.Option("--data", "-d", help="Pipeline inputs: sketch files or folders (default: the bundled examples/*.svg), e.g. ../shared/data/friss/test.")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help='Label set for every pipeline sketch, "a,b" or @file (default: each sketch\'s own labels, else its caption).')] = None,
    limit: LimitOpt = None,
    batch_size: BatchOpt = 8,
    pipeline_compile: Annotated[bool, typer.Option("--pipeline-compile", help="Run the pipeline section with the compiled encoder.")] = False,
    min_sketches: Annotated[int, typer.Option("--min-sketches", min=1, help="Each pipeline row repeats the inputs until it processed this many sketches.")] = 8,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="CPU timer: timed calls per figure (at least), after one warm-up call.")] = 5,
    sections: Annotated[str, typer.Option("--sections", help="Comma list of attention, encoder, pipeline, startup, serve (warm POST /segment latency), scale (segment in 1 and 2 processes over many sketches: sketches/s, peak RSS, bytes per sketch).")] = "attention,encoder,pipeline,startup",
    serve_repeats: Annotated[int, typer.Option("--serve-repeats", min=1, help="serve: timed requests.")] = 20,
    scale_sketches: Annotated[str, typer.Option("--scale-sketches", help="scale: comma list of input sizes (synthetic sketches); every process count runs the first, the largest the others.")] = "2000,20000",
    scale_processes: Annotated[str, typer.Option("--scale-processes", help="scale: comma list of process counts (torchrun, gloo on CPU).")] = "1,2",
    tune_malloc: Annotated[bool, typer.Option("--tune-malloc/--no-tune-malloc", help="Raise glibc's mmap/trim thresholds first (removes CPU page faults; see sketchkit.model.compile.tune_malloc).")] = True,
    json_out: JsonOutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure attention kernels, encoder throughput, the segment pipeline, memory and the FLOP ceiling.

    Example: sketchkit bench --backbone tiny-random --batches 1,2 --min-sketches 3
    """
    from sketchkit.bench import BenchOptions, run_bench, write_json
    from sketchkit.files import check_output_path
    from sketchkit.labels import parse_labels
    from sketchkit.model import DEFAULT_BACKBONE

    if json_out is not None:
        check_output_path(json_out, overwrite=overwrite)
    options = BenchOptions(
        backbone=backbone or DEFAULT_BACKBONE, weights=str(weights) if weights else None, random_weights=random_weights,
        device=device, batches=_batches(batches), dtype=dtype, compile=compile, compile_mode=compile_mode,
        compile_backend=compile_backend, data=tuple(data or ()), labels=tuple(parse_labels(labels)) if labels is not None else None,
        limit=limit, pipeline_batch=batch_size, pipeline_compile=pipeline_compile, min_sketches=min_sketches,
        repeats=repeats, sections=tuple(s.strip().lower() for s in sections.split(",") if s.strip()),
        tune_malloc=tune_malloc, serve_repeats=serve_repeats,
        scale_sizes=_batches(scale_sketches, "--scale-sketches"), scale_processes=_batches(scale_processes, "--scale-processes"),
    )

    def note(message: str) -> None:
        if not quiet:
            stderr.print(Text.assemble(("bench:", "dim"), " ", message), highlight=False)

    report = run_bench(options, on_progress=note)
    if json_out is not None:
        write_json(report, json_out, overwrite=overwrite)
    if quiet:
        if json_out is not None:
            stdout.print(cell(json_out), highlight=False, soft_wrap=True)
        return
    render(report)
    if json_out is not None:
        stderr.print(Text(f"wrote {json_out}"), highlight=False)


# ---- rendering: every cell and message is plain Text (never parsed as markup) --------------------------------------


def _num(value: float | None, fmt: str = ".3f", suffix: str = "") -> Text:
    return NA.copy() if value is None else Text(f"{value:{fmt}}{suffix}")


def _table(title: str, columns: tuple[str, ...], *, caption: str | None = None, left: tuple[str, ...] = ()) -> Table:
    table = Table(title=Text(title), caption=Text(caption) if caption else None)
    for column in columns:
        table.add_column(Text(column), justify="left" if column in left else "right")
    return table


def render(report) -> None:
    """Print the report as rich tables on stdout."""
    out = stdout if stdout.is_terminal else Console(width=PIPED_WIDTH)
    _print_environment(out, report.environment)
    for table in (_attention_table(report), _encoder_table(report), _pipeline_table(report), _startup_table(report),
                  _serve_table(report), _scale_table(report), _sizes_table(report), _goals_table(report)):
        if table is not None:
            out.print(table)


def _print_environment(out: Console, env) -> None:
    from sketchkit.bench import VIT_B16_GFLOP

    random_note = (" — ", ("RANDOM WEIGHTS", "yellow")) if "random" in env.weights else ()
    load = Text.assemble("load avg ", _num(env.load_before, ".1f"), " -> ", _num(env.load_after, ".1f"))
    out.print(Text.assemble(
        ("sketchkit bench", "bold"),
        f": {env.device_name} ({env.device}), torch {env.torch}, triton {env.triton or 'absent'}, "
        f"{env.threads} threads, {env.dtype}, ", load, "\n",
        f"model: {env.backbone} ({env.weights})", *random_note, f", dual-path attention {env.vv_impl}, "
        f"{env.flops_per_image / 1e9:.2f} GFLOP/image (analytic; plain ViT-B/16: {VIT_B16_GFLOP}), built in "
        f"{env.model_build_s:.2f} s (+ {env.model_import_s:.2f} s importing open_clip)\n",
        f"timer: {env.timer}; memory: {env.memory}; malloc tuned: {'yes' if env.malloc_tuned else 'no'}",
    ), highlight=False, soft_wrap=True)
    cores = os.cpu_count() or 1
    if env.load_before is not None and env.load_before >= 0.5 * cores:
        out.print(Text.assemble(("Warning:", "yellow"), f" other processes were using the CPU when the run started "
                                f"(load average {env.load_before:.1f} on {cores} cores): timings are unreliable; "
                                "rerun on a quiet machine."), highlight=False, soft_wrap=True)


def _attention_table(report) -> Table | None:
    if not report.attention:
        return None
    first = report.attention[0]
    table = _table(f"1. dual-path attention, N={first.tokens}, H={first.heads}, D={first.head_dim}, {first.dtype}: "
                   "median ms (ratios: in one-SDPA-call units)", ("B", "fused", "eager", "2x SDPA", "1x SDPA",
                   "eager/1x", "2x SDPA/1x", "fused/1x", "eager/fused", "fused err"), caption=first.note or None)
    for row in report.attention:
        table.add_row(cell(row.batch), _num(row.fused_ms), _num(row.eager_ms), _num(row.sdpa2_ms), _num(row.sdpa1_ms),
                      _num(row.eager_vs_sdpa1, ".2f", "x"), _num(row.sdpa2_vs_sdpa1, ".2f", "x"),
                      _num(row.fused_vs_sdpa1, ".2f", "x"), _num(row.eager_vs_fused, ".2f", "x"),
                      _num(row.fused_max_error, ".1e"))
    return table


def _encoder_table(report) -> Table | None:
    if not report.encoder:
        return None
    ceiling = report.ceiling
    caption = (f"matmul ceiling: {ceiling.gflops:.0f} GFLOP/s ({ceiling.dtype} {ceiling.size}x{ceiling.size}, "
               "measured in this run)") if ceiling else None
    table = _table(f"2. encoder forward_features (dual path + prompts), {report.environment.dtype}",
                   ("variant", "B", "s/batch", "s/image", "images/s", "GFLOP/s", "of ceiling", "peak MB", "compile s",
                    "note"), caption=caption, left=("variant", "note"))
    for row in report.encoder:
        table.add_row(cell(f"{row.variant} + {row.impl}"), cell(row.batch), _num(row.seconds),
                      _num(row.seconds_per_image), _num(row.images_per_s, ".2f"), _num(row.gflops, ".0f"),
                      _num(row.ceiling_fraction and row.ceiling_fraction * 100, ".0f", "%"),
                      _num(row.peak_memory_mb, ".0f"), _num(row.compile_s, ".1f"), cell(row.note))
    return table


def _pipeline_table(report) -> Table | None:
    if not report.pipeline:
        return None
    stages = list(dict.fromkeys(k for row in report.pipeline for k in row.stages))
    table = _table(f"3. segment pipeline (read -> raster -> encode -> score -> vote -> write) on "
                   f"{len(report.pipeline_inputs)} input file(s): stage columns in ms per sketch",
                   ("mode", "B", "sketches", "sketches/s", "s/sketch", *stages, "peak MB"),
                   caption="overlapped: read + raster in a background thread; wait = model idle for data", left=("mode",))
    for row in report.pipeline:
        table.add_row(cell(row.mode), cell(row.batch_size), cell(row.sketches), _num(row.sketches_per_s, ".2f"),
                      _num(row.seconds_per_sketch),
                      *(_num(row.stages.get(k) and row.stages[k] * 1e3, ".1f") for k in stages),
                      _num(row.peak_memory_mb, ".0f"))
    return table


def _startup_table(report) -> Table | None:
    start = report.startup
    if start is None:
        return None
    table = _table("4. cold start", ("what", "seconds"), caption=start.note or None, left=("what",))
    table.add_row(cell("import sketchkit.cli.app (fresh process)"), _num(start.cli_import_s, ".2f"))
    table.add_row(cell(start.command + " (fresh process)"), _num(start.cold_segment_s, ".2f"))
    table.add_row(cell(f"build {start.model} (in this process)"), _num(start.model_build_s, ".2f"))
    return table


def _serve_table(report) -> Table | None:
    if not report.serve:
        return None
    first = report.serve[0]
    table = _table(f"5. warm POST /segment of {first.scene} ({first.strokes} strokes, in-process client, "
                   f"{first.device}, {first.threads} threads): ms", ("backbone", "median", "p90", "min",
                   "cached features", "load"), caption="random weights: speed does not depend on weight values",
                   left=("backbone",))
    for row in report.serve:
        load = f"{row.load_before:.1f} -> {row.load_after:.1f}" if row.load_before is not None and \
            row.load_after is not None else None
        table.add_row(cell(row.backbone), _num(row.median_s * 1e3, ".1f"), _num(row.p90_s * 1e3, ".1f"),
                      _num(row.min_s * 1e3, ".1f"), _num(row.median_cached_s * 1e3, ".1f"), cell(load or "n/a"))
    return table


def _scale_table(report) -> Table | None:
    if not report.scale:
        return None
    table = _table("6. scale: segment over synthetic sketches (tiny-random, --out-h5, no score maps), torchrun + gloo",
                   ("processes", "threads each", "sketches", "sketches/s", "run s", "launch s", "peak RSS MB per rank",
                    "bytes/sketch", "note"),
                   caption="run s: the slowest rank's stream + model + writes (+ rank 0's merge); launch s adds process "
                           "start, imports and the model build", left=("note",))
    for row in report.scale:
        rss = ", ".join(f"{v:.0f}" for v in row.peak_rss_mb) or "n/a"
        table.add_row(cell(row.processes), cell(row.threads), cell(f"{row.sketches:,}"), _num(row.sketches_per_s, ".1f"),
                      _num(row.wall_s, ".1f"), _num(row.launch_s, ".1f"), cell(rss),
                      _num(row.bytes_per_sketch, ",.0f"), cell(row.note))
    return table


def _sizes_table(report) -> Table | None:
    if not report.output_sizes:
        return None
    first = report.output_sizes[0]
    table = _table(f"6b. results file (--out-h5) per sketch by score storage, {first.sketches} {first.source} sketches",
                   ("--scores", "bytes/sketch", "KiB/sketch", "file MB"), left=("--scores",))
    for row in report.output_sizes:
        table.add_row(cell(row.scores), _num(row.bytes_per_sketch, ",.0f"),
                      _num(row.bytes_per_sketch and row.bytes_per_sketch / 1024, ".1f"), _num(row.file_bytes / 1e6, ".2f"))
    return table


def _goals_table(report) -> Table | None:
    if not report.goals:
        return None
    table = _table("7. goals", ("goal", "target", "measured", "met", "note"), left=("goal", "met", "note"))
    for goal in report.goals:
        met = NA.copy() if goal.met is None else Text("yes", style="green") if goal.met else Text("no", style="red")
        unit = f" {goal.unit}" if goal.unit and goal.unit != "x" else goal.unit
        table.add_row(cell(goal.name), cell(goal.target + unit), _num(goal.measured, ".3f", unit), met, cell(goal.note))
    return table
