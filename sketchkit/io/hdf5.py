"""The sketchkit results HDF5 format, both directions (schema: docs/hdf5.md).

    write_results_h5(results, "test_split.h5")        # many sketches in one file, atomically
    stored = read_results_h5("test_split.h5")         # -> list[StoredResult]
    writer = PredictionWriter("preds.h5", attrs)      # eval's streaming store, a batch at a time
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

import sketchkit
from sketchkit.errors import InputError, UsageError
from sketchkit.files import atomic_path, check_free_space, check_output_path
from sketchkit.io.h5check import (MAX_H5_READ_BYTES, check_eval_maps, check_map_size, check_stored, open_h5, read_array,
                                  read_floats_attr, read_rows)
from sketchkit.results import check_result, result_sources, source_name
from sketchkit.types import Raster, SegmentResult, Sketch, StrokeVotes, Transform

H5_FORMAT = "sketchkit-results"
H5_FORMAT_VERSION = 2  # 2: stroke_top (S, K) for any top-k (version 1 wrote stroke_top3); scoring/threshold

_BIG = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def _h5_attr_value(key: str, value):
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"HDF5 attribute {key!r} must be a string, a number or a list of them, not {type(value).__name__}")


def write_results_h5(results: list[SegmentResult], path: str | os.PathLike, *, overwrite: bool = True,
                     attrs: dict | None = None) -> Path:
    """Write many results into one HDF5 file (schema: docs/hdf5.md); returns the path.

    `attrs` adds file attributes (strings, numbers or lists of them; None values are skipped);
    they may not replace the schema's own attributes. Refuses (UsageError) a path that is one of
    the sketches' source files, and an existing path when overwrite is False.
    """
    import h5py

    results = list(results)
    for result in results:
        check_result(result)
    check_output_path(path, result_sources(results), overwrite)
    models = list(dict.fromkeys(r.model for r in results))
    file_attrs = {
        "format": H5_FORMAT,
        "format_version": H5_FORMAT_VERSION,
        "sketchkit_version": sketchkit.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": "; ".join(models),
        "num_sketches": len(results),
    }
    extra = {}
    for key, value in (attrs or {}).items():
        if key in file_attrs:
            raise UsageError(f"HDF5 attribute {key!r} is reserved by the sketchkit schema")
        if value is not None:
            extra[str(key)] = _h5_attr_value(key, value)
    check_free_space(Path(path).parent, sum(_result_bytes(r) for r in results))  # HDF5 may crash on a full disk
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs.update(file_attrs)
            h5.attrs.update(extra)
            sketches = h5.create_group("sketches")
            for index, result in enumerate(results):
                _write_h5_sketch(sketches.create_group(f"{index:06d}"), result, index)
    return Path(path)


def _write_h5_sketch(group, result: SegmentResult, index: int) -> None:
    import h5py

    text = h5py.string_dtype("utf-8")
    sketch = result.sketch
    lengths = np.array([len(s) for s in sketch.strokes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    points = (np.concatenate(sketch.strokes, axis=0) if sketch.num_strokes else np.zeros((0, 2)))
    group.create_dataset("points", data=points.astype(np.float32), **(_BIG if len(points) > 1024 else {}))
    group.create_dataset("stroke_offsets", data=offsets)
    if sketch.stroke_widths is not None:
        group.create_dataset("stroke_widths", data=np.asarray(sketch.stroke_widths, dtype=np.float32))
    if sketch.labels is not None:
        group.create_dataset("gt_labels", data=["" if n is None else n for n in sketch.labels], dtype=text)
    if sketch.instance_ids is not None:
        group.create_dataset("instance_ids", data=np.asarray(sketch.instance_ids, dtype=np.int64))
    group.create_dataset("labels", data=list(result.labels), dtype=text)
    group.create_dataset("stroke_labels", data=np.asarray(result.votes.labels, dtype=np.int32))
    group.create_dataset("stroke_confidence", data=np.asarray(result.votes.confidence, dtype=np.float32))
    top = np.asarray(result.votes.top, dtype=np.int32)
    group.create_dataset("stroke_top", data=top.reshape(len(top), -1))
    f16 = np.finfo(np.float16).max
    group.create_dataset("scores", data=np.clip(result.scores, -f16, f16).astype(np.float16), **_BIG)
    group.create_dataset("pixel_labels", data=result.pixel_labels.astype(np.int32), **_BIG)
    group.create_dataset("stroke_ids", data=result.raster.stroke_ids.astype(np.int32), **_BIG)
    raster_u8 = np.rint(np.clip(result.raster.image, 0.0, 1.0) * 255.0).astype(np.uint8)
    group.create_dataset("raster", data=raster_u8, **_BIG)
    t = result.raster.transform
    group.attrs["name"] = encode_text(source_name(sketch, index))
    group.attrs["canvas"] = np.array([sketch.width, sketch.height], dtype=np.float64)
    group.attrs["transform"] = np.array([t.scale, t.offset_x, t.offset_y, t.size], dtype=np.float64)
    group.attrs["model"] = result.model
    group.attrs["scoring"] = result.scoring
    if result.threshold is not None:
        group.attrs["threshold"] = float(result.threshold)
    if sketch.source is not None:
        group.attrs["source"] = encode_text(str(sketch.source))
    if sketch.caption is not None:
        group.attrs["caption"] = sketch.caption


@dataclass(frozen=True)
class StoredResult:
    """One sketch read back from a results HDF5 file (arrays as stored; see docs/hdf5.md).

    strokes:           tuple of S (P_i, 2) float64 arrays, canvas units (stored as float32).
    stroke_widths:     (S,) float64 or None.   gt_labels: per-stroke names (None = unlabelled) or None.
    instance_ids:      (S,) int64 or None.
    labels:            the C class names.      stroke_labels (S,) int32, -1 = none.
    stroke_confidence: (S,) float32.           stroke_top (S, K) int32, -1 padded.
    scores:            (C, size, size) float32 (stored as float16).
    pixel_labels:      (size, size) int32, -1 = no ink.   stroke_ids (size, size) int32, -1 = no ink.
    raster:            (size, size) uint8, 255 = paper, 0 = ink.
    transform:         canvas -> raster mapping of the maps.   canvas: (width, height).
    scoring, threshold: how the scores were made (SegmentResult's fields of the same names).
    """

    name: str
    source: str | None
    caption: str | None
    model: str
    canvas: tuple[float, float]
    transform: Transform
    labels: tuple[str, ...]
    strokes: tuple[np.ndarray, ...]
    stroke_widths: np.ndarray | None
    gt_labels: tuple[str | None, ...] | None
    instance_ids: np.ndarray | None
    stroke_labels: np.ndarray
    stroke_confidence: np.ndarray
    stroke_top: np.ndarray
    scores: np.ndarray
    pixel_labels: np.ndarray
    stroke_ids: np.ndarray
    raster: np.ndarray
    scoring: str = "paper"
    threshold: float | None = None

    def to_sketch(self) -> Sketch:
        return Sketch(strokes=self.strokes, width=self.canvas[0], height=self.canvas[1],
                      stroke_widths=self.stroke_widths, labels=self.gt_labels, instance_ids=self.instance_ids,
                      caption=self.caption, source=self.source)

    def to_segment_result(self) -> SegmentResult:
        """Rebuild the SegmentResult (image as float32 raster / 255, scores at float16 precision)."""
        raster = Raster(image=self.raster.astype(np.float32) / 255.0, stroke_ids=self.stroke_ids,
                        transform=self.transform)
        votes = StrokeVotes(labels=self.stroke_labels, confidence=self.stroke_confidence, top=self.stroke_top)
        return SegmentResult(sketch=self.to_sketch(), raster=raster, labels=self.labels, scores=self.scores,
                             pixel_labels=self.pixel_labels, votes=votes, model=self.model, threshold=self.threshold,
                             scoring=self.scoring)


def read_sketch_h5(path: str | os.PathLike, index: int = 0) -> Sketch:
    """Sketch `index` of a results file with its *predicted* labels as the sketch's labels (as the labelled
    SVG and the result JSON read back), so `convert results.h5 out.svg` draws what the model said."""
    stored = read_results_h5(path)
    if not stored:
        raise InputError("the results file holds no sketches", path)
    item = stored[index]
    labels = tuple(item.labels[c] if c >= 0 else None for c in item.stroke_labels)
    sketch = item.to_sketch()
    return Sketch(strokes=sketch.strokes, width=sketch.width, height=sketch.height, stroke_widths=sketch.stroke_widths,
                  labels=labels if any(n is not None for n in labels) else None, instance_ids=sketch.instance_ids,
                  caption=sketch.caption, source=sketch.source)


def encode_text(text: str) -> str | bytes:
    """An HDF5 text attribute: `text`, or its bytes where it holds an undecodable file name's lone surrogates."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def decode_text(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def read_results_h5(path: str | os.PathLike) -> list[StoredResult]:
    """Read every sketch of a results file written by `write_results_h5`, in write order.

    Raises InputError when the file is missing, not HDF5, not a sketchkit results file, of a newer
    format version, or lacks a dataset the schema requires.
    """
    path = Path(path)
    with open_h5(path) as h5:
        version = _check_format(h5, path)
        if version >= COLUMNAR_VERSION:  # format 3: columns, not a group per sketch
            return list(iter_columnar(h5, path))
        groups = h5["sketches"] if "sketches" in h5 else None
        if groups is None:
            raise InputError("not a sketchkit results file (no /sketches group)", path)
        names = _group_names(groups, path)
        return [_read_h5_sketch(groups[name], path) for name in names]


