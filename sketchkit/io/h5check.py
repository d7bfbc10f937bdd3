"""The one gate every HDF5 file sketchkit reads passes through (results, predictions, merge inputs).

A results file comes from strangers (`eval --predictions`, `h5 merge`), so before a byte of data is read
`open_h5` refuses what sketchkit never writes and what could read other files or exhaust memory: links
other than plain (hard) links, datasets stored in external files or assembled from others (virtual),
filters other than gzip / lzf / shuffle / fletcher32, chunks over MAX_H5_CHUNK_BYTES and datasets
declaring more than MAX_H5_DATASET_BYTES. Data is then read through `read_array` / `read_rows`, which check
the dtype and shape first and refuse a single read over MAX_H5_READ_BYTES (a gzip bomb inflates only
after these checks, one bounded piece at a time). `check_stored` checks the values of one sketch read
back (finite numbers, indices inside their tables, shapes that agree). Every refusal is one InputError
naming the file and the dataset.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_H5_CHUNK_BYTES = 64 * 2**20
"""Largest chunk (uncompressed) of any dataset: a 4096 x 4096 int32 map (64 MiB)."""
MAX_H5_READ_BYTES = 2**30
"""Largest piece read at once (1 GiB): a whole per-sketch dataset, or a block of rows of a column."""
MAX_H5_DATASET_BYTES = 256 * 2**30
"""Largest dataset a file may declare (256 GiB uncompressed; the columns of a very large run)."""
MAX_MAP_SIZE = 8192
"""Largest side of a stored map (raster, labels, scores, eval maps), as `raster --size`."""
MAX_COORDINATE = 1e7
ALLOWED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
"""The HDF5 filters sketchkit writes; any other (szip, scale-offset, n-bit, a plugin) is refused."""


def open_h5(path: str | os.PathLike):
    """An open, checked h5py.File (read-only); InputError when missing, not HDF5, or unsafe (module doc)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError("no such results file", path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not an HDF5 file ({exc.__class__.__name__})", path) from None
    try:
        check_storage(h5, path)
    except BaseException:
        h5.close()
        raise
    return h5


def check_storage(h5, path: Path) -> None:
    """Refuse non-hard links and unsafe datasets anywhere in the file (before any data is read)."""
    import h5py

    def link(name: str, info) -> InputError | None:  # a value returned stops the visit; raised after it
        if isinstance(info, h5py.ExternalLink):
            return InputError(f"/{name} is an external link (to {info.filename}); sketchkit reads no other file", path)
        if isinstance(info, h5py.SoftLink):
            return InputError(f"/{name} is a soft link (to {info.path}); results files hold plain objects only", path)
        return None

    def item(name: str, obj) -> InputError | None:
        try:
            if isinstance(obj, h5py.Dataset):
                check_dataset(obj, path)
        except InputError as exc:
            return exc
        return None

    problem = h5.visititems_links(link) or h5.visititems(item)
    if problem is not None:
        raise problem


def check_layout(h5, path: Path, columnar: bool) -> None:
    """/sketches holds datasets (columnar, format 3) or groups of datasets (format 2), as sketchkit writes it:
    a group where a dataset belongs, or the reverse, is refused before any reader indexes it."""
    import h5py

    sketches = h5.get("sketches")
    if sketches is None:
        return  # each reader names what is missing
    if not isinstance(sketches, h5py.Group):
        raise InputError("malformed results file: /sketches is a dataset, not a group", path)
    for obj in sketches.values():
        _expect(obj, h5py.Dataset if columnar else h5py.Group, path)
        if not columnar:
            for inner in obj.values():
                _expect(inner, h5py.Dataset, path)


def _expect(obj, kind: type, path: Path) -> None:
    if not isinstance(obj, kind):
        raise InputError(f"malformed results file: {obj.name} is a {type(obj).__name__.lower()}, not a "
                         f"{kind.__name__.lower()}", path)


def check_dataset(ds, path: Path) -> None:
    """Storage checks of one dataset: not external, not virtual, known filters, bounded chunk and size."""
    where = ds.name
    if ds.is_virtual:
        raise InputError(f"{where} is a virtual dataset (data from other files); sketchkit refuses them", path)
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        raise InputError(f"{where} is stored in an external file; sketchkit reads no other file", path)
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in ALLOWED_FILTERS:
            raise InputError(f"{where} uses HDF5 filter {code}; sketchkit reads only "
                             f"{', '.join(ALLOWED_FILTERS.values())}", path)
    itemsize = ds.dtype.itemsize
    if ds.chunks is not None and math.prod(ds.chunks) * itemsize > MAX_H5_CHUNK_BYTES:
        raise InputError(f"{where} has chunks of {_mib(math.prod(ds.chunks) * itemsize)}, more than the "
                         f"{_mib(MAX_H5_CHUNK_BYTES)} sketchkit inflates", path)
    if math.prod(ds.shape or ()) * itemsize > MAX_H5_DATASET_BYTES:
        raise InputError(f"{where} declares {_mib(math.prod(ds.shape) * itemsize)}, more than the "
                         f"{_mib(MAX_H5_DATASET_BYTES)} sketchkit accepts", path)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


_KINDS = {"number": "biuf", "int": "iu", "text": "OSU"}


def _check_kind(ds, path: Path, kind: str, ndim: int | None) -> None:
    import h5py

    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"malformed results file: {ds.name} is a {type(ds).__name__.lower()}, not a dataset", path)
    if ds.dtype.kind not in _KINDS[kind]:
        raise InputError(f"{ds.name} holds {ds.dtype}, not {'text' if kind == 'text' else kind + 's'}", path)
    if ndim is not None and len(ds.shape) != ndim:
        raise InputError(f"{ds.name} has shape {ds.shape}, expected {ndim} dimension(s)", path)


