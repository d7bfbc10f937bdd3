"""Score models on labelled sketch sets (`sketchkit eval`, training's validation), both protocols of the field.

    report = evaluate(sketches, [segmenter], vocab=Vocabulary(), eval_size=512)
    report.to_dict()["results"]["clip"]["per_sketch"]["miou"]

Protocols (sketchkit.metrics): per sketch (the CVPR 2024 paper: Acc@P, Acc@S, mIoU on each
sketch, averaged over sketches) and dataset level (CAVT, WACV 2025: one pixel and one stroke
confusion summed over the set: overall accuracy, mean class accuracy, mIoU, frequency-weighted IoU).
Geometry: `sketchkit.evaluation.scoring`. Vocabulary: `sketchkit.evaluation.vocabulary`. Every
model runs through the inference engine (labels from the vocabulary, the threshold when given);
sketches with no scorable stroke are skipped and listed (`EvalReport.skipped`).

Streaming: `sketches` may be any iterable (a generator reading files), consumed a batch at a time;
with `keep_scores=False` nothing grows with the number of sketches but the skipped names: the
confusions, exact per-sketch sums (`metrics.ExactSum`) and a bounded worst/best gallery.

Several processes (`shard`, from `sketchkit.inference.shard.join_job`): each process scores its own
share of the sketches (items given as (position, Sketch), position = the sketch's place in the whole
set), then the confusions, the per-sketch sums (the reference protocol's included), the exclusions,
the skipped names and the galleries are added over processes, so every process's report holds the
numbers one process gives for the whole set, to the bit.

Saved predictions (`save_predictions=`): one HDF5 file per model (`sketchkit.io.hdf5`, with the
eval-size maps) so `rescore` gives the same numbers without the model; one model -> the given path,
several -> `<stem>.<model><suffix>` each. File attributes: `eval_model`, `eval_model_index`,
`eval_size`, `eval_vocab`, `eval_name_map`, `eval_weights`, `eval_data`, `eval_threshold`. With
several processes each writes its part (`<file>.parts/`) and process 0 merges them in input order.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..errors import InputError, UsageError
from ..inference.engine import Engine, check_batch_size
from ..inference.shard import Shard
from ..metrics import PER_SKETCH_METRICS, ExactSum, MeanOfDefined
from ..scores import Evaluator
from ..types import Sketch
from .reference_protocol import frame_scores, score_reference
from .report import DEFAULT_EVAL_SIZE, PROTOCOLS, EvalReport, Gallery, ModelResult, PredictionRecord
from .scoring import add_scored, check_eval_size, eval_pixel_labels, eval_stroke_ids
from .vocabulary import Vocabulary


def evaluate(
    sketches: Iterable[Sketch | tuple[int, Sketch]],
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
    keep_scores: bool = True,
    shard: Shard | None = None,
    counter=None,
) -> EvalReport:
    """Run every model on every scorable sketch (in order, a batch at a time) and score both protocols.

    `sketches`: Sketch objects, or (position, Sketch) pairs (the position orders galleries and
    merged predictions; needed with several processes). Each batch is rasterized once per model view
    (the 224 px input and its eval-size ground-truth ink) for all models. `keep_predictions` keeps
    every SegmentResult of this process (`ModelResult.predictions`); `keep_scores` every per-sketch
    score (`evaluator.sketch_scores`, `records`, `reference`); `config` is copied into the report.
    `protocols`: the per-sketch and dataset protocols always run; add "reference" for the reference
    code's geometry (`reference_protocol`; classes then in sorted order). `counter`
    (`shard.counter()`) counts the scored sketches over processes (one progress bar).
    """
    vocab = vocab or Vocabulary()
    shard = shard or Shard()
    counter = counter if counter is not None else shard.counter()
    check_eval_size(eval_size)
    check_batch_size(batch_size)
    names = [s.name for s in segmenters]
    if len(set(names)) != len(names):
        raise UsageError(f"each model may be given once: {', '.join(names)}")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise UsageError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    reference = "reference" in protocols
    engines = [Engine(s, labels=vocab.policy(sort=reference), threshold=threshold, batch_size=batch_size)
               for s in segmenters]
    results = [ModelResult(s.name, s.description, Evaluator(vocab.names or [], keep_scores=keep_scores),
                           weights=s.weights, scoring=s.scoring,
                           reference_means={k: MeanOfDefined() for k in PER_SKETCH_METRICS} if reference else None)
               for s in segmenters]
    writers = _open_writers(save_predictions, segmenters, results, vocab, eval_size, threshold, data_info, overwrite,
                            shard)
    skipped: list[tuple[int, str]] = []
    count = 0
    try:
        batch: list[tuple[int, Sketch]] = []
        for position, item in enumerate(sketches):
            order, sketch = item if isinstance(item, tuple) else (position, item)
            if not vocab.scorable(sketch):
                skipped.append((order, sketch.source or f"sketch {order}"))
                continue
            _check_not_an_output(sketch, writers)
            batch.append((order, sketch))
            if len(batch) == batch_size:
                count += _score(batch, engines, results, writers, vocab, eval_size, keep_predictions, reference,
                                on_step, counter)
                batch = []
        if batch:
            count += _score(batch, engines, results, writers, vocab, eval_size, keep_predictions, reference,
                            on_step, counter)
        for writer in writers:
            if writer is not None:
                writer.close(allow_empty=True)  # nothing scored here: no file (checked for the whole set below)
    except BaseException:
        for writer in writers:
            if writer is not None:
                writer.abort()
        raise
    counter.finish()
    skipped = _reduce(shard, results, skipped, vocab, keep_scores)
    total = results[0].evaluator.count if results else 0
    if not total or not results[0].evaluator.class_names:
        _drop_parts(writers, shard)
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels in the vocabulary are needed)")
    _merge_parts(save_predictions, segmenters, writers, shard, overwrite)
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": total, **(data_info or {}),
            "classes": len(results[0].evaluator.class_names), "vocab_source": vocab.source, "skipped": len(skipped),
            "threshold": threshold}
    resolution = {s.name: s.input_size for s in segmenters}
    return EvalReport(info, results, eval_size, skipped, dict(config or {}), stroke_resolution=resolution)


def _score(batch, engines, results, writers, vocab, eval_size, keep, reference, on_step, counter) -> int:
    views: dict = {}  # (rasterize, input size) -> per sketch (raster, eval-size ids), shared by models
    for engine, result, writer in zip(engines, results, writers):
        if vocab.per_sketch:  # the index space grows with the names met (sorted at the end)
            result.evaluator.extend(sorted({vocab.map(n) for _, s in batch for n in s.label_names()} - {None}))
        _score_batch(engine, result, writer, batch, views, vocab, eval_size, keep, reference)
        if on_step:
            on_step(engine.segmenter.name, len(batch))
    counter.tick(done=len(batch))
    return len(batch)


def _score_batch(engine: Engine, result: ModelResult, writer, batch: list[tuple[int, Sketch]], views: dict,
                 vocab: Vocabulary, eval_size: int, keep: bool, reference: bool) -> None:
    """One model on one batch: encode once, decode per sketch, score at eval size, store."""
    segmenter = engine.segmenter
    global_names = result.evaluator.class_names
    key = (type(segmenter).rasterize, segmenter.input_size)
    if key not in views:
        rasters = [segmenter.rasterize(s) for _, s in batch]
        views[key] = [(r, eval_stroke_ids(s, r.transform, eval_size)) for (_, s), r in zip(batch, rasters)]
    prepared = [engine.prepare(s, raster=raster) for (_, s), (raster, _) in zip(batch, views[key])]
    # methods that read ground truth (the oracle) see the labels renamed into the vocabulary
    features = engine.encode([replace(p, sketch=vocab.model_input(p.sketch)) for p in prepared])
    for (order, _), item, feats, (_, ids) in zip(batch, prepared, features, views[key]):
        prediction = engine.decode(item, feats)
        pixels = eval_pixel_labels(prediction, ids, segmenter=segmenter, features=feats)
        name = item.sketch.source or f"sketch {order}"
        add_scored(result, item.sketch, prediction.labels, prediction.votes.labels, pixels, ids,
                   item.raster.transform, vocab, global_names, name, order=order)
        if reference:
            view = _reference_view(views, item.sketch, order)
            score = score_reference(prediction, view, vocab.true_names(item.sketch), sorted(item.labels),
                                    frame_scores(prediction, view, segmenter, feats), name)
            for metric in PER_SKETCH_METRICS:
                result.reference_means[metric].add(getattr(score, metric))
            if result.evaluator.keep_scores:
                result.reference.append(score)
        if result.evaluator.keep_scores:
            result.orders.append(order)
        if keep:
            result.predictions.append(prediction)
        if writer is not None:
            writer.add(prediction, ids, pixels, unit=order)
    if writer is not None:
        writer.flush()


def _reference_view(views: dict, sketch: Sketch, index: int):
    """The sketch's reference view (frame, footprints), drawn once per batch for every model."""
    from ..reference import reference_input

    key = ("reference", index)
    if key not in views:
        views[key] = reference_input(sketch)
    return views[key]


