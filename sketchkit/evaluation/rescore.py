"""Re-score saved predictions (HDF5 written by `evaluate(save_predictions=...)` or `segment --format h5`)
without any model: the numbers of the original run, exactly, when the stored eval-size maps match."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError, UsageError
from ..io.hdf5 import decode_text, file_attrs, read_results_h5, stored_eval_maps
from ..scores import Evaluator
from ..types import BACKGROUND
from .report import DEFAULT_EVAL_SIZE, EvalReport, ModelResult, dataset_fingerprint
from .scoring import add_scored, check_eval_size, eval_pixel_labels, eval_stroke_ids
from .vocabulary import Vocabulary


def find_prediction_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files to re-score: each existing path as given; a missing `NAME.h5` stands for the
    `NAME.<model>.h5` files `save_predictions="NAME.h5"` wrote for several models (in their
    original model order). InputError when neither exists."""
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
            continue
        stem, suffix = (path.stem, path.suffix) if path.suffix else (path.name, ".h5")
        siblings = sorted(path.parent.glob(f"{stem}.*{suffix}")) if path.parent.is_dir() else []
        found = []
        for sibling in siblings:
            try:
                attrs = file_attrs(sibling)
            except InputError:  # not a (safe) results file: not one of the per-model files
                continue
            if "eval_model" in attrs and sibling.name == f"{stem}.{decode_text(attrs['eval_model'])}{suffix}":
                found.append((int(attrs.get("eval_model_index", 0)), sibling))
        if not found:
            raise InputError("no such predictions file (nor per-model files saved under this name)", path)
        files.extend(p for _, p in sorted(found, key=lambda item: (item[0], item[1].name)))
    return files


def rescore(
    paths: Sequence[str | os.PathLike],
    *,
    vocab: Vocabulary | None = None,
    eval_size: int | None = None,
    limit: int | None = None,
    on_step: Callable[[str, int], None] | None = None,
    config: dict | None = None,
) -> EvalReport:
    """Per-model results from saved prediction files (one model per file), without any model.

    vocab: default the one the file records (else per-sketch). eval_size: default the size the
    file's eval maps were made at (else DEFAULT_EVAL_SIZE). limit: the first N sketches of each
    file. Ground truth comes from the stored sketches' gt_labels; files without them are refused.
    """
    if not paths:
        raise UsageError("no prediction files given")
    loaded = [_load(Path(raw), limit) for raw in paths]
    vocab = vocab or _recorded_vocabulary(loaded)
    if eval_size is None:
        sizes = {int(attrs["eval_size"]) for _, _, attrs, _ in loaded if "eval_size" in attrs}
        eval_size = sizes.pop() if len(sizes) == 1 else DEFAULT_EVAL_SIZE
    check_eval_size(eval_size)
    all_sketches = [s.to_sketch() for _, stored, _, _ in loaded for s in stored]
    global_names = _global_names(loaded, all_sketches, vocab)
    results, skipped, used_names = [], [], set()
    for path, stored, attrs, maps in loaded:
        name = decode_text(attrs.get("eval_model", "")) or path.stem
        name = path.stem if name in used_names else name
        if name in used_names:
            raise UsageError(f"two prediction files for model {name!r}")
        used_names.add(name)
        weights = json.loads(decode_text(attrs["eval_weights"])) if "eval_weights" in attrs else None
        result = ModelResult(name, stored[0].model, Evaluator(global_names), weights=weights, scoring=stored[0].scoring)
        skipped += _score_file(result, stored, maps, vocab, eval_size, global_names, on_step)
        results.append(result)
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": max(len(r.evaluator.sketch_scores) for r in results),
            **_data_info(loaded, all_sketches), "predictions": [str(p) for p, _, _, _ in loaded],
            "classes": len(global_names), "vocab_source": vocab.source, "skipped": len(skipped)}
    return EvalReport(info, results, eval_size, skipped, dict(config or {}))


def _load(path: Path, limit: int | None) -> tuple:
    """(path, stored results, file attributes, stored eval maps) of one predictions file."""
    stored = read_results_h5(path)
    attrs = file_attrs(path)
    if limit is not None:
        stored = stored[:limit]
    if not stored:
        raise InputError("the results file holds no sketches", path)
    if all(s.gt_labels is None for s in stored):
        raise InputError("the results file has no ground-truth labels (gt_labels) to score against", path)
    return path, stored, attrs, stored_eval_maps(path, stored)


def _recorded_vocabulary(loaded: list) -> Vocabulary:
    """The one vocabulary the files record (per-sketch when none does); UsageError when they differ."""
    known = [v for v in (Vocabulary.from_attrs(attrs, path) for path, _, attrs, _ in loaded) if v is not None]
    vocab = known[0] if known else Vocabulary()
    if any(v.names != vocab.names or v.mapping != vocab.mapping for v in known):
        raise UsageError("the prediction files were scored with different vocabularies; re-score them separately "
                         "or give one vocabulary", hint="vocabulary")
    return vocab


def _global_names(loaded: list, all_sketches: list, vocab: Vocabulary) -> list[str]:
    names = vocab.class_names([s for s in all_sketches if vocab.scorable(s)])
    if vocab.per_sketch:  # predicted names no ground truth has still count (as false positives)
        predicted = {n for _, stored, _, _ in loaded for s in stored for n in s.labels if n != BACKGROUND}
        names += sorted(predicted - set(names))
    if not names:
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels in the vocabulary are needed)")
    return names


def _score_file(result: ModelResult, stored: list, maps: list, vocab: Vocabulary, eval_size: int,
                global_names: list[str], on_step) -> list[str]:
    """Score one file's sketches into `result`; returns the names of the sketches with nothing to score."""
    skipped = []
    for index, (item, eval_maps) in enumerate(zip(stored, maps)):
        sketch = item.to_sketch()
        if not vocab.scorable(sketch):
            skipped.append(f"{result.name}: {sketch.source or item.name}")
            continue
        if eval_maps is not None and eval_maps[2] == eval_size:
            ids, pixels = eval_maps[0], eval_maps[1]
        else:
            ids = eval_stroke_ids(sketch, item.transform, eval_size)
            pixels = eval_pixel_labels(item.to_segment_result(), ids)
        add_scored(result, sketch, item.labels, item.stroke_labels, pixels, ids, item.transform, vocab,
                   global_names, sketch.source or f"sketch {index}")
        if on_step:
            on_step(result.name, 1)
    return skipped


def _data_info(loaded: list, all_sketches: list) -> dict:
    """The data set the predictions were made on, as the files record it (path, split, layout, fingerprint)."""
    data_attrs = [json.loads(decode_text(attrs["eval_data"])) for _, _, attrs, _ in loaded if "eval_data" in attrs]
    fingerprints = {d.get("fingerprint") for d in data_attrs}
    first = data_attrs[0] if data_attrs else {}
    return {"path": first.get("path"), "split": first.get("split"), "layout": first.get("layout"),
            "fingerprint": fingerprints.pop() if len(fingerprints) == 1 and len(data_attrs) == len(loaded)
            else dataset_fingerprint([s.source or "" for s in all_sketches])}
