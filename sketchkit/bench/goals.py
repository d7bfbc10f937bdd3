"""Section 5, goals: the speed issue's targets as data, judged against one run by `evaluate_goals`.

Each `GoalSpec` says what is compared (`comparison`, `target`, `unit`), the setting the target is stated for
(`Setting`: device, backbone, dtype) and which measured figure it reads (`Figure`: a column of a report section,
from the rows matching `where`; or `RatioOf` two figures). A figure measured off the goal's setting is reported but
not judged (met is None, the note says why); a figure not measured says that instead.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from .report import BenchReport, Environment, Goal
from .timing import ratio
from ..model import DEFAULT_BACKBONE

COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # a goal's dtype -> how Environment.dtype starts
OFF_DEVICE = {"cpu": "CPU goal; this run is on CUDA", "cuda": "needs a CUDA GPU"}
NOT_MEASURED = "not measured in this run"


@dataclass(frozen=True)
class Setting:
    """The setting a goal is stated for; None: any."""

    device: str | None = None  # "cpu" | "cuda"
    backbone: str | None = None
    dtype: str | None = None  # a key of DTYPES

    def mismatch(self, env: Environment) -> str:
        """Why this run is not in the setting ("" when it is)."""
        if self.device is not None and env.device != self.device:
            return OFF_DEVICE[self.device]
        if self.backbone is not None and env.backbone != self.backbone:
            return f"goal is for {self.backbone}, this run used {env.backbone}"
        if self.dtype is not None and not env.dtype.startswith(DTYPES[self.dtype]):
            return f"goal is for {self.dtype}"
        return ""


@dataclass(frozen=True)
class Figure:
    """`column` of the report's `section` (a list of rows, or one record such as `startup`), taken from the rows
    whose attributes equal `where` and whose figure was measured; `pick` turns several into one: "first" | "max"."""

    section: str
    column: str
    where: dict = field(default_factory=dict)
    pick: str = "first"
    missing: str = NOT_MEASURED  # the note when no row has the figure

    def read(self, report: BenchReport) -> float | None:
        found = getattr(report, self.section)
        rows = found if isinstance(found, list) else [] if found is None else [found]
        values = [getattr(row, self.column) for row in rows if all(getattr(row, k) == v for k, v in self.where.items())]
        values = [v for v in values if v is not None]
        if not values:
            return None
        return max(values) if self.pick == "max" else values[0]


@dataclass(frozen=True)
class RatioOf:
    """numerator / denominator, two figures of the same report."""

    numerator: Figure
    denominator: Figure
    missing: str = NOT_MEASURED

    def read(self, report: BenchReport) -> float | None:
        return ratio(self.numerator.read(report), self.denominator.read(report))


@dataclass(frozen=True)
class GoalSpec:
    """One target: `reads` compared with `target` by `comparison`, judged only in `setting`. `name` may mention
    {cold_backbone}, the backbone of the cold-start run."""

    name: str
    comparison: str  # a key of COMPARISONS
    target: float
    unit: str  # "s", "x" (a ratio), "" (a fraction)
    setting: Setting
    reads: Figure | RatioOf


CPU_FULL_FP32 = Setting(device="cpu", backbone=DEFAULT_BACKBONE, dtype="fp32")

GOALS = (
    GoalSpec("warm end-to-end latency, one sketch (batch 1)", "<=", 0.25, "s", CPU_FULL_FP32,
             Figure("pipeline", "seconds_per_sketch", where={"mode": "serial", "batch_size": 1})),
    GoalSpec("encoder at batch 8, share of matmul ceiling", ">=", 0.80, "", CPU_FULL_FP32,
             Figure("encoder", "ceiling_fraction", where={"variant": "eager", "impl": "sdpa", "batch": 8},
                    missing="batch 8 not among the measured batch sizes")),
    GoalSpec("cold start: segment one file ({cold_backbone})", "<", 5, "s", Setting(device="cpu"),
             Figure("startup", "cold_segment_s", missing="startup section not run")),
    GoalSpec("fused dual path vs one SDPA call (worst batch)", "<=", 1.3, "x", Setting(device="cuda"),
             Figure("attention", "fused_vs_sdpa1", pick="max")),
    GoalSpec("encoder at batch 256, share of matmul ceiling", ">=", 0.50, "",
             Setting(device="cuda", backbone=DEFAULT_BACKBONE, dtype="bf16"),
             Figure("encoder", "ceiling_fraction", where={"batch": 256}, pick="max")),
    GoalSpec("compiled + triton vs eager, batch 64", ">=", 1.5, "x", Setting(device="cuda", backbone=DEFAULT_BACKBONE),
             RatioOf(Figure("encoder", "seconds", where={"variant": "eager", "impl": "sdpa", "batch": 64}),
                     Figure("encoder", "seconds", where={"variant": "compiled", "impl": "triton", "batch": 64}))),
    # issue 15: a warm POST /segment of a FrISS scene on 2 CPU cores
    GoalSpec("warm POST /segment, one scene (tiny-random)", "<=", 0.050, "s", Setting(device="cpu", backbone="tiny-random"),
             Figure("serve", "median_s", where={"backbone": "tiny-random"}, missing="serve section not run")),
    GoalSpec("warm POST /segment, one scene (ViT-B-16)", "<=", 0.300, "s", Setting(device="cpu", backbone="ViT-B-16"),
             Figure("serve", "median_s", where={"backbone": "ViT-B-16"}, missing="serve section not run")),
    # issue 16: compact results and memory that does not grow with the input
    GoalSpec("results file per FrISS sketch, no score maps", "<=", 20 * 1024, "B", Setting(),
             Figure("output_sizes", "bytes_per_sketch", where={"scores": "none", "source": "FrISS test"},
                    missing="scale section not run on FrISS")),
    GoalSpec("peak RSS per process, 20,000 vs 2,000 sketches (2 processes)", "<=", 1.10, "x", Setting(),
             RatioOf(Figure("scale", "peak_rss_max_mb", where={"processes": 2, "sketches": 20000}),
                     Figure("scale", "peak_rss_max_mb", where={"processes": 2, "sketches": 2000}),
                     missing="scale section not run at 2,000 and 20,000 sketches with 2 processes")),
)


def evaluate_goals(report: BenchReport, goals: tuple[GoalSpec, ...] = GOALS) -> list[Goal]:
    """Each goal against this run's figures. A goal measured off its stated setting says so and is not judged."""
    names = {"cold_backbone": report.startup.cold_backbone if report.startup else "tiny-random"}
    results = []
    for goal in goals:
        measured = goal.reads.read(report)
        note = goal.setting.mismatch(report.environment) or (goal.reads.missing if measured is None else "")
        met = None if note else COMPARISONS[goal.comparison](measured, goal.target)
        results.append(Goal(goal.name.format(**names), f"{goal.comparison} {goal.target:g}", measured, goal.unit, met,
                            note))
    return results