def _check_format(h5, path: Path) -> int:
    """The format version of an open results file; InputError when it is not one this sketchkit reads."""
    if decode_text(h5.attrs.get("format", "")) != H5_FORMAT:
        raise InputError(f"not a sketchkit results file (file attribute format != {H5_FORMAT!r})", path)
    try:
        version = int(h5.attrs.get("format_version", 0))
    except (TypeError, ValueError):
        raise InputError("the format_version attribute is not a number", path) from None
    if version > COLUMNAR_VERSION:
        raise InputError(f"results format version {version} is newer than this sketchkit reads "
                         f"({COLUMNAR_VERSION}); upgrade sketchkit", path)
    return version


def _group_names(groups, path: Path) -> list[str]:
    try:
        return sorted(groups, key=int)
    except ValueError:
        raise InputError("malformed results file: /sketches holds a non-numeric group name", path) from None


def _read_h5_sketch(group, path: Path) -> StoredResult:
    """One format 2 sketch group, read through the checks of io/h5check.py."""
    where = group.name

    def need(name: str, kind: str = "number", ndim: int | None = None) -> np.ndarray:
        return read_array(group, name, path, kind=kind, ndim=ndim)

    def optional(name: str, kind: str = "number") -> np.ndarray | None:
        return need(name, kind, 1) if name in group else None

    offsets = need("stroke_offsets", "int", 1).astype(np.int64)
    points = need("points", ndim=2).astype(np.float64)
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(points) \
            or np.any(np.diff(offsets) < 1) or points.shape[1] != 2:
        raise InputError(f"malformed results file: {where} stroke_offsets do not split points", path)
    strokes = tuple(np.split(points, offsets[1:-1]))
    widths = optional("stroke_widths")
    gt = optional("gt_labels", "text")
    instances = optional("instance_ids")
    canvas = read_floats_attr(group, "canvas", 2, path)
    scale, offset_x, offset_y, size = read_floats_attr(group, "transform", 4, path)
    check_map_size(size, path, f"{where} transform")  # before the maps are read
    caption = group.attrs.get("caption")
    source = group.attrs.get("source")
    threshold = read_floats_attr(group, "threshold", 1, path)[0] if "threshold" in group.attrs else None
    stored = StoredResult(
        name=decode_text(group.attrs.get("name", where.rsplit("/", 1)[-1])),
        source=None if source is None else decode_text(source),
        caption=None if caption is None else decode_text(caption),
        model=decode_text(group.attrs.get("model", "")),
        canvas=(float(canvas[0]), float(canvas[1])),
        transform=Transform(float(scale), float(offset_x), float(offset_y), int(size)),
        labels=tuple(decode_text(n) for n in need("labels", "text", 1)),
        strokes=strokes,
        stroke_widths=None if widths is None else widths.astype(np.float64),
        gt_labels=None if gt is None else tuple(decode_text(n) or None for n in gt),
        instance_ids=None if instances is None else instances.astype(np.int64),
        stroke_labels=need("stroke_labels", "int", 1).astype(np.int32),
        stroke_confidence=need("stroke_confidence", ndim=1).astype(np.float32),
        stroke_top=need("stroke_top" if "stroke_top" in group else "stroke_top3", "int", 2).astype(np.int32),
        scores=need("scores", ndim=3).astype(np.float32),
        pixel_labels=need("pixel_labels", "int", 2).astype(np.int32),
        stroke_ids=need("stroke_ids", "int", 2).astype(np.int32),
        raster=need("raster", "int", 2).astype(np.uint8),
        scoring=decode_text(group.attrs.get("scoring", "paper")),
        threshold=None if threshold is None or np.isnan(threshold) else float(threshold),
    )
    check_stored(stored, path, where)
    return stored


