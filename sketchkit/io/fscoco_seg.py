"""The FS-COCO segmentation test layout: the labelled set the CVPR 2024 paper reports on.

    root/                        (or root/<split>/, chosen with `split`)
      vector_sketches/<id>.npy   the strokes, often with per-stroke classes
      classes/<id>.json          the stroke labels (or the sketch's class list)
      captions/<id>.txt          the caption (optional)
      images/<id>.*              the photo (not read)
      all_classes.json           optional list of every class name (used only to resolve int labels)

    paths = find_fscoco_seg("fscoco-seg", split="test", limit=50)
    for path, item in iter_fscoco_seg(paths, allow_pickle=True): ...

Pickle: the public `.npy` files are object arrays, which numpy can only load by unpickling, and
unpickling runs code stored in the file. Such files are loaded only with `allow_pickle=True`
(`sketchkit eval --allow-pickle`), for trusted data; without it they raise InputError naming the
flag. Plain numeric arrays never need it (they are loaded with allow_pickle=False).

Accepted `.npy` contents (what np.load returns), checked in this order:
1. A dict (a 0-d object array holding one): the strokes under the first key of STROKE_KEYS, in
   form 2, 3 or 4; optional per-stroke labels under the first key of LABEL_KEYS ("classes"
   counts as labels only when it has one entry per stroke); optional class names under the first
   key of CLASS_KEYS (or "classes" when that is not the labels), indexed by int labels.
2. Numeric (N, >= 3) rows [x, y, pen_flag, ...] of absolute canvas points; pen_flag > 0.5 marks the
   last point of a stroke (the reference test script's `pen_state_to_strokes`). A 0-d object array
   wrapping such an array is unwrapped.
3. Numeric (S, P, >= 2): S strokes of P points each, columns x, y (others ignored).
4. A 1-D object array (or list) of S strokes: each a numeric (P, >= 2) array [x, y, ...], or a
   dict with the points under the first key of POINT_KEYS and a label under ITEM_LABEL_KEYS.

Accepted `classes/<id>.json`:
- a list with one entry per stroke: the stroke labels, in stroke order (the reference zips them
  with the strokes), names or int indices into the class list;
- an object: per-stroke labels under "stroke_labels" or "labels" (or "classes" when it has one
  entry per stroke) and class names under "class_names", "categories" or "classes";
- a list of another length while the `.npy` carries the labels: the class list.
Per-stroke labels from the JSON win over the `.npy`'s. Class lists: the JSON's, else the
`.npy`'s, else `all_classes.json`. A label that is "", null, negative or "blank_pixel" (the
reference's non-ink class) leaves its stroke unlabelled.

Labels and strokes must agree in number (InputError naming both counts), with one tolerance for
form 2: points after the last pen lift form a stroke of their own, unless the labels number
exactly one fewer, when they are dropped as the reference script drops them.

Canvas: 256 x 256, the frame the reference test script draws in, when every point lies within it;
else the ink bounds plus a margin. `Sketch.source` is the `.npy` path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sketchkit.errors import InputError, UsageError
from sketchkit.io import read_caption_file
from sketchkit.io.fscoco import load_npy, read_npy_header
from sketchkit.io.limits import read_bytes_limited
from sketchkit.io.jsontext import load_json
from sketchkit.io.strokes_json import build_sketch, split_at_lifts
from sketchkit.types import Sketch

STROKES_DIR, CLASSES_DIR, CAPTIONS_DIR = "vector_sketches", "classes", "captions"
ALL_CLASSES_FILE = "all_classes.json"
REFERENCE_CANVAS = 256.0
UNLABELLED_NAMES = frozenset({"", "blank_pixel"})

STROKE_KEYS = ("strokes", "vector_sketch", "vector", "sketch", "pen_state", "points", "data")
LABEL_KEYS = ("stroke_labels", "labels", "stroke_classes")
CLASS_KEYS = ("class_names", "categories", "all_classes")
POINT_KEYS = ("points", "stroke", "coords", "xy")
ITEM_LABEL_KEYS = ("label", "class", "category", "name")


# ------------------------------------------------------------------------------------------ layout


def is_fscoco_seg_layout(path: str | os.PathLike) -> bool:
    """True for a folder holding `vector_sketches/` and `classes/`."""
    path = Path(path)
    return path.is_dir() and (path / STROKES_DIR).is_dir() and (path / CLASSES_DIR).is_dir()


def find_fscoco_seg(root: str | os.PathLike, *, split: str | None = None, limit: int | None = None) -> list[Path]:
    """The `.npy` files of a layout folder, sorted by their path under `vector_sketches/`.

    `split` picks `root/<split>/` (the layout has no partition file). InputError when the folder
    is not the layout or holds no `.npy`; UsageError for a negative limit.
    """
    root = Path(root)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit must be a non-negative whole number, got {limit!r}")
    if split is not None:
        root = root / split
    if not is_fscoco_seg_layout(root):
        raise InputError(f"not the FS-COCO segmentation layout (needs {STROKES_DIR}/ and {CLASSES_DIR}/)", root)
    base = root / STROKES_DIR
    files = []
    for directory, subdirs, names in os.walk(base):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        files.extend(Path(directory) / n for n in names if n.lower().endswith(".npy") and not n.startswith("."))
    files.sort(key=lambda p: p.relative_to(base).parts)
    if not files:
        raise InputError(f"no .npy files in {STROKES_DIR}/", root)
    return files if limit is None else files[:limit]


def _layout_root(npy_path: Path) -> tuple[Path, Path]:
    """(layout root, path of the sketch under vector_sketches/ without suffix)."""
    for parent in npy_path.parents:
        if parent.name == STROKES_DIR:
            return parent.parent, npy_path.relative_to(parent).with_suffix("")
    raise InputError(f"not inside a {STROKES_DIR}/ folder of the FS-COCO segmentation layout", npy_path)


# ----------------------------------------------------------------------------------------- loading


def _load_npy(path: Path, allow_pickle: bool) -> object:
    """np.load of the file; object arrays only with allow_pickle (else InputError with the "pickle" hint)."""
    data = read_bytes_limited(path)
    _, dtype = read_npy_header(data, path)
    if dtype.hasobject and not allow_pickle:
        raise InputError("the .npy holds Python objects, which numpy loads by unpickling (that can run code "
                         "from the file)", path, hint="pickle")
    try:
        return load_npy(data, allow_pickle=bool(dtype.hasobject))
    except Exception as exc:  # unpickling can fail in any way (missing modules, truncation, ...)
        raise InputError(f"cannot load the .npy ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                         path) from None


def _read_json(path: Path) -> object:
    data = read_bytes_limited(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not valid JSON (UnicodeDecodeError)", path) from None
    return load_json(text, path)


def _unwrap(value: object) -> object:
    """A 0-d object array -> the object it holds; numpy scalars -> Python values."""
    while isinstance(value, np.ndarray) and value.dtype.hasobject and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _first(mapping: dict, keys: Iterable[str]):
    """(key, value) of the first key present, else (None, None)."""
    for key in keys:
        if key in mapping:
            return key, mapping[key]
    return None, None


def _xy(value: object, what: str, path) -> np.ndarray:
    """A numeric (P >= 1, >= 2) array -> its (P, 2) float64 x, y columns."""
    try:
        array = np.asarray(_unwrap(value))
    except (ValueError, TypeError):
        array = None
    if array is None or array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[1] < 2 or len(array) == 0:
        got = array.shape if array is not None and array.dtype.kind in "biuf" else type(value).__name__
        raise InputError(f"{what} must be a numeric (P, >= 2) array of points, got {got}", path)
    return np.ascontiguousarray(array[:, :2], dtype=np.float64)


def _parse_strokes(value: object, path) -> tuple[list[np.ndarray], list | None, bool]:
    """(strokes, per-stroke labels carried by stroke dicts or None, unterminated last stroke)."""
    value = _unwrap(value)
    if isinstance(value, np.ndarray) and value.dtype.hasobject and value.ndim >= 2:
        try:  # equal-length strokes saved as an object array come back stacked: (S, P, 2) objects
            value = value.astype(np.float64)
        except (ValueError, TypeError):
            raise InputError(f"strokes must be numeric, got an object array of shape {value.shape}", path) from None
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        if value.ndim == 2 and value.shape[1] >= 3 and len(value):
            rows = value.astype(np.float64)
            lifts = rows[:, 2] > 0.5
            return list(split_at_lifts(rows[:, :2], lifts, path)), None, not bool(lifts[-1])
        if value.ndim == 3 and value.shape[2] >= 2 and value.shape[0] and value.shape[1]:
            return [np.ascontiguousarray(s[:, :2], dtype=np.float64) for s in value], None, False
        raise InputError(f"numeric strokes must be (N, 3) [x, y, pen_flag] rows or (S, P, 2) points, got shape "
                         f"{value.shape}", path)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"no strokes found (got {type(value).__name__})", path)
    strokes, labels = [], []
    for index, item in enumerate(value):
        item = _unwrap(item)
        if isinstance(item, dict):
            key, points = _first(item, POINT_KEYS)
            if key is None:
                raise InputError(f"stroke {index} is a dict without points (keys {', '.join(POINT_KEYS)})", path)
            strokes.append(_xy(points, f"stroke {index}", path))
            labels.append(_first(item, ITEM_LABEL_KEYS)[1])
        else:
            strokes.append(_xy(item, f"stroke {index}", path))
            labels.append(None)
    return strokes, (labels if any(label is not None for label in labels) else None), False


def _as_list(value: object, what: str, path) -> list:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{what} must be a list, got {type(value).__name__}", path)
    return [_unwrap(v) for v in value]


def _npy_content(value: object, path) -> tuple[list[np.ndarray], list | None, list | None, bool]:
    """(strokes, per-stroke labels or None, class names or None, unterminated last stroke)."""
    value = _unwrap(value)
    if not isinstance(value, dict):
        strokes, labels, open_end = _parse_strokes(value, path)
        return strokes, labels, None, open_end
    key, raw = _first(value, STROKE_KEYS)
    if key is None:
        raise InputError(f"the .npy dict has no strokes (keys tried: {', '.join(STROKE_KEYS)}; found: "
                         f"{', '.join(map(str, value))})", path)
    strokes, labels, open_end = _parse_strokes(raw, path)
    label_key, raw_labels = _first(value, LABEL_KEYS)
    classes = _first(value, CLASS_KEYS)[1]
    if "classes" in value:
        listed = _as_list(value["classes"], "classes", path)
        if label_key is None and labels is None and len(listed) in (len(strokes), len(strokes) - open_end):
            raw_labels = listed
        elif classes is None:
            classes = listed
    if raw_labels is not None:
        labels = _as_list(raw_labels, "labels", path)
    return strokes, labels, (None if classes is None else _as_list(classes, "class names", path)), open_end


def _json_content(doc: object, num_strokes: int, open_end: bool, npy_has_labels: bool, path) -> tuple[list | None, list | None]:
    """(per-stroke labels or None, class names or None) of a classes/<id>.json document."""
    if isinstance(doc, dict):
        labels = _first(doc, ("stroke_labels", "labels"))[1]
        classes = _first(doc, ("class_names", "categories"))[1]
        if "classes" in doc:
            listed = doc["classes"]
            if labels is None and isinstance(listed, list) and len(listed) in (num_strokes, num_strokes - open_end):
                labels = listed
            elif classes is None:
                classes = listed
        return (None if labels is None else _as_list(labels, "labels", path),
                None if classes is None else _as_list(classes, "class names", path))
    if not isinstance(doc, list):
        raise InputError(f"expected a list of stroke labels or an object, got {type(doc).__name__}", path)
    if len(doc) in (num_strokes, num_strokes - open_end) or not npy_has_labels:
        return doc, None
    return None, doc  # another length, labels in the .npy: the class list


def _resolve(labels: list, classes: list | None, path) -> list[str | None]:
    """Per-stroke entries (names, int indices into `classes`, None) -> names or None."""
    out: list[str | None] = []
    for index, label in enumerate(labels):
        if label is None or isinstance(label, bool):
            name = None
        elif isinstance(label, (int, float)) and float(label).is_integer():
            position = int(label)
            if position < 0:
                name = None
            elif classes is None:
                raise InputError(f"stroke {index} has the class index {position} but no class list was found "
                                 f"(classes/<id>.json, the .npy or {ALL_CLASSES_FILE})", path)
            elif position >= len(classes):
                raise InputError(f"stroke {index} has the class index {position}; the class list has {len(classes)} names",
                                 path)
            else:
                name = classes[position]
        elif isinstance(label, str):
            name = label
        else:
            raise InputError(f"stroke {index} has a label of type {type(label).__name__}; expected a name or an index",
                             path)
        if name is not None and not isinstance(name, str):
            raise InputError(f"the class list holds a {type(name).__name__}, not a name", path)
        name = None if name is None else " ".join(name.split())
        out.append(None if name is None or name in UNLABELLED_NAMES else name)
    return out


def read_fscoco_seg(path: str | os.PathLike, *, allow_pickle: bool = False) -> Sketch:
    """One sketch of the layout, by its `vector_sketches/<id>.npy` path, with per-stroke labels.

    Labels and class lists come from `classes/<id>.json`, the `.npy` and `all_classes.json` as
    the module docstring says; the caption from `captions/<id>.txt` when present. InputError for an
    object array without `allow_pickle`, unreadable files, a missing label source, and labels
    that do not match the strokes.
    """
    path = Path(path)
    root, stem = _layout_root(path)
    strokes, npy_labels, npy_classes, open_end = _npy_content(_load_npy(path, allow_pickle), path)
    labels_path = root / CLASSES_DIR / f"{stem}.json"
    json_labels = json_classes = None
    if labels_path.is_file():
        json_labels, json_classes = _json_content(_read_json(labels_path), len(strokes), open_end,
                                                  npy_labels is not None, labels_path)
    labels = json_labels if json_labels is not None else npy_labels
    where = labels_path if json_labels is not None else path
    if labels is None:
        raise InputError(f"no stroke labels: {CLASSES_DIR}/{stem}.json is missing or has none, and the .npy "
                         "carries none", path)
    if len(labels) == len(strokes) - 1 and open_end:
        strokes = strokes[:-1]  # the reference drops points after the last pen lift
    if len(labels) != len(strokes):
        raise InputError(f"{len(labels)} stroke labels for {len(strokes)} strokes", where)
    classes = json_classes or npy_classes
    all_classes_path = root / ALL_CLASSES_FILE
    if classes is None and all_classes_path.is_file():
        classes = _as_list(_read_json(all_classes_path), "class names", all_classes_path)
    names = _resolve(labels, classes, where)
    caption_path = root / CAPTIONS_DIR / f"{stem}.txt"
    caption = read_caption_file(caption_path) if caption_path.is_file() else None
    points = np.concatenate(strokes, axis=0)
    inside = bool(np.isfinite(points).all() and points.min() >= 0 and points.max() <= REFERENCE_CANVAS)
    side = REFERENCE_CANVAS if inside else None
    return build_sketch(strokes, path, width=side, height=side, labels=names, caption=caption)


def iter_fscoco_seg(paths: Iterable[str | os.PathLike], *, allow_pickle: bool = False
                    ) -> Iterator[tuple[Path, Sketch | InputError]]:
    """(path, Sketch) per file in order, or (path, InputError) for one that cannot be read. An
    object array without `allow_pickle` is a usage problem for the whole set: it raises at once."""
    for item in paths:
        path = Path(item)
        try:
            yield path, read_fscoco_seg(path, allow_pickle=allow_pickle)
        except InputError as exc:
            if not allow_pickle and exc.hint == "pickle":
                raise
            yield path, exc
