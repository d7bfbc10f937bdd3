"""`sketchkit bench`: speed on this machine, measured in one run (kernel, encoder, pipeline, memory, FLOP ceiling).

Examples:
    sketchkit bench                                   # full-size ViT-B/16, random weights, default batch sizes
    sketchkit bench --backbone tiny-random --batches 1,2 --min-sketches 3     # a quick run
    sketchkit bench --data ../shared/data/friss/test --limit 16 --batches 1,8 --json bench.json
    sketchkit bench --sections attention,encoder --no-compile
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ._options import BackboneOpt, BatchOpt, DeviceOpt, JsonOutOpt, LimitOpt, OverwriteOpt, QuietOpt, WeightsOpt, stderr, stdout

NA = "[dim]n/a[/dim]"
PIPED_WIDTH = 160  # tables are wide; when stdout is not a terminal, do not squeeze them into 80 columns


def _batches(spec: str | None) -> tuple[int, ...] | None:
    from sketchkit.errors import UsageError

    if spec is None:
        return None
    try:
        values = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--batches takes a comma list of whole numbers, got {spec!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"--batches takes positive whole numbers, got {spec!r}")
    return values


def bench(
    backbone: BackboneOpt = "ViT-B-16",
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
    sections: Annotated[str, typer.Option("--sections", help="Comma list of attention, encoder, pipeline, startup.")] = "attention,encoder,pipeline,startup",
    tune_malloc: Annotated[bool, typer.Option("--tune-malloc/--no-tune-malloc", help="Raise glibc's mmap/trim thresholds first (removes CPU page faults; see sketchkit.model.compile.tune_malloc).")] = True,
    json_out: JsonOutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure attention kernels, encoder throughput, the segment pipeline, memory and the FLOP ceiling."""
    from sketchkit.bench import BenchOptions, run_bench, write_json
    from sketchkit.files import check_output_path
    from sketchkit.labels import parse_labels

    if json_out is not None:
        check_output_path(json_out, overwrite=overwrite)
    options = BenchOptions(
        backbone=backbone, weights=str(weights) if weights else None, random_weights=random_weights, device=device,
        batches=_batches(batches), dtype=dtype, compile=compile, compile_mode=compile_mode,
        compile_backend=compile_backend, data=tuple(data or ()), labels=tuple(parse_labels(labels)) if labels else None,
        limit=limit, pipeline_batch=batch_size, pipeline_compile=pipeline_compile, min_sketches=min_sketches,
        repeats=repeats, sections=tuple(s.strip().lower() for s in sections.split(",") if s.strip()),
        tune_malloc=tune_malloc,
    )

    def note(message: str) -> None:
        if not quiet:
            stderr.print(f"[dim]bench:[/dim] {message}", highlight=False)

    report = run_bench(options, on_progress=note)
    if json_out is not None:
        write_json(report, json_out, overwrite=overwrite)
    if quiet:
        if json_out is not None:
            stdout.print(str(json_out), highlight=False, soft_wrap=True)
        return
    render(report)
    if json_out is not None:
        stderr.print(f"wrote {json_out}", highlight=False)


# ---- rendering -------------------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".3f", suffix: str = "") -> str:
    return NA if value is None else f"{value:{fmt}}{suffix}"