# ---- several processes: one report ------------------------------------------------------------------------------


def _reduce(shard: Shard, results: list[ModelResult], skipped: list[tuple[int, str]], vocab: Vocabulary,
            keep_scores: bool) -> list[str]:
    """Add every process's scores into each ModelResult (one process: put the classes in their final order).
    Returns the skipped sketches' names in input order."""
    for result in results:
        evaluator = result.evaluator
        local_names = list(evaluator.class_names)
        every = shard.gather(local_names)
        final = list(vocab.names) if not vocab.per_sketch else sorted(set().union(*map(set, every)))
        lookup = evaluator.reorder(final + [n for n in local_names if n not in final])
        result.gallery.remap(lookup)
        result.records = [PredictionRecord(r.sketch, r.transform, lookup[r.pred_strokes], lookup[r.true_strokes])
                          for r in result.records]
        if not shard.distributed:
            continue
        evaluator.merge_states(shard.gather(evaluator.state()), final)
        result.excluded_classes = sum((Counter(c) for c in shard.gather(dict(result.excluded_classes))), Counter())
        result.excluded_strokes = sum(shard.gather(result.excluded_strokes))
        galleries = shard.gather(result.gallery)
        result.gallery = Gallery(result.gallery.count)
        result.gallery.merge(galleries)
        if result.reference_means is not None:
            shares = shard.gather({k: (m.sum.partials, m.count) for k, m in result.reference_means.items()})
            for key, mean in result.reference_means.items():
                mean.sum, mean.count = ExactSum(), 0
                for share in shares:
                    mean.sum += ExactSum(share[key][0])
                    mean.count += share[key][1]
        if keep_scores:
            _restore_kept(result, shard.gather(_kept(result)))
    everything = [s for part in shard.gather(skipped) for s in part] if shard.distributed else skipped
    return [name for _, name in sorted(everything, key=lambda item: item[0])]


