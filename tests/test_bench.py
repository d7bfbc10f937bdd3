"""`sketchkit bench`, torch.compile of the encoder, and the speed helpers, on the tiny backbone on CPU.

No speed thresholds here (style.md: speed lives in `sketchkit bench`): figures are checked for being present, finite
and consistent with each other, and Triton rows for saying n/a without a GPU.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from typer.testing import CliRunner

from sketchkit.bench import BenchReport, EncoderRow, Environment, PipelineRow, Startup
from sketchkit.bench import timing
from sketchkit.bench.encoder import encoder_flops, with_impl
from sketchkit.bench.goals import evaluate_goals
from sketchkit.bench.pipeline import find_inputs
from sketchkit.bench.timing import cpu_time
from sketchkit.cli.bench import bench
from sketchkit.errors import InputError, UsageError
from sketchkit.model.compile import compile_encoder, compiled_forward, is_compiled, tune_malloc


def images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 224, 224, generator=g) * 2 - 1


# ---- the command, end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One quick full run through the CLI: tiny backbone, batches 1 and 2, the bundled examples, every section.
    The compiled rows use the aot_eager backend (graph capture without inductor's C++ build, which the compile test
    below covers)."""
    app = typer.Typer()
    app.command()(bench)
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    args = ["--backbone", "tiny-random", "--batches", "1,2", "--compile-backend", "aot_eager", "--batch-size", "2",
            "--min-sketches", "3", "--repeats", "2", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    return result, json.loads(out.read_text()) if out.exists() else None


def test_bench_prints_every_section(bench_run):
    result, _ = bench_run
    assert result.exit_code == 0, result.output
    for title in ("1. dual-path attention", "2. encoder forward_features", "3. segment pipeline", "4. cold start",
                  "7. goals", "RANDOM WEIGHTS", "matmul ceiling", "n/a"):
        assert title in result.output, title


def test_bench_json_environment_and_ceiling(bench_run):
    _, report = bench_run
    env = report["environment"]
    assert env["device"] == "cpu" and env["backbone"] == "tiny-random"
    assert "random weights" in env["weights"]
    assert env["vv_impl"] == "sdpa"  # auto never picks the Triton interpreter on CPU
    assert env["dtype"] == "float32"
    assert env["flops_per_image"] > 0 and env["model_build_s"] > 0
    assert report["ceiling"]["dtype"] == "float32" and report["ceiling"]["gflops"] > 0


def test_bench_json_attention_rows(bench_run):
    _, report = bench_run
    rows = report["attention"]
    assert [r["batch"] for r in rows] == [1, 2]
    for row in rows:
        assert (row["heads"], row["tokens"], row["head_dim"]) == (4, 1 + 196 + 3, 16)
        for key in ("eager_ms", "sdpa2_ms", "sdpa1_ms"):
            assert math.isfinite(row[key]) and row[key] > 0
        assert row["eager_vs_sdpa1"] == pytest.approx(row["eager_ms"] / row["sdpa1_ms"])
        assert row["sdpa2_vs_sdpa1"] == pytest.approx(row["sdpa2_ms"] / row["sdpa1_ms"])
        assert row["fused_ms"] is None and row["fused_vs_sdpa1"] is None
        assert "without a CUDA GPU" in row["note"]


def test_bench_json_encoder_rows(bench_run):
    _, report = bench_run
    rows = {(r["variant"], r["impl"], r["batch"]): r for r in report["encoder"]}
    assert set(rows) == {(v, i, b) for v in ("eager", "compiled") for i in ("sdpa", "triton") for b in (1, 2)}
    ceiling = report["ceiling"]["gflops"]
    flops = report["environment"]["flops_per_image"]
    for (variant, impl, batch), row in rows.items():
        if impl == "triton":
            assert row["seconds"] is None and row["ceiling_fraction"] is None and row["note"] == "n/a: no CUDA GPU"
            continue
        assert row["seconds"] > 0 and row["peak_memory_mb"] > 0
        assert row["images_per_s"] == pytest.approx(batch / row["seconds"])
        assert row["gflops"] == pytest.approx(flops * batch / row["seconds"] / 1e9)
        assert row["ceiling_fraction"] == pytest.approx(row["gflops"] / ceiling)
        assert (row["compile_s"] is not None) == (variant == "compiled")


def test_bench_json_pipeline_rows(bench_run):
    _, report = bench_run
    assert len(report["pipeline_inputs"]) == 3  # the bundled examples/*.svg
    rows = report["pipeline"]
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("serial", 1), ("serial", 2), ("overlapped", 2)]
    for row in rows:
        assert row["sketches"] == 3 and row["peak_memory_mb"] > 0
        assert row["sketches_per_s"] == pytest.approx(row["sketches"] / row["wall_s"])
        stages = row["stages"]
        assert {"read", "raster", "encode", "score", "vote", "write"} <= set(stages)
        assert all(v > 0 for k, v in stages.items() if k != "wait")
        main_thread = sum(v for k, v in stages.items() if k not in ("read", "raster"))
        if row["mode"] == "serial":  # stages are disjoint parts of the wall time
            assert sum(stages.values()) <= row["seconds_per_sketch"] * 1.001
        else:  # read + raster ran in the loader thread; the main thread's parts (and its waits) fit in the wall
            assert "wait" in stages and main_thread <= row["seconds_per_sketch"] * 1.001


