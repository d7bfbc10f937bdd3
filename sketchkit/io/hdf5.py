"""The sketchkit results HDF5 format, both directions (schema: docs/hdf5.md).

    write_results_h5(results, "test_split.h5")        # many sketches in one file, atomically
    stored = read_results_h5("test_split.h5")         # -> list[StoredResult]
    writer = PredictionWriter("preds.h5", attrs)      # eval's streaming store, a batch at a time

Format 2 (a group per sketch) lives here; format 3 (columnar, for many sketches) in `hdf5_columnar`, merging in
`hdf5_merge`; every read goes through the checks of `h5check`.
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
from sketchkit.io.h5check import (MAX_MAP_SIZE, check_eval_maps, check_layout, check_map_size,
                                  check_stored, open_h5, read_array, read_floats_attr, read_int_attr, read_json_attr)
from sketchkit.results import check_result, result_sources, source_name
from sketchkit.types import Raster, SegmentResult, Sketch, StrokeVotes, Transform

H5_FORMAT = "sketchkit-results"
COLUMNAR_VERSION = 3  # format 3: the columnar layout of sketchkit.io.hdf5_columnar
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
    """Stored text as str; bytes that are not UTF-8 (a non-UTF-8 file name, a foreign file) become U+FFFD, never
    an exception (lone surrogates would pass the text rule's checks nowhere downstream)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_results_h5(path: str | os.PathLike) -> list[StoredResult]:
    """Read every sketch of a results file written by `write_results_h5`, in write order.

    Raises InputError when the file is missing, not HDF5, not a sketchkit results file, of a newer
    format version, or lacks a dataset the schema requires.
    """
    path = Path(path)
    with open_h5(path) as h5:
        version = _check_format(h5, path)
        if version >= COLUMNAR_VERSION:  # format 3: columns, not a group per sketch
            from sketchkit.io.hdf5_columnar import iter_columnar

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
    check_layout(h5, path, version >= COLUMNAR_VERSION)
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
    from sketchkit.io.hdf5_columnar import is_columnar

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


_EVAL_JSON_ATTRS = {"eval_data": (dict,), "eval_weights": (dict, type(None)), "eval_vocab": (str, list),
                    "eval_name_map": (dict,)}
"""The JSON attributes `eval --save-predictions` records, and the kinds evaluation reads them as."""


def file_attrs(path: Path) -> dict:
    """The file attributes of a results file, those evaluation reads checked (InputError naming the file):
    JSON text of their kind (`eval_data` fields: text), `eval_size` a map size."""
    with open_h5(path) as h5:
        attrs = {k: h5.attrs[k] for k in h5.attrs}
        parsed = {name: read_json_attr(h5, name, path, kinds) for name, kinds in _EVAL_JSON_ATTRS.items()}
        if "eval_size" in attrs:
            attrs["eval_size"] = read_int_attr(h5, "eval_size", path, 1, MAX_MAP_SIZE)
    if not all(isinstance(v, (str, type(None))) for v in (parsed["eval_data"] or {}).values()):
        raise InputError("/: attribute 'eval_data' holds values that are not text", path)
    return {**attrs, **{name: decode_text(attrs[name]) for name in parsed if name in attrs}}


def _result_bytes(result: SegmentResult) -> int:
    """About the most one result takes in an HDF5 file (uncompressed: points, float16 scores, maps)."""
    sketch = result.sketch
    return (sum(np.asarray(s).nbytes for s in sketch.strokes) + np.size(result.scores) * 2
            + np.asarray(result.pixel_labels).nbytes + np.asarray(result.raster.stroke_ids).nbytes)
