"""Score models on labelled sketch sets (`sketchkit eval`), both protocols of the field.

    report = evaluate(sketches, [model], vocab=Vocabulary(), eval_size=512)
    report.to_dict()["results"]["clip"]["per_sketch"]["miou"]
    report = rescore(["preds.h5"])          # the same numbers from saved predictions, no model

Protocols (sketchkit.metrics): per sketch (the CVPR 2024 paper: Acc@P, Acc@S, mIoU on each
sketch, averaged over sketches) and dataset level (CAVT, WACV 2025: one pixel and one stroke
confusion summed over the set: overall accuracy, mean class accuracy, mIoU, frequency-weighted IoU).

Resolutions: the model sees the 224 px raster. Strokes are scored from the majority vote at 224
(strokes hidden there re-voted at 4x). Pixels are scored at `eval_size` (default 512, the
reference scripts' resolution) over the ink of the sketch drawn at that size with the model
raster's framing: a model's 224 px maps are bilinearly upsampled (align_corners=False, read at the
ink pixels only), except for models that score any raster exactly (`score_at`: the oracle), which
are asked at eval size on the full stroke set, so the oracle scores 100 at every resolution.
Every result records its resolution.

Vocabulary: `per-sketch` (each sketch's own ground-truth category set is the label set, the
paper's protocol) or a fixed list of names used for every sketch. A mapping renames dataset names
first (FrISS -> QuickDraw). Strokes whose mapped class is outside a fixed list are excluded from
both protocols and reported by name and stroke count (`excluded_classes`); unlabelled strokes are
never scored; sketches with no scorable stroke are skipped and listed (`EvalReport.skipped`).

Saved predictions (`save_predictions=`): one HDF5 file per model, schema of docs/hdf5.md, so
`read_results_h5` reads them; one model -> the given path, several -> `<stem>.<model><suffix>`
each (preds.h5 -> preds.oracle.h5, preds.clip.h5). Written atomically, a batch at a time. Each
sketch group adds, at eval size E: `eval_stroke_ids` (E, E) int32 (the ground-truth ink: stroke
id per pixel, -1 = none), `eval_pixel_labels` (E, E) int16/int32 (predicted class per ink pixel,
indexing the group's `labels`, -1 elsewhere) and the attribute `eval_size`. File attributes:
`eval_model` (the --model name), `eval_size`, `eval_vocab` (JSON: "per-sketch" or the name list),
`eval_name_map` (JSON object), `eval_weights` (JSON), `eval_data` (JSON: path, split, fingerprint).
`rescore` rebuilds the per-model results from such files: strokes from the stored votes, pixels
from the stored eval-size maps, ground truth from the stored `gt_labels`: the numbers of the
original run, exactly. At another eval size, or for files without those maps (`sketchkit segment
--format h5`), pixels come from the stored 224 px maps (float16) upsampled as above.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .errors import InputError, UsageError
from .labels import load_mapping
from .metrics import Evaluator
from .predictor import BACKGROUND, MODEL_SIZE, finish
from .raster import rasterize
from .types import SegmentResult, Sketch, Transform
from .vote import bilinear_at

DEFAULT_EVAL_SIZE = 512
PROTOCOLS = ("per_sketch", "dataset")
H5_EVAL_IDS = "eval_stroke_ids"
H5_EVAL_PIXELS = "eval_pixel_labels"


# -------------------------------------------------------------------------------------- vocabulary


@dataclass
class Vocabulary:
    """None names = per-sketch vocabulary; else a fixed list with a dataset->list name mapping.

    source: where the list came from (a file path), for reports only.
    """

    names: list[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        if self.names is not None:
            self.names = list(dict.fromkeys(self.names))
            if not self.names:
                raise UsageError("the vocabulary list is empty")
        self._index = {n: i for i, n in enumerate(self.names or [])}

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

    def excluded(self, sketch: Sketch) -> Counter:
        """Dataset name -> strokes of the sketch whose class falls outside the vocabulary."""
        return Counter(n for n in (sketch.labels or ()) if n is not None and self.map(n) is None)

    def scorable(self, sketch: Sketch) -> bool:
        """True when some stroke has a class in the vocabulary."""
        return any(self.map(n) is not None for n in (sketch.labels or ()))

    def labels_for(self, sketch: Sketch) -> list[str]:
        """The label set the model is asked for: the sketch's mapped names (per-sketch) or the list."""
        if not self.per_sketch:
            return list(self.names)
        return [n for n in dict.fromkeys(self.map(n) for n in sketch.label_names()) if n is not None]

    def model_input(self, sketch: Sketch) -> Sketch:
        """The sketch with its labels mapped (outside the vocabulary: None), for models that read
        ground truth (the oracle); geometry unchanged."""
        if sketch.labels is None or (not self.mapping and self.per_sketch):
            return sketch
        return sketch.with_labels(self.map(n) for n in sketch.labels)

    def class_names(self, sketches: Sequence[Sketch]) -> list[str]:
        """The global class index space: the list, or the sorted mapped names of all sketches."""
        if not self.per_sketch:
            return list(self.names)
        return sorted({self.map(n) for s in sketches for n in s.label_names()} - {None})

    def to_attrs(self) -> dict[str, str]:
        """HDF5 file attributes recording this vocabulary (see the module docstring)."""
        return {"eval_vocab": json.dumps("per-sketch" if self.per_sketch else self.names),
                "eval_name_map": json.dumps(self.mapping, sort_keys=True)}

    @classmethod
    def from_attrs(cls, attrs, path=None) -> "Vocabulary | None":
        """The vocabulary recorded by `to_attrs`, or None when the attributes are absent."""
        if "eval_vocab" not in attrs:
            return None
        try:
            names = json.loads(_text(attrs["eval_vocab"]))
            mapping = json.loads(_text(attrs.get("eval_name_map", "{}")))
        except json.JSONDecodeError:
            raise InputError("malformed eval_vocab / eval_name_map attribute", path) from None
        if not isinstance(mapping, dict) or not (names == "per-sketch" or isinstance(names, list)):
            raise InputError("malformed eval_vocab / eval_name_map attribute", path)
        return cls(None if names == "per-sketch" else [str(n) for n in names], {str(k): str(v) for k, v in mapping.items()})


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------ report


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
class ModelResult:
    """One model's scores. `records[i]` belongs to `evaluator.sketch_scores[i]`."""

    name: str
    description: str
    evaluator: Evaluator
    excluded_strokes: int = 0
    predictions: list[SegmentResult] = field(default_factory=list)
    weights: dict | None = None
    excluded_classes: Counter = field(default_factory=Counter)
    records: list[PredictionRecord] = field(default_factory=list)