def test_bench_json_startup_and_goals(bench_run):
    _, report = bench_run
    startup = report["startup"]
    assert startup["note"] == "", startup["note"]
    assert startup["cli_import_s"] > 0 and startup["cold_segment_s"] > 0 and startup["model_build_s"] > 0
    goals = {g["name"]: g for g in report["goals"]}
    assert len(goals) == 10
    for name, goal in goals.items():
        if goal["note"] == "needs a CUDA GPU":
            assert goal["met"] is None
    cold = goals["cold start: segment one file (tiny-random)"]
    assert cold["measured"] == startup["cold_segment_s"] and cold["met"] is not None


def test_bench_rejects_bad_options():
    app = typer.Typer()
    app.command()(bench)
    runner = CliRunner()
    for args in (["--batches", "1,x"], ["--batches", "0"], ["--sections", "encoder,nonsense"]):
        result = runner.invoke(app, ["--backbone", "tiny-random", *args])
        assert isinstance(result.exception, UsageError), (args, result.output)


# ---- FLOPs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dual, prompts", [(False, False), (True, False), (True, True)])
def test_analytic_flops_match_the_flop_counter(tiny_encoder, dual, prompts):
    """FlopCounterMode counts every matmul when SDPA runs its math backend and grad is on (no fused MHA path)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = with_impl(tiny_encoder, "sdpa")
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.forward_features(images(1), dual=dual, prompts=prompts)
    assert encoder_flops(model, dual=dual, prompts=prompts) == counter.get_total_flops()


def test_plain_vit_b16_costs_the_published_35_1_gflop():
    """ViT-B/16 at 224 px without dual path and prompts: 35.1 GFLOP (the published figure counts the class token's
    projection only; forward_features also projects the 196 patch tokens: 2 * 196 * 768 * 512 more)."""
    import open_clip

    from sketchkit.model.encoder import SketchCLIP
    from sketchkit.model.factory import get_backbone_config

    with torch.device("meta"):  # sizes only: no memory, no init time
        clip = open_clip.create_model("ViT-B-16-quickgelu", device="meta")
        model = SketchCLIP(clip, get_backbone_config("ViT-B-16"))
    plain = encoder_flops(model, dual=False, prompts=False)
    assert (plain - 2 * 196 * 768 * 512) / 1e9 == pytest.approx(35.1, abs=0.05)
    # the dual path adds, in 6 blocks, v v^T, its weighted values and one output projection (200 tokens with prompts)
    dual_extra = 6 * (4 * 200 * 200 * 768 + 2 * 200 * 768 * 768)
    assert encoder_flops(model, dual=True, prompts=True) - encoder_flops(model, dual=False, prompts=True) == dual_extra


# ---- torch.compile -----------------------------------------------------------------------------------------------


def test_compile_encoder_matches_eager_in_one_graph(tiny_encoder):
    """inductor, fullgraph=True (a graph break would raise), sdpa dual path; ~20 s on a 2-core CPU, most of it
    inductor's C++ build (cached on disk for later runs)."""
    model = with_impl(tiny_encoder, "sdpa")
    x = images(2)
    with torch.no_grad():
        want = model.forward_features(x, taps=(7, 12))
        assert compile_encoder(model) is model and is_compiled(model) and not is_compiled(tiny_encoder)
        got = model.forward_features(x, taps=(7, 12))
    assert compile_encoder(model) is model  # idempotent
    assert got.grid == want.grid and set(got.taps) == {7, 12}
    for name in ("scene", "patches"):
        assert (getattr(got, name) - getattr(want, name)).abs().max().item() <= 1e-4, name
    for tap in (7, 12):
        assert (got.taps[tap] - want.taps[tap]).abs().max().item() <= 1e-4