def render(report) -> None:
    """Print the report as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    from sketchkit.bench import VIT_B16_GFLOP

    out = stdout if stdout.is_terminal else Console(width=PIPED_WIDTH)

    env = report.environment
    random_note = " — [yellow]RANDOM WEIGHTS[/yellow]" if "random" in env.weights else ""
    load = f"load avg {_num(env.load_before, '.1f')} -> {_num(env.load_after, '.1f')}"
    out.print(
        f"[bold]sketchkit bench[/bold]: {env.device_name} ({env.device}), torch {env.torch}, triton {env.triton or 'absent'}, "
        f"{env.threads} threads, {env.dtype}, {load}\n"
        f"model: {env.backbone} ({env.weights}){random_note}, dual-path attention {env.vv_impl}, "
        f"{env.flops_per_image / 1e9:.2f} GFLOP/image (analytic; plain ViT-B/16: {VIT_B16_GFLOP}), built in {env.model_build_s:.2f} s "
        f"(+ {env.model_import_s:.2f} s importing open_clip)\n"
        f"timer: {env.timer}; memory: {env.memory}; malloc tuned: {'yes' if env.malloc_tuned else 'no'}",
        highlight=False, soft_wrap=True,
    )
    if env.load_before is not None and env.load_before >= 0.5 * (os.cpu_count() or 1):
        out.print(f"[yellow]Warning:[/yellow] other processes were using the CPU when the run started (load average "
                  f"{env.load_before:.1f} on {os.cpu_count()} cores): timings are unreliable; rerun on a quiet machine.",
                  highlight=False, soft_wrap=True)
    if report.attention:
        first = report.attention[0]
        table = Table(title=f"1. dual-path attention, N={first.tokens}, H={first.heads}, D={first.head_dim}, "
                            f"{first.dtype}: median ms (ratios: in one-SDPA-call units)", caption=first.note or None)
        for column in ("B", "fused", "eager", "2x SDPA", "1x SDPA", "eager/1x", "2x SDPA/1x", "fused/1x", "eager/fused", "fused err"):
            table.add_column(column, justify="right")
        for row in report.attention:
            table.add_row(str(row.batch), _num(row.fused_ms), _num(row.eager_ms), _num(row.sdpa2_ms), _num(row.sdpa1_ms),
                          _num(row.eager_vs_sdpa1, ".2f", "x"), _num(row.sdpa2_vs_sdpa1, ".2f", "x"),
                          _num(row.fused_vs_sdpa1, ".2f", "x"), _num(row.eager_vs_fused, ".2f", "x"),
                          _num(row.fused_max_error, ".1e"))
        out.print(table)
    if report.encoder:
        ceiling = report.ceiling
        caption = (f"matmul ceiling: {ceiling.gflops:.0f} GFLOP/s ({ceiling.dtype} {ceiling.size}x{ceiling.size}, "
                   f"measured in this run)") if ceiling else None
        table = Table(title=f"2. encoder forward_features (dual path + prompts), {env.dtype}", caption=caption)
        for column in ("variant", "B", "s/batch", "s/image", "images/s", "GFLOP/s", "of ceiling", "peak MB", "compile s", "note"):
            table.add_column(column, justify="left" if column in ("variant", "note") else "right")
        for row in report.encoder:
            table.add_row(f"{row.variant} + {row.impl}", str(row.batch), _num(row.seconds), _num(row.seconds_per_image),
                          _num(row.images_per_s, ".2f"), _num(row.gflops, ".0f"),
                          _num(row.ceiling_fraction and row.ceiling_fraction * 100, ".0f", "%"),
                          _num(row.peak_memory_mb, ".0f"), _num(row.compile_s, ".1f"), row.note)
        out.print(table)
    if report.pipeline:
        stages = list(dict.fromkeys(k for row in report.pipeline for k in row.stages))
        table = Table(title=f"3. segment pipeline (read -> raster -> encode -> score -> vote -> write) on "
                            f"{len(report.pipeline_inputs)} input file(s): stage columns in ms per sketch",
                      caption="overlapped: read + raster in a background thread; wait = model idle for data")
        for column in ("mode", "B", "sketches", "sketches/s", "s/sketch", *stages, "peak MB"):
            table.add_column(column, justify="left" if column == "mode" else "right")
        for row in report.pipeline:
            table.add_row(row.mode, str(row.batch_size), str(row.sketches), _num(row.sketches_per_s, ".2f"),
                          _num(row.seconds_per_sketch), *(_num(row.stages.get(k) and row.stages[k] * 1e3, ".1f") for k in stages),
                          _num(row.peak_memory_mb, ".0f"))
        out.print(table)
    if report.startup:
        start = report.startup
        table = Table(title="4. cold start", caption=start.note or None)
        table.add_column("what")
        table.add_column("seconds", justify="right")
        table.add_row("import sketchkit.cli.app (fresh process)", _num(start.cli_import_s, ".2f"))
        table.add_row(start.command + " (fresh process)", _num(start.cold_segment_s, ".2f"))
        table.add_row(f"build {start.model} (in this process)", _num(start.model_build_s, ".2f"))
        out.print(table)
    if report.goals:
        table = Table(title="5. goals")
        for column in ("goal", "target", "measured", "met", "note"):
            table.add_column(column, justify="right" if column in ("target", "measured") else "left")
        for goal in report.goals:
            met = NA if goal.met is None else ("[green]yes[/green]" if goal.met else "[red]no[/red]")
            unit = f" {goal.unit}" if goal.unit and goal.unit != "x" else goal.unit
            table.add_row(goal.name, goal.target + unit, _num(goal.measured, ".3f", unit), met, goal.note)
        out.print(table)