@dataclass
class EvalReport:
    data: dict
    models: list[ModelResult]
    eval_size: int
    skipped: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: {"sketchkit_version", "config", "data", "results": {model: {"per_sketch",
        "dataset", "counts", "model", "weights", "resolution", "sketches", "excluded_strokes",
        "excluded_classes", "per_category"}}}; metrics in percent, None where undefined."""
        results = {}
        for m in self.models:
            scores = m.evaluator.summary().to_dict()
            results[m.name] = {
                **scores,
                "model": m.description,
                "weights": m.weights,
                "resolution": {"pixels": self.eval_size, "strokes": MODEL_SIZE},
                "sketches": len(m.evaluator.sketch_scores),
                "excluded_strokes": m.excluded_strokes,
                "excluded_classes": dict(sorted(m.excluded_classes.items(), key=lambda kv: (-kv[1], kv[0]))),
                "per_category": m.evaluator.per_category(),
            }
        return {"sketchkit_version": __version__, "config": self.config, "data": self.data, "results": results}


CSV_COLUMNS = ("model", "protocol", "metric", "value", "resolution_px", "stroke_resolution_px", "sketches",
               "model_description", "weights", "data_fingerprint", "sketchkit_version")


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
        for protocol in PROTOCOLS:
            for metric, value in result[protocol].items():
                writer.writerow([name, protocol, metric, "" if value is None else repr(float(value)),
                                 result["resolution"]["pixels"], result["resolution"]["strokes"], result["sketches"],
                                 result["model"], weights_text, fingerprint, report.get("sketchkit_version", "")])
    return buffer.getvalue()


def dataset_fingerprint(paths: Sequence[Path]) -> str:
    """16 hex digits of SHA-256 over the file names, in order."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).name.encode() + b"\0")
    return digest.hexdigest()[:16]