def read_array(group, name: str, path: Path, *, kind: str = "number", ndim: int | None = None) -> np.ndarray:
    """A whole dataset `group[name]`, after its dtype, dimensions and byte size are checked."""
    if name not in group:
        raise InputError(f"malformed results file: {group.name.rstrip('/')}/{name} is missing", path)
    ds = group[name]
    _check_kind(ds, path, kind, ndim)
    _check_read(ds, math.prod(ds.shape or ()), path)
    return ds[()]


def read_rows(ds, start: int, stop: int, path: Path, *, kind: str = "number") -> np.ndarray:
    """Rows start:stop of a column, checked like `read_array` (the rows must exist)."""
    _check_kind(ds, path, kind, None)
    if not ds.shape or start < 0 or stop > ds.shape[0]:
        raise InputError(f"{ds.name} has {ds.shape[0] if ds.shape else 0} rows; rows {start}:{stop} were expected", path)
    _check_read(ds, (stop - start) * math.prod(ds.shape[1:]), path)
    return ds[start:stop]


def _check_read(ds, count: int, path: Path) -> None:
    if count * ds.dtype.itemsize > MAX_H5_READ_BYTES:
        raise InputError(f"{ds.name}: reading {_mib(count * ds.dtype.itemsize)} at once is more than the "
                         f"{_mib(MAX_H5_READ_BYTES)} sketchkit reads", path)


def read_floats_attr(group, name: str, count: int, path: Path) -> np.ndarray:
    """A numeric attribute of exactly `count` finite values."""
    value = group.attrs.get(name)
    if value is None:
        raise InputError(f"malformed results file: attribute {name!r} of {group.name} is missing", path)
    try:
        values = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{group.name}: attribute {name!r} is not numbers", path) from None
    if values.size != count:
        raise InputError(f"{group.name}: attribute {name!r} has {values.size} values, not {count}", path)
    return values


def read_int_attr(group, name: str, path: Path, low: int, high: int) -> int:
    """An attribute holding one whole number in low..high."""
    value = read_floats_attr(group, name, 1, path)[0]
    if not math.isfinite(value) or value != int(value) or not low <= value <= high:
        raise InputError(f"{group.name}: attribute {name!r} is {value}, not a whole number in {low}..{high}", path)
    return int(value)


def read_json_attr(group, name: str, path: Path, kinds: tuple[type, ...]):
    """An attribute holding JSON text of one of `kinds` (dict, list, str, type(None)), parsed; None when absent."""
    from .jsontext import load_json

    value = group.attrs.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, bytes)):
        raise InputError(f"{group.name}: attribute {name!r} is not text", path)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    parsed = load_json(text, path, where=f"attribute {name!r}: ")
    if not isinstance(parsed, kinds):
        raise InputError(f"{group.name}: attribute {name!r} is not {' or '.join(_JSON_KINDS[k] for k in kinds)}", path)
    return parsed


