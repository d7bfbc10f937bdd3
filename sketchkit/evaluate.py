"""Score models on labelled sketch sets (`sketchkit eval`), both protocols of the field.

Per sketch: the model sees the 224 px raster; strokes are scored from the majority vote at 224
(with hidden strokes re-voted at 4x), pixels at `eval_size` (default 512, the resolution of the
reference scripts) from the bilinearly upsampled score maps, over the ink of the sketch drawn at
that size with the same framing. Every result records its resolution.

Vocabulary: `per-sketch` (each sketch's own ground-truth category set, the paper's protocol) or
a fixed list of names, with an optional mapping from dataset names to list names; strokes whose
class falls outside the list are excluded and counted, never silently miscounted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .errors import InputError, UsageError
from .metrics import Evaluator
from .predictor import MODEL_SIZE, finish
from .raster import rasterize
from .types import SegmentResult, Sketch

DEFAULT_EVAL_SIZE = 512


@dataclass
class Vocabulary:
    """None names = per-sketch vocabulary; else a fixed list with a dataset->list name mapping."""

    names: list[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)

    @property
    def per_sketch(self) -> bool:
        return self.names is None

    def describe(self) -> str:
        return "per-sketch" if self.per_sketch else f"fixed list of {len(self.names)} names"

    def map(self, name: str | None) -> str | None:
        """Dataset name -> vocabulary name, None when outside the vocabulary."""
        if name is None:
            return None
        mapped = self.mapping.get(name, name)
        return mapped if self.per_sketch or mapped in self._index else None

    def __post_init__(self):
        self._index = {n: i for i, n in enumerate(self.names or [])}


def load_mapping(path: Path) -> dict[str, str]:
    """A JSON object name->name, or one nested one level (FrISS's {"friss_to_qd": {...}})."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read name mapping: {exc}", path) from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError("name mapping must be a JSON object of name -> name", path)
    return data


@dataclass
class ModelResult:
    name: str
    description: str
    evaluator: Evaluator
    excluded_strokes: int = 0
    predictions: list[SegmentResult] = field(default_factory=list)


@dataclass
class EvalReport:
    data: dict
    models: list[ModelResult]
    eval_size: int
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        results = {}
        for m in self.models:
            scores = m.evaluator.summary().to_dict()
            results[m.name] = {
                **scores,
                "model": m.description,
                "resolution": {"pixels": self.eval_size, "strokes": MODEL_SIZE},
                "sketches": len(m.evaluator.sketch_scores),
                "excluded_strokes": m.excluded_strokes,
            }
        return {"sketchkit_version": __version__, "data": self.data, "results": results}


def dataset_fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).name.encode() + b"\0")
    return digest.hexdigest()[:16]


def ground_truth_classes(sketch: Sketch, vocab: Vocabulary, names: list[str]) -> np.ndarray:
    """(S,) int index into `names` of each stroke's true class, -1 for unlabelled/excluded."""
    index = {n: i for i, n in enumerate(names)}
    mapped = [vocab.map(label) for label in (sketch.labels or [None] * sketch.num_strokes)]
    return np.array([index.get(n, -1) if n is not None else -1 for n in mapped], dtype=np.int64)


def pixel_scores_at(scores: np.ndarray, size: int) -> np.ndarray:
    """(C, 224, 224) -> (C, size, size) bilinear (align_corners=False), as the reference scores."""
    if scores.shape[-1] == size:
        return scores
    t = torch.from_numpy(np.ascontiguousarray(scores))[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()


def score_prediction(result: SegmentResult, vocab: Vocabulary, global_names: list[str], eval_size: int) -> dict:
    """Map one prediction and its ground truth into the global class space at `eval_size`.

    Returns pred/true pixel maps (eval_size^2, -1 = not evaluated) and pred/true stroke arrays.
    """
    sketch = result.sketch
    local_to_global = np.array([global_names.index(n) if n in global_names else -1 for n in result.labels] + [-1], dtype=np.int64)
    true_strokes = ground_truth_classes(sketch, vocab, global_names)
    pred_strokes = local_to_global[result.votes.labels]  # -1 label -> last entry (-1)
    big = rasterize(sketch, eval_size, transform=result.raster.transform.resized(eval_size))
    ids = big.stroke_ids
    ink = ids >= 0
    true_pixels = np.where(ink, true_strokes[np.clip(ids, 0, None)], -1)
    scores = pixel_scores_at(result.scores, eval_size)
    pred_pixels = np.where(ink, local_to_global[scores.argmax(0)], -1)
    return dict(pred_pixels=pred_pixels, true_pixels=true_pixels, pred_strokes=pred_strokes, true_strokes=true_strokes)


def evaluate(
    sketches: Sequence[Sketch],
    models: Sequence,
    *,
    vocab: Vocabulary | None = None,
    eval_size: int = DEFAULT_EVAL_SIZE,
    batch_size: int = 16,
    data_info: dict | None = None,
    keep_predictions: bool = False,
    on_step: Callable[[str, int], None] | None = None,
) -> EvalReport:
    """Run every model on every sketch (in order) and score both protocols."""
    vocab = vocab or Vocabulary()
    if eval_size < 16:
        raise UsageError("--eval-size must be at least 16")
    if vocab.per_sketch:
        global_names = sorted({vocab.map(n) for s in sketches for n in s.label_names()} - {None})
    else:
        global_names = list(vocab.names)
    if not global_names:
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels are needed)")
    reports = []
    for model in models:
        result = ModelResult(model.name, model.description, Evaluator(global_names))
        for start in range(0, len(sketches), batch_size):
            batch = sketches[start : start + batch_size]
            rasters = [rasterize(s, MODEL_SIZE) for s in batch]
            features = model.encode(rasters, list(batch))
            for sketch, raster, feats in zip(batch, rasters, features):
                labels = [n for n in dict.fromkeys(vocab.map(n) for n in sketch.label_names()) if n] if vocab.per_sketch else global_names
                prediction = finish(sketch, raster, labels, model.score(feats, labels), model, feats, None)
                scored = score_prediction(prediction, vocab, global_names, eval_size)
                result.excluded_strokes += int(sum(1 for n in (sketch.labels or ()) if n is not None and vocab.map(n) is None))
                result.evaluator.add(**scored, name=sketch.source or f"sketch {start}")
                if keep_predictions:
                    result.predictions.append(prediction)
                if on_step:
                    on_step(model.name, 1)
        reports.append(result)
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": len(sketches), **(data_info or {})}
    return EvalReport(info, reports, eval_size)
