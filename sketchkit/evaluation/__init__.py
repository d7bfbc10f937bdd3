"""Evaluation: score segmentation methods on labelled sketch sets (`sketchkit eval`).

    from sketchkit.evaluation import Vocabulary, evaluate, load_eval_sketches, rescore
    sketches, files, layout = load_eval_sketches("friss/", split="test")
    report = evaluate(sketches, [segmenter], vocab=Vocabulary(), eval_size=512)

Modules: `vocabulary` (per-sketch or fixed class lists), `scoring` (evaluation geometry), `run`
(`evaluate`), `rescore` (saved predictions, no model), `report` (results, CSV), `data` (reading sets).
"""

from .data import load_eval_sketches
from .report import DEFAULT_EVAL_SIZE, PROTOCOLS, EvalReport, ModelResult, PredictionRecord, best_models, \
    dataset_fingerprint, report_csv
from .rescore import find_prediction_files, rescore
from .run import evaluate
from .scoring import eval_pixel_labels, eval_stroke_ids
from .vocabulary import Vocabulary

__all__ = ["DEFAULT_EVAL_SIZE", "PROTOCOLS", "EvalReport", "ModelResult", "PredictionRecord", "Vocabulary",
           "best_models", "dataset_fingerprint", "eval_pixel_labels", "eval_stroke_ids", "evaluate",
           "find_prediction_files", "load_eval_sketches", "report_csv", "rescore"]