# ---- evaluation predictions ---------------------------------------------------------------------

H5_EVAL_IDS = "eval_stroke_ids"
H5_EVAL_PIXELS = "eval_pixel_labels"



def prediction_paths(path: str | os.PathLike, model_names: Sequence[str]) -> dict[str, Path]:
    """Model name -> file: the path itself for one model, `<stem>.<model><suffix>` for several."""
    path = Path(path)
    if len(model_names) == 1:
        return {model_names[0]: path}
    suffix = path.suffix or ".h5"
    return {name: path.with_name(f"{path.stem if path.suffix else path.name}.{name}{suffix}") for name in model_names}


class PredictionWriter:
    """Streams one model's predictions into one results HDF5 file, with each sketch's eval-size maps:
    `eval_stroke_ids` (E, E) int32 (the ground-truth ink: stroke id per pixel, -1 = none),
    `eval_pixel_labels` (E, E) int16/int32 (predicted class per ink pixel, indexing the group's
    `labels`, -1 elsewhere) and the group attribute `eval_size`.

    `add` buffers; `flush` appends the buffer; `close` publishes the file atomically; `abort`
    removes the partial file. Sketches are written by `write_results_h5`, a batch per temporary
    file, and copied into the growing file, so memory holds one batch.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict, *, overwrite: bool = True):
        self.path = Path(path)
        self.attrs = attrs
        self.count = 0
        self._buffer: list[tuple[SegmentResult, np.ndarray, np.ndarray, int | None]] = []
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite=overwrite))

    def add(self, result: SegmentResult, ids: np.ndarray, pixel_labels: np.ndarray, unit: int | None = None) -> None:
        """Queue one prediction; `unit`: its place in the evaluated set (a group attribute the merge of several
        processes' parts orders by)."""
        self._buffer.append((result, ids, pixel_labels, unit))

    def flush(self) -> None:
        import h5py

        if not self._buffer:
            return
        results = [r for r, _, _, _ in self._buffer]
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
                            if decode_text(groups[name].attrs.get("name", "")) == f"sketch-{int(local)}":
                                groups[name].attrs["name"] = f"sketch-{self.count + int(local)}"
                for offset, (result, ids, pixels, unit) in enumerate(self._buffer):
                    group = groups[f"{self.count + offset:06d}"]
                    if unit is not None:
                        group.attrs["unit"] = int(unit)
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

    def close(self, *, allow_empty: bool = False) -> Path | None:
        """Publish the file; with no prediction: UsageError, or (allow_empty) no file and None."""
        self.flush()
        if self.count == 0:
            self.abort()
            if allow_empty:
                return None
            raise UsageError(f"no predictions to save in {self.path}")
        self._stack.close()
        return self.path

    def abort(self) -> None:
        self._buffer.clear()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def stored_eval_maps(path: Path, stored: Sequence[StoredResult]) -> list[tuple[np.ndarray, np.ndarray, int] | None]:
    """Per sketch group (in order) its (eval_stroke_ids, eval_pixel_labels, eval_size), or None (also for
    every sketch of a columnar file, which keeps none)."""
    out = []
    with open_h5(path) as h5:
        if is_columnar(h5):
            return [None] * len(stored)
        groups = h5["sketches"]
        for name, item in zip(_group_names(groups, path), stored):
            group = groups[name]
            if H5_EVAL_IDS in group and H5_EVAL_PIXELS in group and "eval_size" in group.attrs:
                size = check_map_size(read_floats_attr(group, "eval_size", 1, path)[0], path, group.name)
                ids = read_array(group, H5_EVAL_IDS, path, kind="int", ndim=2)
                pixels = read_array(group, H5_EVAL_PIXELS, path, kind="int", ndim=2)
                check_eval_maps(ids, pixels, size, len(item.labels), len(item.strokes), path, group.name)
                out.append((ids.astype(np.int32), pixels.astype(np.int32), size))
            else:
                out.append(None)
    return out


def file_attrs(path: Path) -> dict:
    with open_h5(path) as h5:
        return {k: h5.attrs[k] for k in h5.attrs}


# ---- format 3: the columnar layout (many sketches, compact, streamed) ----------------------------

COLUMNAR_VERSION = 3
SCORE_MODES = ("none", "fp16", "top1")
"""What a columnar file keeps of the per-pixel class scores: nothing, every class at float16, or the
best class and its score per pixel with each class's score range (see docs/hdf5.md)."""
_ROW_CHUNK = 4096  # rows of a per-sketch, per-stroke or per-label column per chunk
_POINT_CHUNK = 16384
_TEXT_CHUNK = 65536
_FLAG_WIDTHS, _FLAG_GT, _FLAG_INSTANCES = 1, 2, 4
_TEXT_COLUMNS = ("name", "source", "caption")
_MAP_COLUMNS = ("pixel_labels", "stroke_ids", "raster", "scores", "top_class", "top_score")
_CHUNK_ROWS = {**{c: 1 for c in _MAP_COLUMNS}, "points": _POINT_CHUNK,
               **{f"{c}_text": _TEXT_CHUNK for c in ("name", "source", "caption")}}


def check_score_mode(scores: str) -> str:
    if scores not in SCORE_MODES:
        raise UsageError(f"unknown score storage {scores!r}; choose from {', '.join(SCORE_MODES)}")
    return scores


class _Table:
    """Index of the short strings a column refers to by number (class names, model descriptions)."""

    def __init__(self, names=()):
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        for name in names:
            self.index(name)

    def index(self, name: str) -> int:
        found = self._index.get(name)
        if found is None:
            found = self._index[name] = len(self.names)
            self.names.append(name)
        return found


class _ColumnFile:
    """Resizable, chunked, compressed datasets under one group, appended a block at a time."""

    def __init__(self, group, compression: str):
        self.group = group
        self.options = {"compression": compression, **({"compression_opts": 4} if compression == "gzip" else {}),
                        "shuffle": True}

    def append(self, name: str, block: np.ndarray, chunk_rows: int) -> None:
        if name not in self.group:
            shape = (0, *block.shape[1:])
            self.group.create_dataset(name, shape=shape, maxshape=(None, *block.shape[1:]), dtype=block.dtype,
                                      chunks=(chunk_rows, *block.shape[1:]), **self.options)
        dataset = self.group[name]
        start = dataset.shape[0]
        dataset.resize(start + len(block), axis=0)
        if len(block):
            dataset[start:] = block


def _rows_of(blocks: list[np.ndarray], dtype, width: tuple[int, ...] = ()) -> np.ndarray:
    return np.concatenate(blocks).astype(dtype, copy=False) if blocks else np.zeros((0, *width), dtype=dtype)


def _result_bytes(result: SegmentResult) -> int:
    """About the most one result takes in an HDF5 file (uncompressed: points, float16 scores, maps)."""
    sketch = result.sketch
    return (sum(np.asarray(s).nbytes for s in sketch.strokes) + np.size(result.scores) * 2
            + np.asarray(result.pixel_labels).nbytes + np.asarray(result.raster.stroke_ids).nbytes)


class ResultsWriter:
    """Streams results into one columnar (format 3) results file, published atomically by `close`.

        with ResultsWriter("all.h5", scores="none") as writer:
            for result in results:
                writer.add(result, name="scene", order=(unit, 0))

    A row per sketch; strokes, points and labels are ragged columns (docs/hdf5.md). Rows are
    buffered `block` at a time and written then, so memory holds one block. `scores`: "none",
    "fp16" or "top1" (SCORE_MODES). `order`: (unit, index) the row's place in its run, which
    `merge_results_h5` restores when it joins several files. On any exception inside the block (or
    `abort`) the partial file is removed.
    """

    def __init__(self, path: str | os.PathLike, *, scores: str = "none", attrs: dict | None = None,
                 overwrite: bool = True, compression: str = "gzip", block: int = 32):
        import h5py

        self.path = Path(path)
        self.scores = check_score_mode(scores)
        if compression not in ("gzip", "lzf"):
            raise UsageError(f"unknown HDF5 compression {compression!r}; choose gzip or lzf")
        self.count = 0
        self.block = max(1, block)
        self._extra = {}
        for key, value in (attrs or {}).items():
            if key in _RESERVED_ATTRS:
                raise UsageError(f"HDF5 attribute {key!r} is reserved by the sketchkit schema")
            if value is not None:
                self._extra[str(key)] = _h5_attr_value(key, value)
        self._classes, self._models, self._scorings = _Table(), _Table(), _Table()
        self._size: int | None = None
        self._top_k: int | None = None
        self._pending: list[tuple[SegmentResult, str, tuple[int, int]]] = []
        self._stack = contextlib.ExitStack()
        try:
            self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite=overwrite))
            self._h5 = self._stack.enter_context(h5py.File(self._tmp, "w", libver=("v110", "latest")))
        except BaseException:
            self._stack.close()
            raise
        self._columns = _ColumnFile(self._h5.create_group("sketches"), compression)

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def add(self, result: SegmentResult, *, name: str | None = None, order: tuple[int, int] | None = None) -> None:
        """Queue one result (checked now); `name` defaults to its source's stem, `order` to its row number."""
        check_result(result)
        size = result.raster.size
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise UsageError(f"one results file holds maps of one size: {size} px after {self._size} px")
        if len(result.labels) >= np.iinfo(np.int16).max:
            raise UsageError(f"a results file holds at most {np.iinfo(np.int16).max - 1} labels per sketch")
        k = int(np.shape(result.votes.top)[1])
        self._top_k = max(self._top_k or 0, k)
        index = self.count + len(self._pending)
        self._pending.append((result, source_name(result.sketch, index) if name is None else name,
                              (index, 0) if order is None else (int(order[0]), int(order[1]))))
        if len(self._pending) >= self.block:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self.append_columns(self._columns_of(self._pending), len(self._pending))
        self._pending = []

    def append_columns(self, columns: dict[str, np.ndarray], rows: int) -> None:
        """Append `rows` rows given column by column (class, model and scoring numbers already in this
        writer's tables); `merge_results_h5` copies files this way."""
        group = self._columns.group
        if "stroke_top" in group and "stroke_top" in columns and group["stroke_top"].shape[1] != columns["stroke_top"].shape[1]:
            raise UsageError("the results hold a different number of ranked labels per stroke than the rows before them")
        check_free_space(self._tmp.parent, sum(np.asarray(block).nbytes for block in columns.values()))
        for name, block in columns.items():
            self._columns.append(name, block, _CHUNK_ROWS.get(name, _ROW_CHUNK))
        self.count += rows

    def _columns_of(self, rows) -> dict[str, np.ndarray]:
        sketches = [r.sketch for r, _, _ in rows]
        cols: dict[str, np.ndarray] = {}
        for column, values in zip(_TEXT_COLUMNS, ([n for _, n, _ in rows], [s.source or "" for s in sketches],
                                                  [s.caption or "" for s in sketches])):
            encoded = [v.encode("utf-8", "surrogateescape") for v in values]
            cols[f"{column}_text"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            cols[f"{column}_length"] = np.array([len(e) for e in encoded], dtype=np.int64)
        cols["order"] = np.array([o for _, _, o in rows], dtype=np.int64).reshape(-1, 2)
        cols["canvas"] = np.array([[s.width, s.height] for s in sketches], dtype=np.float64)
        cols["transform"] = np.array([[r.raster.transform.scale, r.raster.transform.offset_x,
                                       r.raster.transform.offset_y, r.raster.transform.size] for r, _, _ in rows],
                                     dtype=np.float64)
        cols["model"] = np.array([self._models.index(r.model) for r, _, _ in rows], dtype=np.int32)
        cols["scoring"] = np.array([self._scorings.index(r.scoring) for r, _, _ in rows], dtype=np.int32)
        cols["threshold"] = np.array([np.nan if r.threshold is None else r.threshold for r, _, _ in rows],
                                     dtype=np.float64)
        cols["flags"] = np.array([(_FLAG_WIDTHS if s.stroke_widths is not None else 0)
                                  | (_FLAG_GT if s.labels is not None else 0)
                                  | (_FLAG_INSTANCES if s.instance_ids is not None else 0) for s in sketches],
                                 dtype=np.uint8)
        cols["num_strokes"] = np.array([len(s.strokes) for s in sketches], dtype=np.int32)
        cols["num_labels"] = np.array([len(r.labels) for r, _, _ in rows], dtype=np.int32)
        # per stroke
        cols["stroke_points"] = _rows_of([np.array([len(p) for p in s.strokes]) for s in sketches], np.int32)
        cols["stroke_widths"] = _rows_of([np.full(len(s.strokes), np.nan) if s.stroke_widths is None
                                          else np.asarray(s.stroke_widths) for s in sketches], np.float32)
        cols["gt_labels"] = _rows_of([np.full(len(s.strokes), -1) if s.labels is None else
                                      np.array([-1 if n is None else self._classes.index(n) for n in s.labels])
                                      for s in sketches], np.int32)
        cols["instance_ids"] = _rows_of([np.full(len(s.strokes), -1) if s.instance_ids is None
                                         else np.asarray(s.instance_ids) for s in sketches], np.int64)
        cols["stroke_labels"] = _rows_of([np.asarray(r.votes.labels) for r, _, _ in rows], np.int16)
        cols["stroke_confidence"] = _rows_of([np.asarray(r.votes.confidence) for r, _, _ in rows], np.float32)
        k = self._top_k
        tops = []
        for r, _, _ in rows:
            top = np.asarray(r.votes.top, dtype=np.int16).reshape(r.sketch.num_strokes, -1)
            tops.append(np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1))
        cols["stroke_top"] = _rows_of(tops, np.int16, (k,))
        cols["points"] = _rows_of([np.concatenate(s.strokes) for s in sketches], np.float32, (2,))
        # per label
        cols["labels"] = np.array([self._classes.index(n) for r, _, _ in rows for n in r.labels], dtype=np.int32)
        # maps: one chunk per sketch, so reading one sketch reads one chunk of each
        cols["pixel_labels"] = np.stack([r.pixel_labels for r, _, _ in rows]).astype(np.int16)
        cols["stroke_ids"] = np.stack([r.raster.stroke_ids for r, _, _ in rows]).astype(np.int32)
        cols["raster"] = np.stack([np.rint(np.clip(r.raster.image, 0.0, 1.0) * 255.0)
                                   for r, _, _ in rows]).astype(np.uint8)
        f16 = np.finfo(np.float16).max
        size = self._size
        if self.scores == "fp16":
            cols["scores"] = _rows_of([np.clip(r.scores, -f16, f16) for r, _, _ in rows], np.float16, (size, size))
        elif self.scores == "top1":
            cols["top_class"] = np.stack([r.scores.argmax(axis=0) if len(r.labels) else np.full((size, size), -1)
                                          for r, _, _ in rows]).astype(np.int16)
            cols["top_score"] = np.stack([np.clip(r.scores.max(axis=0), -f16, f16) if len(r.labels)
                                          else np.zeros((size, size)) for r, _, _ in rows]).astype(np.float16)
            cols["score_range"] = _rows_of([np.stack([r.scores.reshape(len(r.labels), -1).min(axis=1),
                                                      r.scores.reshape(len(r.labels), -1).max(axis=1)], axis=1)
                                            for r, _, _ in rows], np.float32, (2,))
        return cols

    def close(self) -> Path:
        """Write what is queued, the tables and attributes, and publish the file; returns its path."""
        import h5py

        try:
            self.flush()
            group = self._columns.group
            text = h5py.string_dtype("utf-8")
            for name, table in (("classes", self._classes), ("models", self._models), ("scorings", self._scorings)):
                group.create_dataset(name, data=table.names, dtype=text)
            self._h5.attrs.update({
                "format": H5_FORMAT, "format_version": COLUMNAR_VERSION, "layout": "columnar",
                "sketchkit_version": sketchkit.__version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "model": "; ".join(self._models.names), "num_sketches": self.count, "scores": self.scores,
                "top_k": int(self._top_k or 0), "map_size": int(self._size or 0),
            })
            self._h5.attrs.update(self._extra)
            self._h5.close()
        except BaseException:
            self.abort()
            raise
        self._stack.close()
        return self.path

    def abort(self) -> None:
        self._pending = []
        with contextlib.suppress(Exception):
            self._h5.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