def test_fused_kernel_is_traced_as_one_custom_op_without_graph_breaks(tiny_encoder):
    """The whole forward_features with the Triton impl is one graph holding sketchkit::dual_attention once per dual
    block (run here through the interpreter, which conftest enables on CPU)."""
    from sketchkit.kernels.dual_attention import KERNEL_INTERPRETED, TRITON_AVAILABLE

    if not TRITON_AVAILABLE or not (KERNEL_INTERPRETED or torch.cuda.is_available()):
        pytest.skip("needs triton and either a CUDA GPU or TRITON_INTERPRET=1")
    model = with_impl(tiny_encoder, "triton")
    with torch.no_grad():
        explained = torch._dynamo.explain(model.forward_features)(images(1))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    calls = [n for n in explained.graphs[0].graph.nodes if "sketchkit.dual_attention" in str(n.target)]
    assert len(calls) == tiny_encoder.config.dual_blocks


def test_compile_options_are_checked(tiny_encoder, monkeypatch):
    with pytest.raises(UsageError, match="unknown compile mode"):
        compiled_forward(tiny_encoder, mode="fastest")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("sketchkit.model.compile.shutil.which", lambda name: None)
    with pytest.raises(UsageError, match="C\\+\\+ compiler"):
        compiled_forward(tiny_encoder)
    compiled_forward(tiny_encoder, backend="aot_eager")  # no C++ needed: no error


def test_with_impl_shares_weights_and_leaves_the_original_alone(tiny_encoder):
    view = with_impl(tiny_encoder, "eager")
    assert view.vv_impl == "eager" and tiny_encoder.vv_impl is None
    assert view.clip is tiny_encoder.clip and view.prompts is tiny_encoder.prompts
    with torch.no_grad():
        torch.testing.assert_close(view.forward_features(images(1)).patches,
                                   with_impl(tiny_encoder, "sdpa").forward_features(images(1)).patches,
                                   rtol=1e-4, atol=1e-5)


# ---- helpers -----------------------------------------------------------------------------------------------------


def test_cpu_time_is_the_median_after_warm_up(monkeypatch):
    clock = [0.0]
    durations = iter([100.0, 5.0, 1.0, 3.0])  # the first call is the warm-up and is not timed
    calls = []

    def work():
        calls.append(1)
        clock[0] += next(durations)

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    assert cpu_time(work, repeats=3, warmup=1, min_seconds=0) == 3.0
    assert len(calls) == 4


