"""InkML sketches (W3C Ink Markup Language: OneNote, CROHME, pen tablets): one stroke per `<trace>`.

    <ink xmlns="http://www.w3.org/2003/InkML">
      <traceFormat><channel name="X"/><channel name="Y"/><channel name="T"/></traceFormat>
      <trace xml:id="t0">10 20 0, 11 22 8, 13 25 16</trace>
      <traceGroup><annotation type="truth">tree</annotation><traceView traceDataRef="#t0"/></traceGroup>
    </ink>

Parsing is defused like SVG (sketchkit.io.xmlsafe: no DTD, no entities, nothing fetched) and the
element count is capped by MAX_SVG_ELEMENTS. Elements are read in the InkML namespace or in none.

Traces: points are separated by commas, channel values by whitespace (or by the sign of the next
number, "3-5" is 3 and -5). Each value may carry a prefix that stays in force for its channel
until another is given: `!` explicit, `'` first difference (velocity), `"` second difference
(acceleration). `*` repeats the channel's previous value; a point whose X or Y is `?` (unknown) is
dropped. Only X and Y are read; every other channel (T, F, pressure, intermittent channels) is
skipped. `type="penUp"` traces (hover, not ink) are skipped.

Channel order comes from the trace's format: its own `contextRef` (or its traceGroup's), naming a
`<context>` (with an inline `<traceFormat>`, a `traceFormatRef`, an `inkSourceRef` to an
`<inkSource>` holding one, or a `contextRef` to another context); else the current context of the
document (a `<traceFormat>` or `<context>` placed directly under `<ink>` before the trace); else
the document's only `<traceFormat>` when it has exactly one; else X Y (the InkML default). A
format without an X and a Y channel is refused.

Labels: a `<traceGroup>` with an `<annotation type="truth">` (or type="label") names its strokes:
the traces nested in it and those its `<traceView traceDataRef="...">` elements reference (a
reference to a traceGroup takes all its traces; `from`/`to` ranges are read as whole traces). The
innermost labelled group wins, so CROHME's outer "Segmentation" group labels nothing. Labelled
groups that own strokes are numbered in document order: that number is the instance id. The
caption is formed from the group labels as for FrISS ("a tree and two clouds").

Canvas: the ink bounds plus a margin, as for other stroke formats (`strokes_json.ink_canvas`);
y grows downwards, as on screen. `Sketch.source_ids` holds the trace ids; `Sketch.skipped` counts
"pen-up trace" and "empty trace" (no point with both X and Y).
"""

from __future__ import annotations

import re

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import MAX_POINTS_TOTAL, MAX_SVG_ELEMENTS
from sketchkit.io.strokes_json import build_sketch, caption_from_names, describe_skipped
from sketchkit.io.xmlsafe import decode_xml, parse_xml
from sketchkit.types import Sketch

INKML_NS = "http://www.w3.org/2003/InkML"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
LABEL_TYPES = frozenset({"truth", "label"})
"""`<annotation type=...>` values that label a traceGroup."""

_DEFAULT_FORMAT = ("X", "Y")
_VALUE = re.compile(r"([!'\"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[TF*?])")
_NOT_VALUES = re.compile(r"[^\s!'\"0-9eE.+\-TF*?]")
_PLAIN_SEPARATORS = str.maketrans(",", " ")


def _local(tag) -> str | None:
    """The local name of an InkML (or namespace-less) tag; None for other namespaces and comments."""
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return local if namespace == INKML_NS else None
    return tag


def _id(element) -> str | None:
    value = element.attrib.get(XML_ID, element.attrib.get("id"))
    return value.strip() if value and value.strip() else None


