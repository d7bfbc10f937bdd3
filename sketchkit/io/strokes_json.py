"""Stroke JSON: FrISS / CBSC stroke-3 scenes, plus two bare list forms, and the stroke helpers the
other vector readers share.

FrISS / CBSC (see ../shared/data/README.md), one scene per file:

    {"img_id": "sceneid-0-userid-2", "img_w": 1100, "img_h": 770,
     "scene_strokes": [[dx, dy, pen_lift], ...],      # first row: absolute start
     "object_divisions": [0, 10, 13, ...],            # stroke indices, instances + 1 entries
     "gt_class_names": ["airplane", "smoke", ...]}    # one name per instance

The cumulative sum of [dx, dy] gives absolute canvas points; pen_lift = 1 marks the last point of
a stroke (a final stroke without one is kept). Instance i owns strokes [div[i], div[i+1]); strokes
outside every instance are unlabelled (label None, instance -1). Names are used verbatim. img_id
and extra fields are optional; without img_w/img_h the canvas is the ink bounds. The caption is
formed from the instance names: "an airplane, smoke and five seagulls".

Bare lists: `[[dx, dy, pen_lift], ...]` (stroke-3 rows without the wrapper) and
`[[[x, y], ...], ...]` (one list of absolute points per stroke).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sketchkit import labels
from sketchkit.errors import InputError
from sketchkit.io.limits import check_coordinates, check_stroke_count, check_total_points
from sketchkit.text import check_text
from sketchkit.types import Sketch

CANVAS_MARGIN = 0.02
"""Canvas = ink bounds plus this fraction of the larger ink side (at least 1 unit) when a format
does not say its canvas size."""

# ------------------------------------------------------------------------------------ shared helpers


def ink_canvas(points: np.ndarray) -> tuple[float, float]:
    """(width, height) of a canvas anchored at (0, 0) that holds all (N, 2) `points`, plus a margin
    of CANVAS_MARGIN of the larger ink side (at least 1 unit). Negative coordinates widen it."""
    low = np.minimum(points.min(axis=0), 0.0)
    high = points.max(axis=0)
    extent = high - low
    margin = max(CANVAS_MARGIN * float(extent.max()), 1.0)
    width, height = extent + margin
    return float(width), float(height)


def split_at_lifts(points: np.ndarray, lifts: np.ndarray, path=None) -> tuple[np.ndarray, ...]:
    """Split (N, 2) points into strokes: a True in the (N,) `lifts` ends the stroke after that
    point; points after the last lift form a final stroke. Returns contiguous (P_i, 2) float64.
    InputError (naming `path`) for more than MAX_STROKES_PER_SKETCH strokes, before any is built."""
    ends = np.flatnonzero(lifts[:-1]) + 1
    check_stroke_count(len(ends) + 1, path)
    return tuple(np.ascontiguousarray(s, dtype=np.float64) for s in np.split(points, ends))


def numeric_array(value: object, what: str, path, *, columns: int | None = None, ndim: int = 2) -> np.ndarray:
    """`value` (nested lists) as a float64 array of `ndim` dimensions (and `columns` columns), or
    InputError naming `what`."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        array = None
    expected = f"{what} must be a list of [{', '.join(['number'] * columns)}] rows" if columns else \
        f"{what} must be a list of numbers"
    if array is not None and array.size == 0 and columns is not None:
        return np.zeros((0, columns))  # an empty list: no rows
    if array is None or array.dtype.kind not in "biuf" or array.ndim != ndim:
        raise InputError(expected, path)
    if columns is not None and array.shape[-1] != columns:
        raise InputError(f"{expected}, found rows of {array.shape[-1]} values", path)
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(np.float64)


def build_sketch(strokes: Sequence[np.ndarray], path, *, width: float | None = None, height: float | None = None,
                 labels: Sequence[str | None] | None = None, instance_ids: np.ndarray | None = None,
                 caption: str | None = None, stroke_widths: np.ndarray | None = None,
                 source_ids: Sequence[str | None] | None = None, skipped: dict[str, int] | None = None) -> Sketch:
    """A checked Sketch from non-empty (P_i, 2) float64 strokes: InputError when there is no stroke,
    a coordinate is non-finite or beyond MAX_COORDINATE, or a label, stroke id or the caption holds what
    no output can store (sketchkit.text); a missing canvas side comes from the ink."""
    strokes = tuple(strokes)
    if not strokes:
        raise InputError("no strokes found", path)
    check_stroke_count(len(strokes), path)
    check_total_points(sum(len(s) for s in strokes), path)
    points = np.concatenate(strokes, axis=0)
    check_coordinates(points, path)
    for what, texts in (("label", labels), ("stroke id", source_ids), ("caption", [caption])):
        for text in texts or ():
            check_text(text, f"the {what}", InputError, path)
    if width is None or height is None:
        ink_w, ink_h = ink_canvas(points)
        width = ink_w if width is None else width
        height = ink_h if height is None else height
    return Sketch(strokes=strokes, width=float(width), height=float(height), stroke_widths=stroke_widths,
                  labels=None if labels is None else tuple(labels), instance_ids=instance_ids,
                  caption=caption, source=str(path) if path is not None else None,
                  source_ids=None if source_ids is None else tuple(source_ids), skipped=skipped)


def describe_skipped(skipped: dict[str, int] | None, template: str = "{}") -> str:
    """`template` filled with "2 text, 1 image" for {"text": 2, "image": 1}; "" when nothing was
    skipped (None or {})."""
    if not skipped:
        return ""
    return template.format(", ".join(f"{count} {kind}" for kind, count in skipped.items()))