_RESERVED_ATTRS = frozenset({"format", "format_version", "layout", "sketchkit_version", "created", "model",
                             "num_sketches", "scores", "top_k", "map_size"})


def write_columnar_h5(results, path: str | os.PathLike, *, scores: str = "none", overwrite: bool = True,
                      attrs: dict | None = None, names: Sequence[str] | None = None) -> Path:
    """Write results into one columnar (format 3) file, atomically; returns the path. Refuses a path that
    is one of the sketches' source files, and an existing path when overwrite is False."""
    results = list(results)
    check_output_path(path, result_sources(results), overwrite)
    with ResultsWriter(path, scores=scores, attrs=attrs, overwrite=overwrite) as writer:
        for index, result in enumerate(results):
            writer.add(result, name=None if names is None else names[index])
    return Path(path)


def is_columnar(h5) -> bool:
    return int(h5.attrs.get("format_version", 0)) >= COLUMNAR_VERSION


_PER_ROW_COLUMNS = ("canvas", "transform", "model", "scoring", "threshold", "flags", "order", "pixel_labels",
                    "stroke_ids", "raster", "top_class", "top_score")
_PER_STROKE_COLUMNS = ("stroke_points", "stroke_widths", "gt_labels", "instance_ids", "stroke_labels",
                       "stroke_confidence", "stroke_top")
