"""Evaluation results: per-model scores under both protocols, as JSON-ready data and CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..scores import Evaluator
from ..raster import DEFAULT_SIZE
from ..types import SegmentResult, Sketch, Transform

DEFAULT_EVAL_SIZE = 512
PROTOCOLS = ("per_sketch", "dataset", "reference")
"""per_sketch: the paper's per-sketch means; dataset: CAVT's pooled confusion; reference: the reference
code's test.py geometry (`sketchkit.evaluation.reference_protocol`), computed when asked for."""



@dataclass
class PredictionRecord:
    """What galleries need of one scored prediction (global class indices, -1 = none/not scored).

    pred_strokes, true_strokes: (S,) int64. transform: the model raster's canvas -> 224 px map.
    """

    sketch: Sketch
    transform: Transform
    pred_strokes: np.ndarray
    true_strokes: np.ndarray


@dataclass
class Gallery:
    """The worst and best `count` sketches by per-sketch mIoU, with what the gallery draws of them: a bounded
    share of the scores, whatever the number of sketches. Ties: the worst in input order, the best in
    reverse input order (as sorting every score would give). `order` is the sketch's place in the input."""

    count: int = 4
    worst: list = field(default_factory=list)  # (miou, order, SketchScore, PredictionRecord), ascending
    best: list = field(default_factory=list)  # the 2 * count highest, descending

    def add(self, order: int, score, record) -> None:
        if math.isnan(score.miou) or self.count <= 0:
            return
        entry = (score.miou, order, score, record)
        self.worst = sorted(self.worst + [entry], key=lambda e: (e[0], e[1]))[:self.count]
        self.best = sorted(self.best + [entry], key=lambda e: (e[0], e[1]), reverse=True)[:2 * self.count]

    def merge(self, others) -> None:
        for other in others:
            for entry in other.worst + other.best:
                if all(entry[1] != mine[1] for mine in self.worst + self.best):
                    self.add(entry[1], entry[2], entry[3])

    def remap(self, lookup: np.ndarray) -> None:
        """Class indices of the records after the evaluator's index space was reordered (`Evaluator.reorder`)."""
        def moved(entry):
            record = entry[3]
            return (*entry[:3], PredictionRecord(record.sketch, record.transform, lookup[record.pred_strokes],
                                                 lookup[record.true_strokes]))

        self.worst = [moved(e) for e in self.worst]
        self.best = [moved(e) for e in self.best]

    def rows(self) -> list[tuple[str, object, object]]:
        """("worst" | "best", SketchScore, PredictionRecord): the worst first, then the best not among them."""
        worst = self.worst[:self.count]
        taken = {e[1] for e in worst}
        best = [e for e in self.best if e[1] not in taken][:self.count]
        return [("worst", e[2], e[3]) for e in worst] + [("best", e[2], e[3]) for e in best]


@dataclass
class ModelResult:
    """One model's scores. With `keep_scores` (evaluate's default) every SketchScore is in
    `evaluator.sketch_scores`, `records[i]` belongs to it and `reference` holds the reference protocol's
    per-sketch scores; otherwise only the sums (`evaluator.means`, `reference_means`) and the `gallery`
    are kept, so memory does not grow with the number of sketches."""

    name: str
    description: str
    evaluator: Evaluator
    excluded_strokes: int = 0
    predictions: list[SegmentResult] = field(default_factory=list)
    weights: dict | None = None
    excluded_classes: Counter = field(default_factory=Counter)
    scoring: str = "paper"
    reference: list = field(default_factory=list)  # SketchScore per sketch under the reference protocol
    records: list[PredictionRecord] = field(default_factory=list)
    gallery: Gallery = field(default_factory=Gallery)
    reference_means: dict | None = None  # metric -> MeanOfDefined when the reference protocol ran
    orders: list[int] = field(default_factory=list)  # input position of each kept per-sketch score


@dataclass
class EvalReport:
    data: dict
    models: list[ModelResult]
    eval_size: int
    skipped: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    stroke_resolution: dict[str, int] = field(default_factory=dict)  # model -> the raster side it voted at

    def to_dict(self) -> dict:
        """JSON-ready: {"sketchkit_version", "config", "data", "results": {model: {"per_sketch",
        "dataset", ["reference"], "counts", "model", "weights", "resolution", "scoring", "threshold", "sketches",
        "excluded_strokes", "excluded_classes", "per_category"}}}; metrics in percent, None where undefined;
        "reference" only when that protocol ran."""
        from .reference_protocol import summarise, summarise_means

        results = {}
        for m in self.models:
            scores = m.evaluator.summary().to_dict()
            reference = summarise_means(m.reference_means) if m.reference_means is not None and \
                m.reference_means["miou"].count + m.reference_means["acc_s"].count + m.reference_means["acc_p"].count \
                else summarise(m.reference) if m.reference else None
            results[m.name] = {
                **scores,
                **({"reference": reference} if reference is not None else {}),
                "model": m.description,
                "weights": m.weights,
                "resolution": {"pixels": self.eval_size, "strokes": self.stroke_resolution.get(m.name, DEFAULT_SIZE)},
                "scoring": m.scoring,
                "threshold": self.data.get("threshold"),
                "sketches": m.evaluator.count,
                "excluded_strokes": m.excluded_strokes,
                "excluded_classes": dict(sorted(m.excluded_classes.items(), key=lambda kv: (-kv[1], kv[0]))),
                "per_category": m.evaluator.per_category(),
            }
        return {"sketchkit_version": __version__, "config": self.config, "data": self.data, "results": results}


CSV_COLUMNS = ("model", "protocol", "metric", "value", "resolution_px", "stroke_resolution_px", "sketches",
               "model_description", "weights", "scoring", "threshold", "data_fingerprint", "sketchkit_version")


def report_csv(report: dict) -> str:
    """`EvalReport.to_dict()` as CSV text: one row per model, protocol and metric (the JSON path
    results.<model>.<protocol>.<metric>), value in percent, empty when undefined."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    fingerprint = report.get("data", {}).get("fingerprint", "")
    for name, result in report["results"].items():
        weights = result.get("weights") or {}
        weights_text = "; ".join(f"{k}={v}" for k, v in weights.items() if v is not None)
        for protocol in (p for p in PROTOCOLS if p in result):
            for metric, value in result[protocol].items():
                writer.writerow([name, protocol, metric, "" if value is None else repr(float(value)),
                                 result["resolution"]["pixels"], result["resolution"]["strokes"], result["sketches"],
                                 result["model"], weights_text, result.get("scoring", ""),
                                 "" if result.get("threshold") is None else result["threshold"], fingerprint,
                                 report.get("sketchkit_version", "")])
    return buffer.getvalue()


def dataset_fingerprint(paths: Sequence[Path]) -> str:
    """16 hex digits of SHA-256 over the file names, in order."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(os.fsencode(Path(p).name) + b"\0")
    return digest.hexdigest()[:16]


def best_models(report: dict, protocol: str, key: str) -> set[str]:
    """Names of the models with the highest defined value of `key` (ties: all of them)."""
    values = {n: r[protocol].get(key) for n, r in report["results"].items()}
    defined = [v for v in values.values() if v is not None and not math.isnan(v)]
    if not defined:
        return set()
    top = max(defined)
    return {n for n, v in values.items() if v is not None and v == top}