def _file_digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def weights_tag(model, adapter: str | os.PathLike | None = None) -> dict | None:
    """What a model's numbers depend on: backbone, weights source and fingerprint, adapter file
    and its SHA-256 prefix. None for models without weights (the oracle)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        return None
    tag = {"backbone": encoder.config.name, "weights": getattr(encoder, "weights_source", None),
           "fingerprint": getattr(encoder, "fingerprint", None) or None, "adapter": None, "adapter_sha256": None}
    if adapter is not None and getattr(model, "name", "") == "sketchkit":
        tag.update(adapter=str(adapter), adapter_sha256=_file_digest(adapter) if Path(adapter).is_file() else None)
    return tag


# ---------------------------------------------------------------------------------------- scoring


def ground_truth_classes(sketch: Sketch, vocab: Vocabulary, names: list[str]) -> np.ndarray:
    """(S,) int64 index into `names` of each stroke's true class, -1 for unlabelled/excluded."""
    index = {n: i for i, n in enumerate(names)}
    mapped = [vocab.map(label) for label in (sketch.labels or [None] * sketch.num_strokes)]
    return np.array([index.get(n, -1) if n is not None else -1 for n in mapped], dtype=np.int64)


def eval_stroke_ids(sketch: Sketch, transform: Transform, eval_size: int) -> np.ndarray:
    """(E, E) int32 stroke id per pixel (-1 = no ink) of the sketch drawn at `eval_size` with the
    framing of `transform` (the model raster's): the ink the pixel metrics count."""
    return rasterize(sketch, eval_size, transform=transform.resized(eval_size)).stroke_ids


def eval_pixel_labels(result: SegmentResult, ids: np.ndarray, *, model=None, features=None) -> np.ndarray:
    """(E, E) int32 predicted class (index into result.labels) at each ink pixel of `ids`, -1 elsewhere.

    Models with `score_at` are asked at eval size for the full stroke set (exact); otherwise the
    result's maps are bilinearly upsampled, at the ink pixels only.
    """
    size = ids.shape[0]
    ink = ids >= 0
    out = np.full(ids.shape, -1, dtype=np.int32)
    if not ink.any():
        return out
    if model is not None and features is not None and hasattr(model, "score_at"):
        transform = result.raster.transform.resized(size)
        scores = np.asarray(model.score_at(features, list(result.labels), transform, np.arange(result.sketch.num_strokes)))
        at = scores[:, ink]
    else:
        rows, cols = np.nonzero(ink)
        at = bilinear_at(result.scores, rows, cols, size)
    out[ink] = at.argmax(axis=0)
    return out


def _add_scored(result: ModelResult, sketch: Sketch, labels: Sequence[str], stroke_labels: np.ndarray,
                pixel_labels: np.ndarray, ids: np.ndarray, transform: Transform, vocab: Vocabulary,
                global_index: dict[str, int], global_names: list[str], name: str) -> None:
    """Score one prediction given in its own label space (local indices, -1 = none)."""
    lookup = np.array([global_index.get(n, -1) for n in labels] + [-1], dtype=np.int64)
    true_strokes = ground_truth_classes(sketch, vocab, global_names)
    pred_strokes = lookup[np.asarray(stroke_labels, dtype=np.int64)]
    ink = ids >= 0
    result.evaluator.add(lookup[pixel_labels[ink]], true_strokes[ids[ink]], pred_strokes, true_strokes, name=name)
    excluded = vocab.excluded(sketch)
    result.excluded_classes.update(excluded)
    result.excluded_strokes += sum(excluded.values())
    result.records.append(PredictionRecord(sketch, transform, pred_strokes, true_strokes))