_PER_LABEL_COLUMNS = ("labels", "scores", "score_range")


class _ColumnarReader:
    """Reads the rows of an open columnar file a block at a time (offsets computed and every column's length
    checked once, through io/h5check.py)."""

    def __init__(self, h5, path: Path):
        self.path = path
        if "sketches" not in h5:
            raise InputError("not a sketchkit results file (no /sketches group)", path)
        self.g = g = h5["sketches"]
        self.count = int(read_floats_attr(h5, "num_sketches", 1, path)[0]) if "num_sketches" in h5.attrs else 0
        self.scores = decode_text(h5.attrs.get("scores", "none"))
        size = read_floats_attr(h5, "map_size", 1, path)[0] if "map_size" in h5.attrs else 1
        self.size = check_map_size(size, path, "/ map_size")
        if self.count == 0:
            return
        required = ["num_strokes", "num_labels", "stroke_points", "points", "labels", "classes", "models", "scorings",
                    "order", "canvas", "transform", "model", "scoring", "threshold", "flags", "stroke_widths",
                    "gt_labels", "instance_ids", "stroke_labels", "stroke_confidence", "stroke_top", "pixel_labels",
                    "stroke_ids", "raster", *(f"{c}_{part}" for c in _TEXT_COLUMNS for part in ("text", "length"))]
        required += {"fp16": ["scores"], "top1": ["top_class", "top_score", "score_range"]}.get(self.scores, [])
        missing = [n for n in required if n not in g]
        if missing:
            raise InputError(f"malformed results file: /sketches/{missing[0]} is missing", path)
        self.classes, self.models, self.scorings = (
            [decode_text(n) for n in read_array(g, name, path, kind="text", ndim=1)] for name in ("classes", "models", "scorings"))
        strokes = self._counts("num_strokes", 1)
        labels = self._counts("num_labels", 0)
        self.stroke_start = np.concatenate([[0], np.cumsum(strokes)])
        self.label_start = np.concatenate([[0], np.cumsum(labels)])
        stroke_points = read_array(g, "stroke_points", path, kind="int", ndim=1).astype(np.int64)
        if len(stroke_points) != self.stroke_start[-1] or (stroke_points < 1).any():
            raise InputError("malformed results file: stroke_points do not match num_strokes", path)
        self.point_start_of_stroke = np.concatenate([[0], np.cumsum(stroke_points)])
        self.text_start = {}
        for c in _TEXT_COLUMNS:
            lengths = read_array(g, f"{c}_length", path, kind="int", ndim=1).astype(np.int64)
            self.text_start[c] = np.concatenate([[0], np.cumsum(lengths)])
            if len(lengths) != self.count or (lengths < 0).any() or self.text_start[c][-1] != g[f"{c}_text"].shape[0]:
                raise InputError(f"malformed results file: /sketches/{c}_length does not split {c}_text", path)
        self._check_lengths()

    def _counts(self, name: str, least: int) -> np.ndarray:
        values = read_array(self.g, name, self.path, kind="int", ndim=1).astype(np.int64)
        if len(values) != self.count or (values < least).any():
            raise InputError(f"malformed results file: /sketches/{name} does not match num_sketches", self.path)
        return values

    def _check_lengths(self) -> None:
        """Every column has one row per sketch, stroke, label or point, and maps of map_size."""
        g, size = self.g, self.size
        rows = {**{c: self.count for c in _PER_ROW_COLUMNS}, **{c: self.stroke_start[-1] for c in _PER_STROKE_COLUMNS},
                **{c: self.label_start[-1] for c in _PER_LABEL_COLUMNS}, "points": self.point_start_of_stroke[-1]}
        for name, count in rows.items():
            if name in g and (not g[name].shape or g[name].shape[0] != count):
                raise InputError(f"/sketches/{name} has shape {g[name].shape}, expected {count} rows", self.path)
        for name in ("pixel_labels", "stroke_ids", "raster", "top_class", "top_score", "scores"):
            if name in g and g[name].shape[1:] != (size, size):
                raise InputError(f"/sketches/{name} has maps of {g[name].shape[1:]}, not map_size {size} x {size}",
                                 self.path)
        for name, width in (("canvas", 2), ("transform", 4), ("order", 2), ("points", 2), ("score_range", 2)):
            if name in g and g[name].shape[1:] != (width,):
                raise InputError(f"/sketches/{name} has shape {g[name].shape}, expected rows of {width}", self.path)

    def _read(self, names, start: int, stop: int) -> dict[str, np.ndarray]:
        kinds = {"model": "int", "scoring": "int", "flags": "int", "pixel_labels": "int", "stroke_ids": "int",
                 "raster": "int", "top_class": "int", "stroke_points": "int", "gt_labels": "int", "instance_ids": "int",
                 "stroke_labels": "int", "stroke_top": "int", "labels": "int"}
        return {name: read_rows(self.g[name], start, stop, self.path, kind=kinds.get(name, "number")) for name in names}

    def rows(self, start: int, stop: int) -> list[StoredResult]:
        s0, s1 = self.stroke_start[start], self.stroke_start[stop]
        l0, l1 = self.label_start[start], self.label_start[stop]
        p0, p1 = self.point_start_of_stroke[s0], self.point_start_of_stroke[s1]
        block = self._read(("canvas", "transform", "model", "scoring", "threshold", "flags", "pixel_labels",
                            "stroke_ids", "raster"), start, stop)
        per_stroke = self._read(("stroke_widths", "gt_labels", "instance_ids", "stroke_labels", "stroke_confidence",
                                 "stroke_top"), s0, s1)
        points = read_rows(self.g["points"], p0, p1, self.path).astype(np.float64)
        labels = read_rows(self.g["labels"], l0, l1, self.path, kind="int")
        texts = {}
        for c in _TEXT_COLUMNS:
            ends = self.text_start[c]
            data = read_rows(self.g[f"{c}_text"], ends[start], ends[stop], self.path, kind="int").tobytes()
            texts[c] = [data[a - ends[start]:b - ends[start]].decode("utf-8", "surrogateescape")
                        for a, b in zip(ends[start:stop], ends[start + 1:stop + 1])]
        maps = {}
        if self.scores == "fp16":
            maps["scores"] = read_rows(self.g["scores"], l0, l1, self.path)
        elif self.scores == "top1":
            maps.update(self._read(("top_class", "top_score"), start, stop))
            maps["score_range"] = read_rows(self.g["score_range"], l0, l1, self.path)
        _in_table(labels, len(self.classes), self.path, "/sketches/labels: class")
        _in_table(per_stroke["gt_labels"], len(self.classes), self.path, "/sketches/gt_labels: class", low=-1)
        _in_table(block["model"], len(self.models), self.path, "/sketches/model: model")
        _in_table(block["scoring"], len(self.scorings), self.path, "/sketches/scoring: scoring")
        return [self._row(start + i, i, block, per_stroke, points, labels, texts, maps) for i in range(stop - start)]

    def _row(self, row, i, block, per_stroke, points, labels, texts, maps) -> StoredResult:
        s0, l0, p0 = self.stroke_start[row - i], self.label_start[row - i], self.point_start_of_stroke[self.stroke_start[row - i]]
        a, b = self.stroke_start[row] - s0, self.stroke_start[row + 1] - s0
        la, lb = self.label_start[row] - l0, self.label_start[row + 1] - l0
        offsets = self.point_start_of_stroke[self.stroke_start[row]:self.stroke_start[row + 1] + 1] - p0
        strokes = tuple(points[offsets[k]:offsets[k + 1]] for k in range(len(offsets) - 1))
        names = tuple(self.classes[c] for c in labels[la:lb])
        if len(names) * self.size ** 2 * 4 > MAX_H5_READ_BYTES:
            raise InputError(f"sketch {row} has {len(names)} classes of {self.size} x {self.size} score maps, more "
                             "than sketchkit rebuilds", self.path)
        flags = int(block["flags"][i])
        pixels = block["pixel_labels"][i].astype(np.int32)
        _in_table(pixels, len(names), self.path, f"/sketches/pixel_labels row {row}: class", low=-1)
        if self.scores == "fp16":
            score_maps = maps["scores"][la:lb].astype(np.float32)
        elif self.scores == "top1":
            _in_table(maps["top_class"][i], len(names), self.path, f"/sketches/top_class row {row}: class", low=-1)
            score_maps = _from_top1(maps["top_class"][i], maps["top_score"][i], maps["score_range"][la:lb], len(names))
        else:
            score_maps = _from_labels(pixels, len(names))
        t = block["transform"][i]
        size = check_map_size(float(t[3]), self.path, f"/sketches/transform row {row}")
        threshold = float(block["threshold"][i])
        gt = per_stroke["gt_labels"][a:b]
        stored = StoredResult(
            name=texts["name"][i], source=texts["source"][i] or None, caption=texts["caption"][i] or None,
            model=self.models[int(block["model"][i])], canvas=(float(block["canvas"][i][0]), float(block["canvas"][i][1])),
            transform=Transform(float(t[0]), float(t[1]), float(t[2]), size), labels=names, strokes=strokes,
            stroke_widths=per_stroke["stroke_widths"][a:b].astype(np.float64) if flags & _FLAG_WIDTHS else None,
            gt_labels=tuple(self.classes[c] if c >= 0 else None for c in gt) if flags & _FLAG_GT else None,
            instance_ids=per_stroke["instance_ids"][a:b].astype(np.int64) if flags & _FLAG_INSTANCES else None,
            stroke_labels=per_stroke["stroke_labels"][a:b].astype(np.int32),
            stroke_confidence=per_stroke["stroke_confidence"][a:b].astype(np.float32),
            stroke_top=per_stroke["stroke_top"][a:b].astype(np.int32), scores=score_maps, pixel_labels=pixels,
            stroke_ids=block["stroke_ids"][i].astype(np.int32), raster=block["raster"][i].astype(np.uint8),
            scoring=self.scorings[int(block["scoring"][i])], threshold=None if np.isnan(threshold) else threshold,
        )
        check_stored(stored, self.path, f"/sketches row {row}")
        return stored


