"""Score models on labelled sketch sets (`sketchkit eval`, training's validation), both protocols of the field.

    report = evaluate(sketches, [segmenter], vocab=Vocabulary(), eval_size=512)
    report.to_dict()["results"]["clip"]["per_sketch"]["miou"]

Protocols (sketchkit.metrics): per sketch (the CVPR 2024 paper: Acc@P, Acc@S, mIoU on each
sketch, averaged over sketches) and dataset level (CAVT, WACV 2025: one pixel and one stroke
confusion summed over the set: overall accuracy, mean class accuracy, mIoU, frequency-weighted IoU).
Geometry: `sketchkit.evaluation.scoring`. Vocabulary: `sketchkit.evaluation.vocabulary`. Every
model runs through the inference engine (labels from the vocabulary, the threshold when given);
sketches with no scorable stroke are skipped and listed (`EvalReport.skipped`).

Saved predictions (`save_predictions=`): one HDF5 file per model (`sketchkit.io.hdf5`, with the
eval-size maps) so `rescore` gives the same numbers without the model; one model -> the given path,
several -> `<stem>.<model><suffix>` each. File attributes: `eval_model`, `eval_model_index`,
`eval_size`, `eval_vocab`, `eval_name_map`, `eval_weights`, `eval_data`, `eval_threshold`.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Callable, Sequence

from ..errors import InputError, UsageError
from ..inference.engine import Engine, check_batch_size
from ..metrics import Evaluator
from ..types import Sketch
from .reference_protocol import frame_scores, score_reference
from .report import DEFAULT_EVAL_SIZE, PROTOCOLS, EvalReport, ModelResult
from .scoring import add_scored, check_eval_size, eval_pixel_labels, eval_stroke_ids, split_scorable
from .vocabulary import Vocabulary


def evaluate(
    sketches: Sequence[Sketch],
    segmenters: Sequence,
    *,
    vocab: Vocabulary | None = None,
    eval_size: int = DEFAULT_EVAL_SIZE,
    batch_size: int = 16,
    threshold: float | None = None,
    data_info: dict | None = None,
    keep_predictions: bool = False,
    protocols: Sequence[str] = ("per_sketch", "dataset"),
    on_step: Callable[[str, int], None] | None = None,
    save_predictions: str | os.PathLike | None = None,
    overwrite: bool = True,
    config: dict | None = None,
) -> EvalReport:
    """Run every model on every scorable sketch (in order, a batch at a time) and score both protocols.

    Each batch is rasterized once per model view (the 224 px input and its eval-size ground-truth
    ink) for all models. `keep_predictions` keeps every SegmentResult (`ModelResult.predictions`);
    `config` is copied into the report. `protocols`: the per-sketch and dataset protocols always run;
    add "reference" for the reference code's geometry (`reference_protocol`; classes then in sorted order).
    """
    vocab = vocab or Vocabulary()
    check_eval_size(eval_size)
    check_batch_size(batch_size)
    names = [s.name for s in segmenters]
    if len(set(names)) != len(names):
        raise UsageError(f"each model may be given once: {', '.join(names)}")
    sketches, skipped = split_scorable(sketches, vocab)
    global_names = vocab.class_names(sketches)
    if not sketches or not global_names:
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels in the vocabulary are needed)")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise UsageError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    reference = "reference" in protocols
    engines = [Engine(s, labels=vocab.policy(sort=reference), threshold=threshold, batch_size=batch_size)
               for s in segmenters]
    results = [ModelResult(s.name, s.description, Evaluator(global_names), weights=s.weights, scoring=s.scoring)
               for s in segmenters]
    writers = _open_writers(save_predictions, segmenters, results, sketches, vocab, eval_size, threshold, data_info,
                            overwrite)
    try:
        for start in range(0, len(sketches), batch_size):
            batch = sketches[start : start + batch_size]
            views: dict = {}  # (rasterize, input size) -> per sketch (raster, eval-size ids), shared by models
            for engine, result, writer in zip(engines, results, writers):
                _score_batch(engine, result, writer, batch, start, views, vocab, eval_size, global_names,
                             keep_predictions, reference)
                if on_step:
                    on_step(engine.segmenter.name, len(batch))
        for writer in writers:
            if writer is not None:
                writer.close()
    except BaseException:
        for writer in writers:
            if writer is not None:
                writer.abort()
        raise
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": len(sketches), **(data_info or {}),
            "classes": len(global_names), "vocab_source": vocab.source, "skipped": len(skipped), "threshold": threshold}
    resolution = {s.name: s.input_size for s in segmenters}
    return EvalReport(info, results, eval_size, skipped, dict(config or {}), stroke_resolution=resolution)


def _score_batch(engine: Engine, result: ModelResult, writer, batch: list[Sketch], start: int, views: dict,
                 vocab: Vocabulary, eval_size: int, global_names: list[str], keep: bool, reference: bool) -> None:
    """One model on one batch: encode once, decode per sketch, score at eval size, store."""
    segmenter = engine.segmenter
    key = (type(segmenter).rasterize, segmenter.input_size)
    if key not in views:
        rasters = [segmenter.rasterize(s) for s in batch]
        views[key] = [(r, eval_stroke_ids(s, r.transform, eval_size)) for s, r in zip(batch, rasters)]
    prepared = [engine.prepare(s, raster=raster) for s, (raster, _) in zip(batch, views[key])]
    # methods that read ground truth (the oracle) see the labels renamed into the vocabulary
    features = engine.encode([replace(p, sketch=vocab.model_input(p.sketch)) for p in prepared])
    for offset, (item, feats, (_, ids)) in enumerate(zip(prepared, features, views[key])):
        prediction = engine.decode(item, feats)
        pixels = eval_pixel_labels(prediction, ids, segmenter=segmenter, features=feats)
        name = item.sketch.source or f"sketch {start + offset}"
        add_scored(result, item.sketch, prediction.labels, prediction.votes.labels, pixels, ids,
                   item.raster.transform, vocab, global_names, name)
        if reference:
            view = _reference_view(views, item.sketch, start + offset)
            result.reference.append(score_reference(
                prediction, view, vocab.true_names(item.sketch), sorted(item.labels),
                frame_scores(prediction, view, segmenter, feats), name))
        if keep:
            result.predictions.append(prediction)
        if writer is not None:
            writer.add(prediction, ids, pixels)
    if writer is not None:
        writer.flush()


def _reference_view(views: dict, sketch: Sketch, index: int):
    """The sketch's reference view (frame, footprints), drawn once per batch for every model."""
    from ..reference import reference_input

    key = ("reference", index)
    if key not in views:
        views[key] = reference_input(sketch)
    return views[key]


def _open_writers(path, segmenters, results, sketches, vocab, eval_size, threshold, data_info, overwrite) -> list:
    """One PredictionWriter per model when `path` is given (else Nones); refuses outputs over inputs."""
    if path is None:
        return [None] * len(segmenters)
    from ..files import check_output_path
    from ..io.hdf5 import PredictionWriter, prediction_paths

    paths = prediction_paths(path, [s.name for s in segmenters])
    for p in paths.values():
        check_output_path(p, [s.source for s in sketches if s.source], overwrite)
    data_attr = json.dumps({k: v for k, v in (data_info or {}).items() if k in ("path", "split", "layout", "fingerprint")})
    writers = []
    try:
        for i, (segmenter, result) in enumerate(zip(segmenters, results)):
            attrs = {"eval_model": segmenter.name, "eval_model_index": i, "eval_size": eval_size, **vocab.to_attrs(),
                     "eval_weights": json.dumps(result.weights), "eval_data": data_attr, "eval_threshold": threshold}
            writers.append(PredictionWriter(paths[segmenter.name], attrs, overwrite=overwrite))
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return writers