# ------------------------------------------------------------------------------------------- captions


def caption_from_names(names: Sequence[str]) -> str | None:
    """The caption the readers give a sketch from its instance names ("an airplane, smoke and two
    seagulls"), or None when there is no usable name. The rules live in sketchkit.labels."""
    return labels.caption_from_names(names) or None


# --------------------------------------------------------------------------------------------- readers


def _is_index(value: object) -> bool:
    """An int (or integral float) small enough for int64; bools are not indices."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer() and abs(value) < 2**62
    return isinstance(value, int) and abs(value) < 2**62


def _int_list(value: object, what: str, path) -> list[int]:
    if not isinstance(value, list) or not all(_is_index(v) for v in value):
        raise InputError(f"{what} must be a list of integers", path)
    return [int(v) for v in value]


def _canvas_side(doc: dict, key: str, path) -> float | None:
    if key not in doc or doc[key] is None:
        return None
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise InputError(f"{key} must be a positive number, got {value!r:.40}", path)
    return float(value)


def _instances(doc: dict, num_strokes: int, path) -> tuple[list[str], np.ndarray] | None:
    """(instance names, (S,) int64 instance index per stroke, -1 outside every instance) or None."""
    has_div, has_names = "object_divisions" in doc, "gt_class_names" in doc
    if not has_div and not has_names:
        return None
    if has_div != has_names:
        missing = "gt_class_names" if has_div else "object_divisions"
        raise InputError(f"object_divisions and gt_class_names come together; {missing} is missing", path)
    divisions = _int_list(doc["object_divisions"], "object_divisions", path)
    names = doc["gt_class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError("gt_class_names must be a list of strings", path)
    if not names and len(divisions) <= 1:
        return None
    if len(divisions) != len(names) + 1:
        raise InputError(f"object_divisions has {len(divisions)} entries for {len(names)} gt_class_names "
                         "(expected one more than the names)", path)
    bounds = np.asarray(divisions, dtype=np.int64)
    if bounds[0] < 0 or (np.diff(bounds) < 0).any() or bounds[-1] > num_strokes:
        raise InputError(f"object_divisions must rise from >= 0 to at most the {num_strokes} strokes, "
                         f"got {divisions[:8]}{'...' if len(divisions) > 8 else ''}", path)
    instance_ids = np.full(num_strokes, -1, dtype=np.int64)
    owner = np.repeat(np.arange(len(names)), np.diff(bounds))
    instance_ids[bounds[0]:bounds[-1]] = owner
    return names, instance_ids


def read_stroke3_scene(doc: dict, path) -> Sketch:
    """A FrISS / CBSC scene dict -> Sketch with per-stroke labels, instance ids and a caption."""
    if "scene_strokes" not in doc:
        raise InputError("not a stroke-3 scene: 'scene_strokes' is missing", path)
    rows = numeric_array(doc["scene_strokes"], "scene_strokes", path, columns=3)
    if len(rows) == 0:
        raise InputError("scene_strokes is empty: no strokes found", path)
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.cumsum(rows[:, :2], axis=0)
    strokes = split_at_lifts(points, rows[:, 2] > 0.5, path)
    labels = instance_ids = caption = None
    instances = _instances(doc, len(strokes), path)
    if instances is not None:
        names, instance_ids = instances
        labels = [names[i] if i >= 0 else None for i in instance_ids]
        caption = caption_from_names(names)
    return build_sketch(strokes, path, width=_canvas_side(doc, "img_w", path), height=_canvas_side(doc, "img_h", path),
                        labels=labels, instance_ids=instance_ids, caption=caption)


def read_stroke_list(doc: list, path) -> Sketch:
    """A bare list: stroke-3 rows [[dx, dy, pen_lift], ...] or polylines [[[x, y], ...], ...]."""
    if not doc:
        raise InputError("the JSON list is empty: no strokes found", path)
    first = doc[0]
    if isinstance(first, list) and first and not isinstance(first[0], list):
        return read_stroke3_scene({"scene_strokes": doc}, path)
    check_stroke_count(len(doc), path)
    strokes = [numeric_array(stroke, f"stroke {index}", path, columns=2) for index, stroke in enumerate(doc)]
    return build_sketch([s for s in strokes if len(s)], path)


def is_record_list(doc: object) -> bool:
    """Whether a parsed JSON document is a list of objects (QuickDraw records, one per drawing)."""
    return isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict)


def read_json_document(doc: object, path) -> Sketch:
    """Dispatch a parsed JSON document on its schema (sketchkit's result JSON, stroke-3 scene, QuickDraw
    record, a list of QuickDraw records: its first drawing, bare list)."""
    if isinstance(doc, dict):
        from sketchkit.io.result_json import is_result_document, read_result_json

        if is_result_document(doc):
            return read_result_json(doc, path)
        if "scene_strokes" in doc:
            return read_stroke3_scene(doc, path)
        if "drawing" in doc:
            from sketchkit.io.quickdraw import sketch_from_record

            return sketch_from_record(doc, path)
        keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
        raise InputError("unrecognised JSON: expected a FrISS/CBSC stroke-3 object with 'scene_strokes' or a "
                         f"QuickDraw object with 'drawing' (found keys: {keys})", path)
    if is_record_list(doc):
        from sketchkit.io.quickdraw import sketch_from_record

        return sketch_from_record(doc[0], path, where="record 0: ")
    if isinstance(doc, list):
        return read_stroke_list(doc, path)
    raise InputError(f"unrecognised JSON: the top level is a {type(doc).__name__}, not an object or a list", path)