def _in_table(values: np.ndarray, size: int, path: Path, what: str, low: int = 0) -> None:
    """Indices into a table of `size` names (low = -1: -1 means none)."""
    if values.size and (values.min() < low or values.max() >= size):
        bad = values.max() if values.max() >= size else values.min()
        raise InputError(f"{what} {int(bad)} is outside {low}..{size - 1}", path)


def _from_labels(pixel_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Scores stored as none: the one-hot of the predicted class at the ink (its argmax is pixel_labels)."""
    out = np.zeros((num_classes, *pixel_labels.shape), dtype=np.float32)
    rows, cols = np.nonzero(pixel_labels >= 0)
    out[pixel_labels[rows, cols], rows, cols] = 1.0
    return out


def _from_top1(top_class: np.ndarray, top_score: np.ndarray, ranges: np.ndarray, num_classes: int) -> np.ndarray:
    """Scores stored as top1: the best class keeps its score, the others sit at their class minimum, so the
    argmax and the best score are those of the full maps (each class's full range is the file's score_range,
    for min-max normalising a threshold cut)."""
    out = np.repeat(ranges[:, 0].astype(np.float32)[:, None, None], top_class.size, axis=1).reshape(
        num_classes, *top_class.shape) if num_classes else np.zeros((0, *top_class.shape), dtype=np.float32)
    rows, cols = np.nonzero(top_class >= 0)
    out[top_class[rows, cols], rows, cols] = top_score[rows, cols].astype(np.float32)
    return out


def iter_columnar(h5, path: Path, block: int = 256):
    """Every StoredResult of an open columnar file, in row order, `block` rows read at a time."""
    reader = _ColumnarReader(h5, path)
    block = max(1, min(block, MAX_H5_READ_BYTES // (16 * reader.size ** 2)))  # the maps of a block: bounded
    for start in range(0, reader.count, block):
        yield from reader.rows(start, min(reader.count, start + block))


def iter_results_h5(path: str | os.PathLike):
    """Every sketch of a results file (format 2 or 3), in order, read as it is used: memory holds one block."""
    path = Path(path)
    with open_h5(path) as h5:
        if _check_format(h5, path) < COLUMNAR_VERSION:
            yield from read_results_h5(path)
            return
        yield from iter_columnar(h5, path)


# ---- merging several results files into one -----------------------------------------------------

_PER_ROW = ("order", "canvas", "transform", "threshold", "flags", "num_strokes", "num_labels", "model", "scoring",
            "pixel_labels", "stroke_ids", "raster", "top_class", "top_score")
_PER_STROKE = ("stroke_points", "stroke_widths", "gt_labels", "instance_ids", "stroke_labels", "stroke_confidence",
               "stroke_top")
_PER_LABEL = ("labels", "scores", "score_range")


def merge_results_h5(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                     block: int = 64) -> Path:
    """Join results files into one, atomically; returns `out`.

    Columnar (format 3) files give a columnar file. When every input carries the same `job`
    attribute (the shards and parts of one run), rows are put back in their run order (the `order`
    column: the run's input position), so the shards of a 2-process run merge into the file one
    process writes; otherwise the files are concatenated in the order given. Format 2 files give a
    format 2 file, their sketch groups in the same order (`unit` group attribute, else as given).
    Class names, models and scoring rules are re-indexed into the merged tables. Memory holds
    `block` rows. Refuses mixing the formats, different score storage or map sizes, an output that
    is one of the inputs, and an existing output without `overwrite`.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no results files to merge")
    check_output_path(out, inputs, overwrite)
    files = []
    try:
        for path in inputs:
            files.append(open_h5(path))
            _check_format(files[-1], path)
            _check_all_rows(files[-1], path)  # every input whole, before the output is started
        kinds = {is_columnar(h5) for h5 in files}
        if len(kinds) > 1:
            raise UsageError("cannot merge columnar (format 3) and per-sketch-group (format 2) results files; "
                             "convert them to one format first")
        if kinds.pop():
            return _merge_columnar(files, inputs, Path(out), overwrite, block)
        return _merge_groups(files, inputs, Path(out), overwrite)
    finally:
        for h5 in files:
            h5.close()


def _check_all_rows(h5, path: Path) -> None:
    """Read every sketch of an open results file through the checks of io/h5check.py, keeping none."""
    if is_columnar(h5):
        for _ in iter_columnar(h5, path):
            pass
    elif "sketches" in h5:
        for name in _group_names(h5["sketches"], path):
            _read_h5_sketch(h5["sketches"][name], path)


def _merge_columnar(files, paths: list[Path], out: Path, overwrite: bool, block: int) -> Path:
    readers = [_ColumnarReader(h5, path) for h5, path in zip(files, paths)]
    modes = {r.scores for r in readers if r.count}
    sizes = {r.size for r in readers if r.count}
    if len(modes) > 1:
        raise UsageError(f"the files keep scores differently ({', '.join(sorted(modes))}); merge files of one kind")
    if len(sizes) > 1:
        raise UsageError(f"the files hold maps of different sizes ({', '.join(map(str, sorted(sizes)))} px)")
    top_k = max([int(h5.attrs.get("top_k", 0)) for h5 in files] + [1])
    jobs = {decode_text(h5.attrs["job"]) if "job" in h5.attrs else None for h5 in files}
    # the merged order: (part, row) pairs
    keys = []
    for part, reader in enumerate(readers):
        rows = np.arange(reader.count, dtype=np.int64)
        order = reader.g["order"][()].astype(np.int64).reshape(-1, 2) if reader.count else np.zeros((0, 2), np.int64)
        keys.append(np.column_stack([order, np.full(reader.count, part), rows]))
    table = np.concatenate(keys) if keys else np.zeros((0, 4), np.int64)
    if len(jobs) == 1 and None not in jobs:
        table = table[np.lexsort((table[:, 3], table[:, 2], table[:, 1], table[:, 0]))]
    attrs = {k: files[0].attrs[k] for k in files[0].attrs if k not in _RESERVED_ATTRS}
    writer = ResultsWriter(out, scores=modes.pop() if modes else "none", attrs=attrs, overwrite=overwrite)
    try:
        writer._top_k = top_k
        writer._size = sizes.pop() if sizes else None
        lookups = [{"classes": np.array([writer._classes.index(n) for n in r.classes] + [-1], dtype=np.int64),
                    "models": np.array([writer._models.index(n) for n in r.models] or [0], dtype=np.int64),
                    "scorings": np.array([writer._scorings.index(n) for n in r.scorings] or [0], dtype=np.int64)}
                   if r.count else {} for r in readers]
        for start in range(0, len(table), block):
            chunk = table[start:start + block]
            writer.append_columns(_merged_block(readers, lookups, chunk, top_k), len(chunk))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _merged_block(readers, lookups, chunk: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """The columns of the rows `chunk` names ((unit, index, part, row) each), in that order."""
    pieces: dict[str, list] = {}
    for part, row in chunk[:, 2:]:
        pieces.setdefault(int(part), []).append(int(row))
    loaded = {}
    for part, rows in pieces.items():
        reader, lookup = readers[part], lookups[part]
        g = reader.g
        lo, hi = min(rows), max(rows) + 1
        s0, s1 = reader.stroke_start[lo], reader.stroke_start[hi]
        l0, l1 = reader.label_start[lo], reader.label_start[hi]
        p0, p1 = reader.point_start_of_stroke[s0], reader.point_start_of_stroke[s1]
        data = {name: g[name][lo:hi] for name in _PER_ROW if name in g}
        data.update({name: g[name][s0:s1] for name in _PER_STROKE if name in g})
        data.update({name: g[name][l0:l1] for name in _PER_LABEL if name in g})
        data["points"] = g["points"][p0:p1]
        for c in _TEXT_COLUMNS:
            ends = reader.text_start[c]
            data[f"{c}_text"] = (g[f"{c}_text"][ends[lo]:ends[hi]], ends[lo:hi + 1] - ends[lo])
        data["model"] = lookup["models"][data["model"]]
        data["scoring"] = lookup["scorings"][data["scoring"]]
        data["gt_labels"] = lookup["classes"][data["gt_labels"]]  # -1 picks the trailing -1
        data["labels"] = lookup["classes"][data["labels"]]
        top = data["stroke_top"]
        if top.shape[1] < top_k:
            data["stroke_top"] = np.pad(top, ((0, 0), (0, top_k - top.shape[1])), constant_values=-1)
        loaded[part] = (lo, s0, l0, p0, data)
    out: dict[str, list] = {}
    for part, row in chunk[:, 2:]:
        reader = readers[part]
        lo, s0, l0, p0, data = loaded[int(part)]
        i = int(row) - lo
        a, b = reader.stroke_start[row] - s0, reader.stroke_start[row + 1] - s0
        la, lb = reader.label_start[row] - l0, reader.label_start[row + 1] - l0
        pa = reader.point_start_of_stroke[reader.stroke_start[row]] - p0
        pb = reader.point_start_of_stroke[reader.stroke_start[row + 1]] - p0
        for name, values in data.items():
            if name.endswith("_text"):
                text, ends = values
                out.setdefault(name, []).append(text[ends[i]:ends[i + 1]])
                out.setdefault(name.replace("_text", "_length"), []).append(np.array([ends[i + 1] - ends[i]]))
            elif name in _PER_ROW:
                out.setdefault(name, []).append(values[i:i + 1])
            elif name in _PER_STROKE:
                out.setdefault(name, []).append(values[a:b])
            elif name in _PER_LABEL:
                out.setdefault(name, []).append(values[la:lb])
            else:  # points
                out.setdefault(name, []).append(values[pa:pb])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _merge_groups(files, paths: list[Path], out: Path, overwrite: bool) -> Path:
    """Format 2 files: copy every sketch group, renumbered, into one file (in `unit` order when every group
    has that attribute, else as given)."""
    import h5py

    entries = []
    for part, h5 in enumerate(files):
        groups = h5["sketches"] if "sketches" in h5 else {}
        try:
            names = sorted(groups, key=int)
        except ValueError:
            raise InputError("malformed results file: /sketches holds a non-numeric group name", paths[part]) from None
        for position, name in enumerate(names):
            unit = groups[name].attrs.get("unit")
            entries.append((None if unit is None else int(unit), part, position, name))
    if entries and all(e[0] is not None for e in entries):
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
    models = list(dict.fromkeys(m for h5 in files for m in decode_text(h5.attrs.get("model", "")).split("; ") if m))
    check_free_space(out.parent, sum(p.stat().st_size for p in paths))
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as target:
            target.attrs.update({k: files[0].attrs[k] for k in files[0].attrs})
            target.attrs["model"] = "; ".join(models)
            target.attrs["num_sketches"] = len(entries)
            target.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            sketches = target.create_group("sketches")
            for index, (_, part, _, name) in enumerate(entries):
                sketches.copy(files[part]["sketches"][name], f"{index:06d}")
    return out