def _kept(result: ModelResult) -> list:
    """(order, SketchScore, PredictionRecord, reference SketchScore | None) per kept sketch of this process."""
    references = result.reference or [None] * len(result.records)
    return list(zip(result.orders, result.evaluator.sketch_scores, result.records, references))


def _restore_kept(result: ModelResult, kept: list[list]) -> None:
    rows = sorted((row for part in kept for row in part), key=lambda row: row[0])
    result.orders = [row[0] for row in rows]
    result.evaluator.sketch_scores = [row[1] for row in rows]
    result.records = [row[2] for row in rows]
    result.reference = [row[3] for row in rows if row[3] is not None]


# ---- saved predictions ------------------------------------------------------------------------------------------


def _open_writers(path, segmenters, results, vocab, eval_size, threshold, data_info, overwrite, shard: Shard) -> list:
    """One PredictionWriter per model when `path` is given (else Nones): the model's file, or with several
    processes this process's part of it (`<file>.parts/r<rank>.h5`)."""
    if path is None:
        return [None] * len(segmenters)
    from ..files import check_output_path, check_outside_inputs
    from ..io.hdf5 import PredictionWriter, prediction_paths

    paths = prediction_paths(path, [s.name for s in segmenters])
    for p in paths.values():
        check_outside_inputs(p, [(data_info or {}).get("path")])
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        check_output_path(p, [], overwrite)
    data_attr = json.dumps({k: v for k, v in (data_info or {}).items() if k in ("path", "split", "layout", "fingerprint")})
    writers = []
    try:
        for i, (segmenter, result) in enumerate(zip(segmenters, results)):
            attrs = {"eval_model": segmenter.name, "eval_model_index": i, "eval_size": eval_size, **vocab.to_attrs(),
                     "eval_weights": json.dumps(result.weights), "eval_data": data_attr, "eval_threshold": threshold}
            target = Path(paths[segmenter.name])
            if shard.distributed:
                target = _parts(target) / f"r{shard.rank:05d}.h5"
                target.parent.mkdir(parents=True, exist_ok=True)
            writer = PredictionWriter(target, attrs, overwrite=overwrite or shard.distributed)
            writer.final = Path(paths[segmenter.name])
            writers.append(writer)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return writers


def _parts(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _check_not_an_output(sketch: Sketch, writers) -> None:
    """A prediction file may not be one of the sketches it scores (it would replace it)."""
    if sketch.source is None:
        return
    for writer in writers:
        if writer is not None:
            from ..files import _same_file

            if _same_file(Path(writer.final), Path(sketch.source)):
                raise UsageError(f"refusing to overwrite input {sketch.source} with output {writer.final}")


def _merge_parts(path, segmenters, writers, shard: Shard, overwrite: bool) -> None:
    """Several processes: process 0 merges the parts of each prediction file (in input order) and removes them."""
    if path is None or not shard.distributed:
        return
    if shard.is_main:  # every process published its part before its counter finished
        import shutil

        from ..io.hdf5_merge import merge_results_h5

        for writer in writers:
            parts = sorted(_parts(writer.final).glob("r*.h5"))
            merge_results_h5(parts, writer.final, overwrite=overwrite)
            shutil.rmtree(_parts(writer.final), ignore_errors=True)


def _drop_parts(writers, shard: Shard) -> None:
    if shard.distributed and shard.is_main:
        import shutil

        for writer in writers:
            if writer is not None:
                shutil.rmtree(_parts(writer.final), ignore_errors=True)
