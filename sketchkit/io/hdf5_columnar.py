"""Results HDF5 format 3: the columnar layout for many sketches (compact, streamed; schema: docs/hdf5.md).

    with ResultsWriter("all.h5", scores="none") as writer:   # one sketch at a time, in parts
        writer.add(result, name="scene_1")
    for stored in iter_columnar(h5, path): ...               # read back a block of rows at a time
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

import numpy as np

import sketchkit
from sketchkit.errors import InputError, UsageError
from sketchkit.files import atomic_path, check_free_space, check_output_path
from sketchkit.io.h5check import (MAX_H5_READ_BYTES, check_map_size, check_stored, open_h5, read_array, read_floats_attr,
                                  read_rows)
from sketchkit.results import check_result, result_sources, source_name
from sketchkit.io.hdf5 import (COLUMNAR_VERSION, H5_FORMAT, StoredResult, _check_format, _h5_attr_value, decode_text,
                               read_results_h5)
from sketchkit.types import SegmentResult, Transform


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
_COLUMN_NDIM = {**dict.fromkeys(("pixel_labels", "stroke_ids", "raster", "top_class", "top_score", "scores"), 3),
                **dict.fromkeys(("canvas", "transform", "order", "points", "score_range", "stroke_top"), 2)}
"""Dimensions of the columns that are not one value per row (every other column has one)."""


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
        for name in dict.fromkeys([*required, *_COLUMN_NDIM]):
            if name in g and len(g[name].shape) != _COLUMN_NDIM.get(name, 1):
                raise InputError(f"/sketches/{name} has shape {g[name].shape}, expected "
                                 f"{_COLUMN_NDIM.get(name, 1)} dimension(s)", path)
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