_JSON_KINDS = {dict: "a JSON object", list: "a JSON list", str: "a JSON string", type(None): "null"}


def check_map_size(size: float, path: Path, where: str) -> int:
    if not math.isfinite(size) or size != int(size) or not 1 <= size <= MAX_MAP_SIZE:
        raise InputError(f"{where}: map size {size} is not a whole number in 1..{MAX_MAP_SIZE}", path)
    return int(size)


def _in_range(values: np.ndarray, low: int, high: int, path: Path, where: str, what: str) -> None:
    """Every value in [low, high) (integers indexing a table)."""
    if values.size and (values.min() < low or values.max() >= high):
        bad = values.max() if values.max() >= high else values.min()
        raise InputError(f"{where}: {what} {int(bad)} is outside {low}..{high - 1}", path)


def _finite(values: np.ndarray, path: Path, where: str, what: str, low=-np.inf, high=np.inf) -> None:
    if values.size and not (np.isfinite(values).all() and values.min() >= low and values.max() <= high):
        raise InputError(f"{where}: {what} holds non-finite or out-of-range values (NaN, infinity or "
                         f"outside {low}..{high})", path)


def check_stored(item, path: Path, where: str) -> None:
    """Shapes and values of one StoredResult read back (shared by every format's reader)."""
    strokes, classes = len(item.strokes), len(item.labels)
    t = item.transform
    _finite(np.array([t.scale, t.offset_x, t.offset_y]), path, where, "transform", -MAX_COORDINATE * 1e3,
            MAX_COORDINATE * 1e3)
    if not t.scale > 0:
        raise InputError(f"{where}: transform scale {t.scale} is not positive", path)
    size = check_map_size(t.size, path, where)
    _finite(np.array(item.canvas), path, where, "canvas", 0, MAX_COORDINATE)
    for stroke in item.strokes:
        _finite(stroke, path, where, "points", -MAX_COORDINATE, MAX_COORDINATE)
    per_stroke = {"stroke_labels": item.stroke_labels, "stroke_confidence": item.stroke_confidence,
                  "stroke_top": item.stroke_top, "stroke_widths": item.stroke_widths, "instance_ids": item.instance_ids}
    for name, values in per_stroke.items():
        if values is not None and (values.ndim < 1 or len(values) != strokes or (name == "stroke_top") != (values.ndim == 2)):
            raise InputError(f"{where}: {name} has shape {values.shape}; the sketch has {strokes} strokes", path)
    if item.gt_labels is not None and len(item.gt_labels) != strokes:
        raise InputError(f"{where}: gt_labels has {len(item.gt_labels)} entries; the sketch has {strokes} strokes", path)
    _in_range(item.stroke_labels, -1, classes, path, where, "stroke_labels: class")
    _in_range(item.stroke_top, -1, classes, path, where, "stroke_top: class")
    _finite(item.stroke_confidence, path, where, "stroke_confidence", 0.0, 1.0)
    if item.stroke_widths is not None:
        _finite(item.stroke_widths, path, where, "stroke_widths", 0, MAX_COORDINATE)
    for name, values in (("pixel_labels", item.pixel_labels), ("stroke_ids", item.stroke_ids), ("raster", item.raster)):
        if values.shape != (size, size):
            raise InputError(f"{where}: {name} has shape {values.shape}, not the transform's {size} x {size}", path)
    if item.scores.shape != (classes, size, size):
        raise InputError(f"{where}: scores have shape {item.scores.shape}, not ({classes}, {size}, {size})", path)
    _in_range(item.pixel_labels, -1, classes, path, where, "pixel_labels: class")
    _in_range(item.stroke_ids, -1, strokes, path, where, "stroke_ids: stroke")
    _finite(item.scores, path, where, "scores")


def check_eval_maps(ids: np.ndarray, pixels: np.ndarray, size: int, classes: int, strokes: int, path: Path,
                    where: str) -> None:
    """The eval-size maps `eval --save-predictions` stores beside a sketch."""
    if ids.shape != (size, size) or pixels.shape != (size, size):
        raise InputError(f"malformed results file: {where} eval maps are not {size} x {size}", path)
    _in_range(ids, -1, strokes, path, where, "eval_stroke_ids: stroke")
    _in_range(pixels, -1, classes, path, where, "eval_pixel_labels: class")