def test_cpu_time_repeats_short_calls_until_min_seconds(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = []

    def work():
        calls.append(1)
        clock[0] += 0.125  # exact in binary: the sums below are exact

    assert cpu_time(work, repeats=2, warmup=0, min_seconds=0.5) == 0.125
    assert len(calls) == 4  # 4 x 0.125 s reach 0.5 s


def test_tune_malloc_respects_user_malloc_settings(monkeypatch):
    import ctypes.util
    import sys

    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert tune_malloc() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None:
        pytest.skip("mallopt is a glibc Linux call")
    assert tune_malloc() is True


def test_find_inputs_defaults_to_the_bundled_examples(tmp_path):
    files = find_inputs(())
    assert sorted(f.name for f in files) == ["car_road.svg", "house_tree_sun.svg", "sailboat.svg"]
    assert find_inputs((), limit=1) == files[:1]
    with pytest.raises(InputError, match="not found"):
        find_inputs((tmp_path / "missing",))


def _environment(**changes) -> Environment:
    values = dict(device="cpu", device_name="test cpu", torch="x", triton=None, threads=2, dtype="float32",
                  backbone="ViT-B-16", weights="random weights (random_init)", vv_impl="sdpa", model_import_s=1.0,
                  model_build_s=2.0,
                  flops_per_image=int(38e9), timer="t", memory="m", malloc_tuned=True, load_before=0.0)
    values.update(changes)
    return Environment(**values)


def _encoder_row(batch: int, fraction: float, seconds: float = 1.0, variant="eager", impl="sdpa") -> EncoderRow:
    return EncoderRow(variant, impl, batch, seconds, batch / seconds, seconds / batch, 100.0, fraction, 1.0, None)


def test_goals_against_hand_made_cpu_figures():
    report = BenchReport(
        _environment(),
        encoder=[_encoder_row(1, 0.70), _encoder_row(8, 0.85)],
        pipeline=[PipelineRow("serial", 1, 8, 2.4, 8 / 2.4, 0.30, {}, 1.0)],
        startup=Startup(0.1, 4.2, "segment", 2.0, "ViT-B-16"),
    )
    goals = {g.name: g for g in evaluate_goals(report)}
    latency = goals["warm end-to-end latency, one sketch (batch 1)"]
    assert (latency.measured, latency.met) == (0.30, False)
    share = goals["encoder at batch 8, share of matmul ceiling"]
    assert (share.measured, share.met) == (0.85, True)
    cold = goals["cold start: segment one file (tiny-random)"]
    assert (cold.measured, cold.met) == (4.2, True)
    for name in ("fused dual path vs one SDPA call (worst batch)", "encoder at batch 256, share of matmul ceiling",
                 "compiled + triton vs eager, batch 64"):
        assert goals[name].met is None and goals[name].note == "needs a CUDA GPU"


def test_goals_measured_off_their_setting_are_not_judged():
    report = BenchReport(_environment(backbone="tiny-random"), encoder=[_encoder_row(8, 0.95)])
    share = next(g for g in evaluate_goals(report) if g.name.startswith("encoder at batch 8"))
    assert share.measured == 0.95 and share.met is None and "tiny-random" in share.note
    gpu = BenchReport(_environment(device="cuda", dtype="bfloat16 (autocast)"),
                      encoder=[_encoder_row(64, 0.4, 3.0), _encoder_row(64, 0.6, 1.5, "compiled", "triton"),
                               _encoder_row(256, 0.55, 9.0)])
    goals = {g.name: g for g in evaluate_goals(gpu)}
    speedup = goals["compiled + triton vs eager, batch 64"]
    assert speedup.measured == pytest.approx(2.0) and speedup.met is True
    assert goals["encoder at batch 256, share of matmul ceiling"].met is True
    assert goals["encoder at batch 8, share of matmul ceiling"].note == "CPU goal; this run is on CUDA"


def test_goals_are_a_table_of_records_that_name_real_figures():
    """Every goal reads a column that its section's rows have, filters on attributes they have, and states its
    setting in terms evaluate_goals knows: a typo in the table fails here, not as a silent n/a."""
    from dataclasses import fields

    from sketchkit.bench import report as report_module
    from sketchkit.bench.goals import COMPARISONS, DTYPES, GOALS, OFF_DEVICE, Figure, RatioOf

    from sketchkit.serve.bench import ServeLatency

    rows = {"pipeline": report_module.PipelineRow, "encoder": report_module.EncoderRow,
            "attention": report_module.AttentionRow, "startup": report_module.Startup, "serve": ServeLatency,
            "scale": report_module.ScaleRow, "output_sizes": report_module.OutputSize}
    assert len(GOALS) == 10 and len({g.name for g in GOALS}) == 10
    for goal in GOALS:
        assert goal.comparison in COMPARISONS and goal.unit in ("s", "x", "", "B")
        assert goal.setting.device in (None, *OFF_DEVICE) and goal.setting.dtype in (None, *DTYPES)
        figures = [goal.reads] if isinstance(goal.reads, Figure) else [goal.reads.numerator, goal.reads.denominator]
        assert isinstance(goal.reads, (Figure, RatioOf))
        for figure in figures:
            kind = rows[figure.section]
            names = {f.name for f in fields(kind)} | {n for n, v in vars(kind).items() if isinstance(v, property)}
            assert figure.column in names and set(figure.where) <= names and figure.pick in ("first", "max"), goal.name


def test_the_bench_pipeline_rows_and_segment_run_the_same_code(monkeypatch, tmp_path, capsys):
    """Issue 13: the bench's pipeline rows are `sketchkit.pipeline.run_segment`, the loop `sketchkit segment` runs.
    A spy wraps run_segment and the Engine it builds: every bench row is one timed call of it whose stage times are
    that call's engine `Timings`, and `segment` on the same file with the same labels goes through the same spy
    and gives the same scores."""
    from types import SimpleNamespace

    import numpy as np

    import sketchkit.pipeline as pipeline
    from sketchkit.bench import BenchOptions, run_bench
    from sketchkit.bench.pipeline import EXAMPLES
    from sketchkit.cli.app import main
    from sketchkit.inference import Engine, Timings

    calls, engines = [], []
    real_run_segment = pipeline.run_segment

    def spy(job, segmenter, *, timings=None, **options):  # options: the process layout and its counter
        call = SimpleNamespace(job=job, timings=timings, outcomes=[], engines_before=len(engines))
        calls.append(call)
        for outcome in real_run_segment(job, segmenter, timings=timings, **options):
            call.outcomes.append(outcome)
            yield outcome

    class RecordingEngine(Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(pipeline, "run_segment", spy)
    monkeypatch.setattr(pipeline, "Engine", RecordingEngine)
    labels = ("house", "tree", "sun")
    report = run_bench(BenchOptions(backbone="tiny-random", sections=("pipeline",), pipeline_batch=2, min_sketches=3,
                                    labels=labels, tune_malloc=False))
    assert [(r.mode, r.batch_size) for r in report.pipeline] == [("serial", 1), ("serial", 2), ("overlapped", 2)]
    assert len(calls) == 2 * len(report.pipeline) and len(engines) == len(calls)  # per row: warm-up, then timed
    for row, (warm, timed) in zip(report.pipeline, zip(calls[::2], calls[1::2])):
        assert warm.timings is None and isinstance(timed.timings, Timings)
        assert engines[timed.engines_before].timings is timed.timings  # the engine filled exactly these timings
        assert (timed.job.batch_size, timed.job.prefetch > 0) == (row.batch_size, row.mode == "overlapped")
        assert len(timed.outcomes) == row.sketches and all(o.error is None for o in timed.outcomes)
        stages = {k: v / row.sketches for k, v in timed.timings.as_dict().items() if row.mode == "overlapped" or k != "wait"}
        assert row.stages == pytest.approx(stages)

    sample = EXAMPLES / "house_tree_sun.svg"
    code = main(["segment", str(sample), "--backbone", "tiny-random", "--labels", ",".join(labels),
                 "--out", str(tmp_path), "--format", "json", "--quiet"])
    assert code == 0, capsys.readouterr().err
    segment_call = calls[-1]
    assert len(calls) == 2 * len(report.pipeline) + 1 and isinstance(engines[-1], RecordingEngine)
    (ours,) = segment_call.outcomes
    bench_outcome = next(o for o in calls[1].outcomes if o.path == sample)
    assert ours.result.stroke_label_names == bench_outcome.result.stroke_label_names
    np.testing.assert_allclose(ours.result.scores, bench_outcome.result.scores, rtol=1e-5, atol=1e-6)


def test_render_prints_cells_and_notes_as_plain_text(capsys):
    """Names, notes and commands may hold square brackets; Rich must not read them as markup."""
    from sketchkit.cli.bench import render

    report = BenchReport(
        _environment(device_name="cpu [v2]"),
        encoder=[_encoder_row(8, 0.5)],
        startup=Startup(0.1, None, "python -m sketchkit.cli segment a[red].svg", 2.0, "m", note="segment: exit 1: [bold]x"),
    )
    report.goals = evaluate_goals(report)
    render(report)
    out = capsys.readouterr().out
    for text in ("cpu [v2]", "a[red].svg", "[bold]x", "n/a", "7. goals"):
        assert text in out, text


def test_segmenters_built_with_compile_run_the_compiled_encoder():
    from sketchkit.inference import ModelSpec, build_segmenter

    plain = build_segmenter(ModelSpec("clip-surgery", "tiny-random", device="cpu"))
    compiled = build_segmenter(ModelSpec("clip-surgery", "tiny-random", device="cpu", compile=True))
    assert is_compiled(compiled.encoder) and not is_compiled(plain.encoder)


def test_a_short_last_batch_reuses_the_compiled_graph(friss_test_files):
    from sketchkit.io import read_sketch
    from sketchkit.model.factory import create_encoder
    from sketchkit.inference import segmenter_on
    from sketchkit.raster import rasterize

    graphs = []

    def counting_backend(graph, example_inputs):  # records each graph dynamo hands over, runs it as is
        graphs.append(example_inputs)
        return graph.forward

    rasters = [rasterize(read_sketch(path)) for path in friss_test_files[:3]]
    eager = segmenter_on("clip-surgery", create_encoder("tiny-random"))
    compiled = segmenter_on("clip-surgery", compile_encoder(create_encoder("tiny-random"), backend=counting_backend))
    compiled.encode(rasters[:2])
    short = compiled.encode(rasters[2:])  # one sketch: padded to the compiled batch of 2, no second graph
    assert len(graphs) == 1 and len(short) == 1
    (scene, patches), = short
    (want_scene, want_patches), = eager.encode(rasters[2:])
    torch.testing.assert_close(scene, want_scene, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(patches, want_patches, atol=1e-5, rtol=1e-4)


# ---- serve and scale sections ------------------------------------------------------------------------------------


def test_serve_and_scale_sections_through_the_cli(tmp_path):
    """`bench --sections serve,scale` on the tiny backbone with tiny sizes: one 2-process torchrun run."""
    app = typer.Typer()
    app.command()(bench)
    out = tmp_path / "bench.json"
    args = ["--backbone", "tiny-random", "--sections", "scale,serve", "--serve-repeats", "2", "--scale-sketches", "24",
            "--scale-processes", "2", "--limit", "3", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for title in ("5. warm POST /segment", "6. scale", "6b. results file", "7. goals"):
        assert title in result.output, title
    report = json.loads(out.read_text())
    (serve,) = report["serve"]
    assert serve["backbone"] == "tiny-random" and serve["repeats"] == 2 and 0 < serve["median_s"] < 10
    (row,) = report["scale"]
    assert (row["processes"], row["sketches"], row["note"]) == (2, 24, "")
    assert row["sketches_per_s"] > 0 and len(row["peak_rss_mb"]) == 2 and all(v > 50 for v in row["peak_rss_mb"])
    assert 0 < row["bytes_per_sketch"] < 50_000
    sizes = {r["scores"]: r for r in report["output_sizes"]}
    assert set(sizes) == {"none", "top1", "fp16"} and all(r["sketches"] == 3 for r in sizes.values())
    assert sizes["none"]["bytes_per_sketch"] < sizes["top1"]["bytes_per_sketch"] < sizes["fp16"]["bytes_per_sketch"]
    goals = {g["name"]: g for g in report["goals"]}
    assert goals["warm POST /segment, one scene (tiny-random)"]["measured"] == serve["median_s"]
    assert "not run at 2,000 and 20,000" in goals["peak RSS per process, 20,000 vs 2,000 sketches (2 processes)"]["note"]


def test_scale_goals_read_the_rows():
    from sketchkit.bench import OutputSize, ScaleRow

    env = Environment("cpu", "cpu", "2", None, 2, "float32", "tiny-random", "random", "sdpa", 0, 0, 0, "", "", False,
                      None)
    rows = [ScaleRow(2, 2000, 1, 10.0, 200.0, 20.0, [900.0, 880.0], 9000.0),
            ScaleRow(2, 20000, 1, 100.0, 200.0, 110.0, [905.0, 950.0], 9000.0)]
    report = BenchReport(env, scale=rows, output_sizes=[OutputSize("none", 10, "FrISS test", 16000.0, 160000)])
    goals = {g.name: g for g in evaluate_goals(report)}
    growth = goals["peak RSS per process, 20,000 vs 2,000 sketches (2 processes)"]
    assert growth.measured == pytest.approx(950 / 900) and growth.met
    assert goals["results file per FrISS sketch, no score maps"].met


def test_synthetic_sketches_are_quickdraw_files(tmp_path):
    from sketchkit.bench.scale import FILE_DRAWINGS, write_synthetic
    from sketchkit.io import iter_drawings

    folder = write_synthetic(tmp_path, FILE_DRAWINGS + 3)
    files = sorted(folder.glob("*.ndjson"))
    assert len(files) == 2
    drawings = [d for f in files for d in iter_drawings(f)]
    assert len(drawings) == FILE_DRAWINGS + 3 and drawings[0][0] == str(10**15)
    assert all(3 <= s.num_strokes <= 8 for _, s in drawings)
    assert write_synthetic(tmp_path / "again", 5).joinpath("part-00000.ndjson").read_text() == \
        write_synthetic(tmp_path / "more", 5).joinpath("part-00000.ndjson").read_text(), "a fixed seed"