def _ref(value: str | None) -> str | None:
    """A reference attribute ("#t1", "t1", "file.inkml#t1") -> the local id; None for empty or
    references into other documents (never followed)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if "#" in value:
        document, _, fragment = value.partition("#")
        return fragment if not document and fragment else None
    return value


# ------------------------------------------------------------------------------------------ formats


def _channels(trace_format) -> tuple[str, ...]:
    """Names of the regular channels of a <traceFormat>, in order (intermittent ones excluded)."""
    return tuple(child.attrib.get("name", "").strip().upper() for child in trace_format
                 if _local(child.tag) == "channel")


class _Formats:
    """Trace formats by id: <traceFormat>, <inkSource> and <context> elements anywhere."""

    def __init__(self, root):
        self.formats: dict[str, tuple[str, ...]] = {}
        self.sources: dict[str, object] = {}
        self.contexts: dict[str, object] = {}
        self.count = 0
        for element in root.iter():
            name, key = _local(element.tag), _id(element)
            if name == "traceFormat":
                self.count += 1
                if key:
                    self.formats[key] = _channels(element)
            elif name == "inkSource" and key:
                self.sources[key] = element
            elif name == "context" and key:
                self.contexts[key] = element
        self.only = None
        if self.count == 1:
            self.only = next(_channels(e) for e in root.iter() if _local(e.tag) == "traceFormat")

    def of_source(self, source) -> tuple[str, ...] | None:
        """The format of an <inkSource>: its <traceFormat> (inline or by href)."""
        for child in source:
            if _local(child.tag) == "traceFormat":
                return self.formats.get(_ref(child.attrib.get("href"))) or _channels(child)
        return None

    def of_context(self, context, depth: int = 0) -> tuple[str, ...] | None:
        """The format a <context> element defines, following its references (at most 8 deep)."""
        if depth > 8:
            return None
        for child in context:
            name = _local(child.tag)
            if name == "traceFormat":
                referenced = self.formats.get(_ref(child.attrib.get("href")))
                return referenced or _channels(child)
            if name == "inkSource":
                found = self.of_source(child)
                if found:
                    return found
        attrib = context.attrib
        if _ref(attrib.get("traceFormatRef")) in self.formats:
            return self.formats[_ref(attrib["traceFormatRef"])]
        source = self.sources.get(_ref(attrib.get("inkSourceRef")))
        if source is not None and self.of_source(source):
            return self.of_source(source)
        parent = self.contexts.get(_ref(attrib.get("contextRef")))
        return self.of_context(parent, depth + 1) if parent is not None and parent is not context else None

    def by_ref(self, value: str | None) -> tuple[str, ...] | None:
        context = self.contexts.get(_ref(value))
        return self.of_context(context) if context is not None else None


# ------------------------------------------------------------------------------------------- traces


def _plain_trace(text: str, width: int) -> np.ndarray | None:
    """Fast path: (P, width) values of a trace of plain numbers with whitespace between all
    values of a point; None when the text needs the full grammar."""
    if "'" in text or '"' in text or "!" in text or "*" in text or "?" in text or "T" in text or "F" in text:
        return None
    points = [p for p in text.split(",") if p.strip()]
    if not points:
        return np.zeros((0, width))
    rows = [p.split() for p in points]
    if any(len(row) < width for row in rows):
        return None
    try:
        return np.array([row[:width] for row in rows], dtype=np.float64)
    except ValueError:  # "3-5": values not separated by whitespace
        return None


def _full_trace(text: str, width: int, number: int, path) -> np.ndarray:
    """(P, width) values of a trace in the full grammar (prefixes, '*', '?'); NaN rows dropped."""
    last = np.zeros(width)
    velocity = np.zeros(width)
    modes = ["!"] * width
    started = False
    rows = []
    for index, point in enumerate(text.split(",")):
        if not point.strip():
            continue
        if _NOT_VALUES.search(point):
            raise InputError(f"trace #{number}: point {index} holds something that is not a value "
                             f"({point.strip()[:30]!r})", path)
        values = _VALUE.findall(point)
        if len(values) < width:
            raise InputError(f"trace #{number}: point {index} has {len(values)} values for the {width} "
                             "channels up to X and Y", path)
        row = np.empty(width)
        for channel, (prefix, value) in enumerate(values[:width]):
            if prefix:
                modes[channel] = prefix
            if value in ("T", "F"):
                value = "1" if value == "T" else "0"
            if value == "?":
                row[channel] = np.nan
                continue
            if value == "*":
                row[channel], velocity[channel] = last[channel], 0.0
                continue
            number_value = float(value)
            mode = modes[channel] if started else "!"
            if mode == "!":
                velocity[channel] = number_value - last[channel] if started else 0.0
                row[channel] = number_value
            elif mode == "'":
                velocity[channel] = number_value
                row[channel] = last[channel] + number_value
            else:
                velocity[channel] += number_value
                row[channel] = last[channel] + velocity[channel]
        started = True
        last = np.where(np.isnan(row), last, row)
        rows.append(row)
    return np.array(rows).reshape(-1, width)


def _trace_points(element, channels: tuple[str, ...], number: int, path) -> np.ndarray:
    """(P, 2) float64 X, Y of a <trace>."""
    if "X" not in channels or "Y" not in channels:
        raise InputError(f"trace #{number}: its format has channels {', '.join(channels) or 'none'}, "
                         "without both X and Y", path)
    x, y = channels.index("X"), channels.index("Y")
    width = max(x, y) + 1
    text = element.text or ""
    values = _plain_trace(text, width)
    if values is None:
        values = _full_trace(text, width, number, path)
    points = values[:, [x, y]]
    return points[~np.isnan(points).any(axis=1)]


# ------------------------------------------------------------------------------------------- reader


def _label(group) -> str | None:
    for child in group:
        if _local(child.tag) == "annotation" and child.attrib.get("type", "").strip().lower() in LABEL_TYPES:
            text = " ".join("".join(child.itertext()).split())
            if text:
                return text
    return None


def read_inkml(data: bytes, path) -> Sketch:
    """InkML bytes -> Sketch: one stroke per pen-down trace, labels from traceGroups (module docstring)."""
    root = parse_xml(decode_xml(data, path, "InkML"), path, "InkML", MAX_SVG_ELEMENTS, root="ink")
    if _local(root.tag) != "ink":
        raise InputError(f"not an InkML document: the root element is <{str(root.tag).rpartition('}')[2]}>", path)
    formats = _Formats(root)

    strokes: list[np.ndarray] = []
    trace_ids: list[str | None] = []
    skipped: dict[str, int] = {}
    by_id: dict[str, list[int]] = {}     # trace id -> its stroke
    by_group: dict[int, list[int]] = {}  # id() of a traceGroup element -> the strokes nested in it
    total = 0
    groups: list[tuple[object, int]] = []  # (labelled traceGroup, depth), document order

    # walk in document order; the current format follows <traceFormat>/<context> placed under <ink>
    current = None
    stack = [(child, None, 0, ()) for child in reversed(list(root))]
    number = 0
    while stack:
        element, format_ref, depth, owners = stack.pop()
        name = _local(element.tag)
        if name is None:
            continue
        if depth == 0 and name == "traceFormat":
            current = _channels(element)
        elif depth == 0 and name == "context":
            current = formats.of_context(element) or current
        elif name == "traceGroup":
            group_ref = element.attrib.get("contextRef", format_ref)
            nested = owners + (id(element),)
            by_group[id(element)] = []
            if _label(element) is not None:
                groups.append((element, depth))
            stack.extend((child, group_ref, depth + 1, nested) for child in reversed(list(element)))
        elif name == "trace":
            number += 1
            kind = element.attrib.get("type", "penDown").strip()
            if kind == "penUp":
                skipped["pen-up trace"] = skipped.get("pen-up trace", 0) + 1
                continue
            channels = (formats.by_ref(element.attrib.get("contextRef", format_ref)) or current or formats.only
                        or _DEFAULT_FORMAT)
            points = _trace_points(element, channels, number, path)
            if len(points) == 0:
                skipped["empty trace"] = skipped.get("empty trace", 0) + 1
                continue
            total += len(points)
            if total > MAX_POINTS_TOTAL:
                raise InputError(f"the InkML has more than {MAX_POINTS_TOTAL:,} points", path)
            index = len(strokes)
            strokes.append(points)
            key = _id(element)
            trace_ids.append(key)
            if key:
                by_id.setdefault(key, []).append(index)
            for owner in owners:
                by_group[owner].append(index)

    if not strokes:
        note = describe_skipped(skipped, " (skipped: {})")
        raise InputError(f"no strokes found: the InkML has no trace with points{note}", path)

    # a traceView may reference a traceGroup: all the traces nested in it
    for group in root.iter():
        if _local(group.tag) == "traceGroup" and _id(group) and _id(group) not in by_id:
            by_id[_id(group)] = by_group.get(id(group), [])

    # labels: the innermost labelled group that holds or references a stroke
    labels: list[str | None] = [None] * len(strokes)
    owner_group = np.full(len(strokes), -1, dtype=np.int64)
    owner_depth = np.full(len(strokes), -1, dtype=np.int64)
    for group_index, (group, depth) in enumerate(groups):
        members = set(by_group.get(id(group), []))
        for view in group.iter():
            if _local(view.tag) == "traceView":
                members.update(by_id.get(_ref(view.attrib.get("traceDataRef")), []))
        for index in members:
            if depth > owner_depth[index]:
                owner_group[index], owner_depth[index] = group_index, depth
                labels[index] = _label(group)
    # instances: the labelled groups that own strokes, numbered in document order
    owned = owner_group >= 0
    owning = np.unique(owner_group[owned])
    instance_ids = np.full(len(strokes), -1, dtype=np.int64)
    instance_ids[owned] = np.searchsorted(owning, owner_group[owned])
    names = [_label(groups[group][0]) for group in owning.tolist()]
    return build_sketch(strokes, path, labels=labels if owned.any() else None,
                        instance_ids=instance_ids if owned.any() else None,
                        caption=caption_from_names(names) if names else None,
                        source_ids=trace_ids if any(k is not None for k in trace_ids) else None,
                        skipped=skipped)