def _split_scorable(sketches: Sequence[Sketch], vocab: Vocabulary) -> tuple[list[Sketch], list[str]]:
    """(sketches with a stroke in the vocabulary, names of the others)."""
    kept = [s for s in sketches if vocab.scorable(s)]
    skipped = [s.source or f"sketch {i}" for i, s in enumerate(sketches) if not vocab.scorable(s)]
    return kept, skipped


def _check_eval_size(eval_size: int) -> None:
    if isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 16:
        raise UsageError("--eval-size must be a whole number of at least 16")


# ------------------------------------------------------------------------------- saved predictions


def prediction_paths(path: str | os.PathLike, model_names: Sequence[str]) -> dict[str, Path]:
    """Model name -> file: the path itself for one model, `<stem>.<model><suffix>` for several."""
    path = Path(path)
    if len(model_names) == 1:
        return {model_names[0]: path}
    suffix = path.suffix or ".h5"
    return {name: path.with_name(f"{path.stem if path.suffix else path.name}.{name}{suffix}") for name in model_names}


class PredictionWriter:
    """Streams one model's predictions into one results HDF5 file (see the module docstring).

    `add` buffers; `flush` appends the buffer; `close` publishes the file atomically; `abort`
    removes the partial file. Sketches are written by `write_results_h5`, a batch per temporary
    file, and copied into the growing file, so memory holds one batch.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict, *, overwrite: bool = True):
        from .files import atomic_path

        self.path = Path(path)
        self.attrs = attrs
        self.count = 0
        self._buffer: list[tuple[SegmentResult, np.ndarray, np.ndarray]] = []
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite=overwrite))

    def add(self, result: SegmentResult, ids: np.ndarray, pixel_labels: np.ndarray) -> None:
        self._buffer.append((result, ids, pixel_labels))

    def flush(self) -> None:
        import h5py

        from .write import write_results_h5

        if not self._buffer:
            return
        results = [r for r, _, _ in self._buffer]
        first = self.count == 0
        fd, part_name = tempfile.mkstemp(prefix=f".{self.path.name}.part-", dir=self.path.parent)
        os.close(fd)
        part = Path(part_name)
        try:
            write_results_h5(results, self._tmp if first else part, overwrite=True, attrs=self.attrs if first else None)
            with h5py.File(self._tmp, "a") as h5:
                groups = h5["sketches"]
                if not first:
                    with h5py.File(part, "r") as src:
                        for local in sorted(src["sketches"], key=int):
                            name = f"{self.count + int(local):06d}"
                            groups.copy(src["sketches"][local], name)
                            if _text(groups[name].attrs.get("name", "")) == f"sketch-{int(local)}":
                                groups[name].attrs["name"] = f"sketch-{self.count + int(local)}"
                for offset, (result, ids, pixels) in enumerate(self._buffer):
                    group = groups[f"{self.count + offset:06d}"]
                    wide = len(result.labels) >= np.iinfo(np.int16).max
                    group.create_dataset(H5_EVAL_IDS, data=ids.astype(np.int32), compression="gzip", compression_opts=4)
                    group.create_dataset(H5_EVAL_PIXELS, data=pixels.astype(np.int32 if wide else np.int16),
                                         compression="gzip", compression_opts=4)
                    group.attrs["eval_size"] = int(ids.shape[0])
                self.count += len(self._buffer)
                h5.attrs["num_sketches"] = self.count
        finally:
            part.unlink(missing_ok=True)
        self._buffer.clear()

    def close(self) -> Path:
        self.flush()
        if self.count == 0:
            self.abort()
            raise UsageError(f"no predictions to save in {self.path}")
        self._stack.close()
        return self.path

    def abort(self) -> None:
        self._buffer.clear()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


# ------------------------------------------------------------------------------------------ runs


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
    save_predictions: str | os.PathLike | None = None,
    overwrite: bool = True,
    config: dict | None = None,
    adapter: str | os.PathLike | None = None,
) -> EvalReport:
    """Run every model on every scorable sketch (in order, a batch at a time) and score both protocols.

    Each batch is rasterized once (224 px model input, eval-size ground-truth ink) for all models.
    `save_predictions`: a results HDF5 path (several models: one file each, `prediction_paths`).
    `keep_predictions` keeps every SegmentResult in memory (`ModelResult.predictions`).
    `config` is copied into the report; `adapter` names the adapter file for the weights tag.
    """
    vocab = vocab or Vocabulary()
    _check_eval_size(eval_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError("--batch-size must be a positive whole number")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise UsageError(f"each model may be given once: {', '.join(names)}")
    sketches, skipped = _split_scorable(sketches, vocab)
    global_names = vocab.class_names(sketches)
    if not sketches or not global_names:
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels in the vocabulary are needed)")
    global_index = {n: i for i, n in enumerate(global_names)}
    results = [ModelResult(m.name, m.description, Evaluator(global_names), weights=weights_tag(m, adapter)) for m in models]
    writers: list[PredictionWriter | None] = [None] * len(models)
    if save_predictions is not None:
        from .files import check_output_path

        paths = prediction_paths(save_predictions, names)
        for p in paths.values():
            check_output_path(p, [s.source for s in sketches if s.source], overwrite)
    try:
        if save_predictions is not None:
            data_attr = json.dumps({k: v for k, v in (data_info or {}).items()
                                    if k in ("path", "split", "layout", "fingerprint")})
            for i, (model, result) in enumerate(zip(models, results)):
                attrs = {"eval_model": model.name, "eval_model_index": i, "eval_size": eval_size, **vocab.to_attrs(),
                         "eval_weights": json.dumps(result.weights), "eval_data": data_attr}
                writers[i] = PredictionWriter(paths[model.name], attrs, overwrite=overwrite)
        for start in range(0, len(sketches), batch_size):
            batch = sketches[start : start + batch_size]
            inputs = [vocab.model_input(s) for s in batch]
            rasters = [rasterize(s, MODEL_SIZE) for s in batch]
            truth_ids = [eval_stroke_ids(s, r.transform, eval_size) for s, r in zip(batch, rasters)]
            for model, result, writer in zip(models, results, writers):
                features = model.encode(rasters, inputs)
                for offset, (sketch, raster, feats, ids) in enumerate(zip(batch, rasters, features, truth_ids)):
                    labels = vocab.labels_for(sketch)
                    prediction = finish(sketch, raster, labels, model.score(feats, labels), model, feats, None)
                    pixels = eval_pixel_labels(prediction, ids, model=model, features=feats)
                    _add_scored(result, sketch, prediction.labels, prediction.votes.labels, pixels, ids,
                                raster.transform, vocab, global_index, global_names,
                                sketch.source or f"sketch {start + offset}")
                    if keep_predictions:
                        result.predictions.append(prediction)
                    if writer is not None:
                        writer.add(prediction, ids, pixels)
                    if on_step:
                        on_step(model.name, 1)
                if writer is not None:
                    writer.flush()
        for writer in writers:
            if writer is not None:
                writer.close()
    except BaseException:
        for writer in writers:
            if writer is not None:
                writer.abort()
        raise
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": len(sketches), **(data_info or {}),
            "classes": len(global_names), "vocab_source": vocab.source, "skipped": len(skipped)}
    return EvalReport(info, results, eval_size, skipped, dict(config or {}))


def _stored_eval_maps(path: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, int] | None]:
    """Per sketch group (in order) its (eval_stroke_ids, eval_pixel_labels, eval_size), or None."""
    import h5py

    out = []
    with h5py.File(path, "r") as h5:
        groups = h5["sketches"]
        for name in sorted(groups, key=int)[:count]:
            group = groups[name]
            if H5_EVAL_IDS in group and H5_EVAL_PIXELS in group and "eval_size" in group.attrs:
                ids, pixels = group[H5_EVAL_IDS][()], group[H5_EVAL_PIXELS][()]
                size = int(group.attrs["eval_size"])
                if ids.shape != (size, size) or pixels.shape != (size, size):
                    raise InputError(f"malformed results file: {group.name} eval maps are not {size} x {size}", path)
                out.append((ids.astype(np.int32), pixels.astype(np.int32), size))
            else:
                out.append(None)
    return out


def _file_attrs(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as h5:
        return {k: h5.attrs[k] for k in h5.attrs}


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
                attrs = _file_attrs(sibling)
            except OSError:
                continue
            if "eval_model" in attrs and sibling.name == f"{stem}.{_text(attrs['eval_model'])}{suffix}":
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
    from .write import read_results_h5

    if not paths:
        raise UsageError("no prediction files given")
    loaded = []
    for raw in paths:
        path = Path(raw)
        stored = read_results_h5(path)
        attrs = _file_attrs(path)
        if limit is not None:
            stored = stored[:limit]
        if not stored:
            raise InputError("the results file holds no sketches", path)
        if all(s.gt_labels is None for s in stored):
            raise InputError("the results file has no ground-truth labels (gt_labels) to score against", path)
        loaded.append((path, stored, attrs, _stored_eval_maps(path, len(stored))))
    recorded = [Vocabulary.from_attrs(attrs, path) for path, _, attrs, _ in loaded]
    if vocab is None:
        known = [v for v in recorded if v is not None]
        vocab = known[0] if known else Vocabulary()
        if any(v.names != vocab.names or v.mapping != vocab.mapping for v in known):
            raise UsageError("the prediction files were scored with different vocabularies; re-score them separately "
                             "or pass --vocab")
    if eval_size is None:
        sizes = {int(attrs["eval_size"]) for _, _, attrs, _ in loaded if "eval_size" in attrs}
        eval_size = sizes.pop() if len(sizes) == 1 else DEFAULT_EVAL_SIZE
    _check_eval_size(eval_size)

    all_sketches = [s.to_sketch() for _, stored, _, _ in loaded for s in stored]
    global_names = vocab.class_names([s for s in all_sketches if vocab.scorable(s)])
    if vocab.per_sketch:  # predicted names no ground truth has still count (as false positives)
        predicted = {n for _, stored, _, _ in loaded for s in stored for n in s.labels if n != BACKGROUND}
        global_names += sorted(predicted - set(global_names))
    if not global_names:
        raise InputError("no labelled sketches to evaluate (ground-truth stroke labels in the vocabulary are needed)")
    global_index = {n: i for i, n in enumerate(global_names)}

    results, skipped, used_names = [], [], set()
    for path, stored, attrs, maps in loaded:
        name = _text(attrs.get("eval_model", "")) or path.stem
        if name in used_names:
            name = path.stem
        if name in used_names:
            raise UsageError(f"two prediction files for model {name!r}")
        used_names.add(name)
        weights = json.loads(_text(attrs["eval_weights"])) if "eval_weights" in attrs else None
        result = ModelResult(name, stored[0].model, Evaluator(global_names), weights=weights)
        for index, (item, eval_maps) in enumerate(zip(stored, maps)):
            sketch = item.to_sketch()
            if not vocab.scorable(sketch):
                skipped.append(f"{name}: {sketch.source or item.name}")
                continue
            if eval_maps is not None and eval_maps[2] == eval_size:
                ids, pixels = eval_maps[0], eval_maps[1]
            else:
                ids = eval_stroke_ids(sketch, item.transform, eval_size)
                pixels = eval_pixel_labels(item.to_segment_result(), ids)
            _add_scored(result, sketch, item.labels, item.stroke_labels, pixels, ids, item.transform, vocab,
                        global_index, global_names, sketch.source or f"sketch {index}")
            if on_step:
                on_step(name, 1)
        results.append(result)

    data_attrs = [json.loads(_text(attrs["eval_data"])) for _, _, attrs, _ in loaded if "eval_data" in attrs]
    fingerprints = {d.get("fingerprint") for d in data_attrs}
    info = {"eval_size": eval_size, "vocab": vocab.describe(), "count": max(len(r.evaluator.sketch_scores) for r in results),
            "path": data_attrs[0].get("path") if data_attrs else None,
            "split": data_attrs[0].get("split") if data_attrs else None,
            "layout": data_attrs[0].get("layout") if data_attrs else None,
            "fingerprint": fingerprints.pop() if len(fingerprints) == 1 and len(data_attrs) == len(loaded) else
            dataset_fingerprint([s.source or "" for s in all_sketches]),
            "predictions": [str(p) for p, _, _, _ in loaded],
            "classes": len(global_names), "vocab_source": vocab.source, "skipped": len(skipped)}
    return EvalReport(info, results, eval_size, skipped, dict(config or {}))


# ------------------------------------------------------------------------------------------ data


def load_eval_sketches(
    data: str | os.PathLike,
    *,
    split: str | None = None,
    limit: int | None = None,
    allow_pickle: bool = False,
    strict: bool = False,
    on_error: Callable[[InputError], None] | None = None,
) -> tuple[list[Sketch], list[Path], str]:
    """Read a labelled set: (sketches, files, layout name), in a deterministic order.

    Layouts: the FS-COCO segmentation test folder (`sketchkit.io.fscoco_seg`: vector_sketches/,
    classes/, captions/; `split` picks a sub-folder; object arrays need `allow_pickle`), else any
    file or folder `sketchkit.data.find_sketches` reads (FrISS/CBSC JSON with data_partitions.json
    splits, sketchkit SVG, ...). Unreadable files go to `on_error` (or raise with `strict`).
    """
    from .data import find_sketches, iter_sketches
    from .io.fscoco_seg import find_fscoco_seg, is_fscoco_seg_layout, iter_fscoco_seg

    data = Path(data)
    seg_split = split if split is not None and is_fscoco_seg_layout(data / split) else None
    if seg_split is not None or is_fscoco_seg_layout(data):
        files = find_fscoco_seg(data, split=seg_split, limit=limit)
        items, layout = iter_fscoco_seg(files, allow_pickle=allow_pickle), "fscoco-seg"
    else:
        files = find_sketches(data, split=split, limit=limit)
        items, layout = iter_sketches(files), "sketch files"
    sketches = []
    for _, item in items:
        if isinstance(item, Exception):
            if strict:
                raise item
            if on_error:
                on_error(item)
        else:
            sketches.append(item)
    return sketches, files, layout


# ------------------------------------------------------------------------------------- summaries


def best_models(report: dict, protocol: str, key: str) -> set[str]:
    """Names of the models with the highest defined value of `key` (ties: all of them)."""
    values = {n: r[protocol].get(key) for n, r in report["results"].items()}
    defined = [v for v in values.values() if v is not None and not math.isnan(v)]
    if not defined:
        return set()
    top = max(defined)
    return {n for n, v in values.items() if v is not None and v == top}


__all__ = ["DEFAULT_EVAL_SIZE", "EvalReport", "ModelResult", "PredictionRecord", "PredictionWriter", "Vocabulary",
           "best_models", "dataset_fingerprint", "eval_pixel_labels", "eval_stroke_ids", "evaluate",
           "find_prediction_files", "ground_truth_classes", "load_eval_sketches", "load_mapping",
           "prediction_paths", "report_csv", "rescore", "weights_tag"]
