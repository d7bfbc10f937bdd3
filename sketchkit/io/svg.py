"""SVG sketches: every pen-down trace of a visible stroked element is one stroke, in canvas units.

Parsing is defused (sketchkit.io.xmlsafe): defusedxml with DTDs, entities and external references
forbidden; a plain `<!DOCTYPE svg PUBLIC "..." "...">` line without an internal subset (as
Illustrator writes) is removed before parsing, any other DTD is refused. Nothing is ever fetched:
`<use>` and `<image>` (internal or external href) are not drawn.

Strokes come from path (svgpathtools for the path data), polyline, polygon (closed), line, rect,
circle and ellipse. Pen lifts: every moveto (`M` or `m`) inside a path starts a new stroke and the
pen-up move itself is never drawn, so a whole drawing written as one `<path>` (sketch-rnn: one
relative `m` per pen lift) or a shape drawn twice as two subpaths (Excalidraw / rough.js) becomes
one stroke per subpath. A relative `m` after `z` is relative to the closed subpath's start, as in
SVG. A subpath that is only a moveto draws nothing; one closed at once (`M x y z`) is a dot.

Curves are flattened adaptively with a tolerance relative to the drawing: FLATTEN_TOLERANCE times
the diagonal of the drawing's box (all control points of the strokes kept, in canvas units) or of
the canvas when that is smaller; see `flatten_tolerance`. A Bezier is cut into n equal parameter
steps with n from its second-derivative bound, an arc / circle / ellipse into equal angle steps
whose sagitta is below the tolerance; at most MAX_POINTS_PER_CURVE points per curve. A drawing in
`viewBox="0 0 1 1"` is flattened as finely as the same drawing in `viewBox="0 0 1000 1000"`.
Straight segments keep exactly their end points.

Frames: `transform` on elements and ancestors (matrix, translate, scale, rotate, skewX, skewY)
is applied; the root viewBox defines the canvas (canvas size = viewBox width/height, points
shifted by the viewBox origin so the canvas starts at 0,0). Without a viewBox, user units are
pixels: width/height with units (px, pt, pc, mm, cm, in, em, ex) give the canvas, and a missing or
percentage size falls back to the sketchkit metadata canvas, then to the ink bounds.

What is a stroke. Presentation properties come from attributes and `style` declarations (a style
declaration wins), inherited through groups as in CSS: stroke, stroke-opacity, stroke-width, fill,
fill-opacity, color (for currentColor), visibility (inherited), opacity (multiplied down the
tree) and display (display:none hides the subtree). A shape element is read when it is visible and
- stroked: stroke paint not none / transparent, stroke-opacity, opacity and stroke-width > 0; or
- inked by its fill alone: no visible stroke but a fill dark enough to read as ink on white paper,
  darkness (1 - luminance) x alpha x fill-opacity x opacity >= INK_DARKNESS; it is read as its
  outline. Pen tools write their strokes that way (Excalidraw freedraw, Inkscape's calligraphy
  pen). The initial fill (black) counts only when neither stroke nor fill is set on the shape or
  its ancestors: an unstyled shape is read, as sketchkit always did, while `stroke="none"` or an
  invisible stroke with no fill set is "unpainted";
and it is not background paper: a closed shape (rect, polygon, circle, ellipse, path with `z`)
without a visible stroke whose box covers at least BACKGROUND_COVER of the canvas in both
directions (Excalidraw's white background `<rect>`).

Skipped, and counted in `Sketch.skipped` by kind (in order of first occurrence):
- "text", "image", "use", "foreignObject": elements that draw something sketchkit does not read;
- "hidden <tag>": any of the above or a shape under display:none, visibility:hidden / collapse or
  opacity 0;
- "background <tag>": background paper as above;
- "fill-only <tag>": no visible stroke and a fill too pale to be ink (colouring, highlights);
- "unpainted <tag>": neither a visible stroke nor a visible fill.
Not counted (they draw nothing by themselves): defs, metadata, title, desc, style, script,
clipPath, mask, symbol, pattern, marker and other non-drawing elements, elements of other
namespaces, subtrees marked data-sketchkit="legend" (sketchkit's own legend), and shapes with no
geometry (a rect of width 0). CSS style sheets (`<style>` rules) are not applied.

Per stroke: stroke-width (inherited, default 1) times the transform's area scale sqrt(|det|) ->
Sketch.stroke_widths; data-label -> Sketch.labels and data-instance -> Sketch.instance_ids (both
inherited from groups); the element's `data-source-id`, else its `id` -> Sketch.source_ids (every
stroke of a split path carries the path's id). sketchkit's own labelled SVG keeps its caption in
the root `<metadata>` as JSON: {"sketchkit": {"caption": ..., "canvas": [w, h], ...}}.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import replace, dataclass, field
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import (MAX_CURVE_ELEMENTS, MAX_FLATTENED_POINTS, MAX_POINTS_PER_CURVE, MAX_POINTS_TOTAL,
                                 MAX_SVG_ELEMENTS, MAX_TRANSFORM_ITEMS)
from sketchkit.io.strokes_json import build_sketch, describe_skipped
from sketchkit.io.xmlsafe import decode_xml, parse_xml
from sketchkit.types import Sketch

SVG_NS = "http://www.w3.org/2000/svg"

FLATTEN_TOLERANCE = 2e-4
"""Largest distance between a flattened curve and the true curve, as a fraction of the drawing's
size (see `flatten_tolerance`): 0.1 px when the drawing fills a 512 px raster."""

INK_DARKNESS = 0.3
"""A shape without a visible stroke is ink (read as its outline) when its fill's darkness on white
paper, (1 - luminance) x alpha x fill-opacity x opacity, is at least this."""

BACKGROUND_COVER = 0.9
"""A shape without a visible stroke whose box covers this fraction of the canvas width and height
is background paper."""

CONTAINERS = frozenset({"g", "a", "switch", "svg"})  # entered; any other element (defs, text, use, ...) is not
SHAPES = frozenset({"path", "polyline", "polygon", "line", "rect", "circle", "ellipse"})
UNREAD = frozenset({"text", "image", "use", "foreignObject"})  # drawn by renderers, not read: counted as skipped

_UNITS = {"": 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "q": 96 / 101.6, "em": 16.0, "rem": 16.0, "ex": 8.0}
_NUMBER_PATTERN = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = re.compile(_NUMBER_PATTERN)
_LENGTH = re.compile(rf"^\s*({_NUMBER_PATTERN})\s*([a-zA-Z]*|%)\s*$")
_SEPARATORS = re.compile(r"^[\s,]*$")
_TRAILING_SEPARATORS = re.compile(r"[ \t\r\n,]*\Z")
_TRANSFORM_ITEM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^()]*)\)")
_TRANSFORM_ARGS = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}
_POLYLINE_D = re.compile(r"^[\s,0-9eE.+\-ML]*$")
_DROP_SEPARATORS = str.maketrans("", "", " \t\r\n\f,")
_MOVETO = re.compile(r"(?=[Mm])")
_PATH_SPACE = " \t\r\n\f,"


# -------------------------------------------------------------------------------------------- text


def decode_svg(data: bytes, path) -> str:
    """SVG bytes -> text: BOM (UTF-8, UTF-16, UTF-32), BOM-less UTF-16, the XML declaration's
    encoding, else UTF-8. InputError for bytes that are not text in that encoding."""
    return decode_xml(data, path, "SVG")


def _parse_xml(text: str, path):
    """Root element of the defused parse; InputError for bad XML, DTDs or too many elements."""
    return parse_xml(text, path, "SVG", MAX_SVG_ELEMENTS, root="svg")


# ------------------------------------------------------------------------------------ attributes

def _numbers(text: str, what: str, path) -> list[float]:
    """Numbers of a list attribute (points, viewBox, transform arguments), separated by
    whitespace and/or commas; InputError for anything else in it."""
    if not _SEPARATORS.match(_NUMBER.sub(" ", text)):
        raise InputError(f"invalid {what} {text[:60]!r}", path)
    return [float(v) for v in _NUMBER.findall(text)]


def _length(value: str | None, path, what: str, reference: float | None = None) -> float | None:
    """An SVG length in user units (px): None for no value or for a percentage without reference."""
    if value is None:
        return None
    match = _LENGTH.match(value)
    if not match:
        raise InputError(f"invalid {what} {value[:40]!r}", path)
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        return None if reference is None else number * reference / 100.0
    if unit not in _UNITS:
        raise InputError(f"invalid {what} {value[:40]!r}: unknown unit {unit!r}", path)
    return number * _UNITS[unit]




_PROPERTIES = ("display", "visibility", "opacity", "stroke", "stroke-width", "stroke-opacity", "fill", "fill-opacity",
               "color")
_PROPERTY_KEYS = frozenset(_PROPERTIES) | {"style"}


def _style(element) -> dict[str, str]:
    """Presentation properties of an element: attributes overridden by its `style` declarations."""
    attrib = element.attrib
    props = {key: attrib[key] for key in _PROPERTIES if key in attrib}
    style = attrib.get("style")
    if style:
        for declaration in style.split(";"):
            name, sep, value = declaration.partition(":")
            if sep:
                props[name.strip().lower()] = value.replace("!important", "").strip()
    return props


_RGB_FUNCTION = re.compile(r"^(rgba?|hsla?)\((.*)\)$")


@lru_cache(maxsize=1024)
def _color(value: str) -> tuple[float, float] | None:
    """A CSS colour (lower case, stripped) -> (alpha, luminance) in [0, 1], None when invalid.

    Names, #rgb(a) / #rrggbb(aa) and hsl() go through Pillow's ImageColor; rgb() / rgba() /
    hsla() with a 0..1 or percent alpha are read here (Pillow wants alpha as 0..255)."""
    from PIL import ImageColor

    if value == "transparent":
        return 0.0, 1.0
    alpha = 1.0
    function = _RGB_FUNCTION.match(value)
    if function:
        parts = [p for p in re.split(r"[\s,/]+", function.group(2).strip()) if p]
        if len(parts) == 4:
            last = parts.pop()
            try:
                alpha = float(last[:-1]) / 100 if last.endswith("%") else float(last)
            except ValueError:
                return None
        if len(parts) != 3:
            return None
        value = f"{function.group(1).rstrip('a')}({','.join(parts)})"
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        return None
    if len(rgb) == 4:
        alpha = rgb[3] / 255.0
    luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255.0
    return min(max(alpha, 0.0), 1.0) if math.isfinite(alpha) else 1.0, luminance


_NO_PAINT = (0.0, 1.0)
_UNKNOWN_COLOUR = (1.0, math.nan)  # a gradient or pattern: visible, darkness unknown


def _paint(value: str | None, color: str, default: str) -> tuple[float, float]:
    """A computed paint value -> (alpha, luminance): none -> alpha 0; url(#g) without a fallback
    colour -> alpha 1 and luminance NaN; None -> the property's default."""
    value = default if value is None else value
    if value == "none":
        return _NO_PAINT
    if value.startswith("url("):
        fallback = value.partition(")")[2].strip()
        return _paint(fallback, color, "none") if fallback and fallback != "none" else _UNKNOWN_COLOUR
    if value == "currentcolor":
        value = color
    if value.startswith("context-"):
        return _UNKNOWN_COLOUR
    found = _color(value)
    return _UNKNOWN_COLOUR if found is None else found


def _valid_paint(value: str) -> bool:
    return (value in ("none", "currentcolor") or value.startswith(("url(", "context-"))
            or _color(value) is not None)


@lru_cache(maxsize=256)
def _fraction(value: str) -> float | None:
    """An opacity value (number or percentage) clamped to [0, 1]; None when invalid."""
    value = value.strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        return None
    return min(max(number, 0.0), 1.0) if math.isfinite(number) else None


class _State(NamedTuple):
    """Inherited presentation state while walking the tree."""

    matrix_id: int
    stroke_width: float          # user units of the element
    visible: bool                # visibility
    hidden: bool                 # under display:none or opacity 0
    opacity: float               # product of the opacities of the ancestors (and the element)
    stroke: str | None           # computed paint, lower case; None = not set (none)
    stroke_opacity: float
    fill: str | None             # None = not set (black)
    fill_opacity: float
    color: str
    label: str | None
    instance: int | None


def _inherit(state: _State, props: dict[str, str], viewport) -> _State:
    """The state of an element from its parent's and its own properties; invalid values are
    ignored (the inherited value stays), as browsers do."""
    changes = {}
    if props.get("display", "").strip().lower() == "none":
        changes["hidden"] = True
    keyword = props.get("visibility", "inherit").strip().lower()
    if keyword != "inherit":
        changes["visible"] = keyword not in ("hidden", "collapse")
    if "opacity" in props:
        opacity = _fraction(props["opacity"])
        if opacity is not None:
            changes["opacity"] = state.opacity * opacity
            if opacity == 0:
                changes["hidden"] = True
    if "stroke-width" in props:
        changes["stroke_width"] = _stroke_width(props["stroke-width"], state.stroke_width, viewport)
    for name, key in (("stroke", "stroke"), ("fill", "fill"), ("color", "color")):
        if name in props:
            value = props[name].strip().lower()
            if value and value != "inherit" and (_valid_paint(value) if name != "color" else _color(value)):
                changes[key] = value
    for name, key in (("stroke-opacity", "stroke_opacity"), ("fill-opacity", "fill_opacity")):
        if name in props:
            value = _fraction(props[name])
            if value is not None:
                changes[key] = value
    return state._replace(**changes) if changes else state


# what the walk decided about a shape element
_STROKED, _FILLED = "stroked", "filled"


def _classify(state: _State, tag: str) -> str:
    """_STROKED, _FILLED (ink by its fill alone), or the kind it is skipped as."""
    if state.hidden or not state.visible or state.opacity <= 0:
        return f"hidden {tag}"
    alpha, _ = _paint(state.stroke, state.color, "none")
    if alpha * state.stroke_opacity > 0 and state.stroke_width > 0:
        return _STROKED
    # the initial fill (black) counts only for a shape without any paint set, as sketchkit always read those
    alpha, luminance = _paint(state.fill, state.color, "black" if state.stroke is None else "none")
    alpha *= state.fill_opacity
    if alpha <= 0:
        return f"unpainted {tag}"
    darkness = 0.0 if math.isnan(luminance) else (1.0 - luminance) * alpha * state.opacity
    return _FILLED if darkness >= INK_DARKNESS else f"fill-only {tag}"


def parse_transform(text: str, path, where: str = "an element") -> np.ndarray:
    """An SVG transform list -> (3, 3) float64 affine matrix (points as column vectors)."""
    matrix = np.eye(3)
    position, length, items = 0, len(text), 0
    while position < length:
        if _TRAILING_SEPARATORS.match(text, position):  # (not a copy of the rest: that was quadratic)
            break
        items += 1
        if items > MAX_TRANSFORM_ITEMS:
            raise InputError(f"the transform on {where} has more than {MAX_TRANSFORM_ITEMS:,} items", path)
        match = _TRANSFORM_ITEM.match(text, position)
        if not match:
            raise InputError(f"invalid transform {text[:60]!r} on {where}", path)
        name, args = match.group(1), _numbers(match.group(2), f"transform {text[:60]!r} on {where}:", path)
        if not all(math.isfinite(v) for v in args):
            raise InputError(f"invalid transform {text[:60]!r} on {where}: a number is out of range", path)
        if len(args) not in _TRANSFORM_ARGS[name]:
            raise InputError(f"invalid transform {text[:60]!r} on {where}: {name} takes "
                             f"{' or '.join(map(str, _TRANSFORM_ARGS[name]))} numbers", path)
        matrix = matrix @ _transform_item(name, args)
        position = match.end()
    return matrix


def _transform_item(name: str, args: list[float]) -> np.ndarray:
    if name == "matrix":
        a, b, c, d, e, f = args
        return np.array([[a, c, e], [b, d, f], [0.0, 0.0, 1.0]])
    if name == "translate":
        tx, ty = args[0], (args[1] if len(args) > 1 else 0.0)
        return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    if name == "scale":
        sx, sy = args[0], (args[1] if len(args) > 1 else args[0])
        return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])
    if name == "rotate":
        angle = math.radians(args[0])
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        if len(args) == 3:
            cx, cy = args[1], args[2]
            return _transform_item("translate", [cx, cy]) @ rotation @ _transform_item("translate", [-cx, -cy])
        return rotation
    if name == "skewX":
        return np.array([[1.0, math.tan(math.radians(args[0])), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return np.array([[1.0, 0.0, 0.0], [math.tan(math.radians(args[0])), 1.0, 0.0], [0.0, 0.0, 1.0]])


def _viewbox(value: str | None, path) -> tuple[float, float, float, float] | None:
    if value is None or not value.strip():
        return None
    numbers = _numbers(value, "viewBox", path)
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InputError(f"invalid viewBox {value[:60]!r}: expected four numbers", path)
    if numbers[2] <= 0 or numbers[3] <= 0:
        raise InputError(f"invalid viewBox {value[:60]!r}: width and height must be positive", path)
    return tuple(numbers)



# ---------------------------------------------------------------------------------------- flattening


def _pieces(bound: float, tolerance: float) -> int:
    """Equal parameter steps so that a curve whose second derivative is at most `bound` deviates
    from its chords by less than `tolerance`: n = sqrt(bound / (8 tolerance))."""
    with np.errstate(all="ignore"):
        n = math.sqrt(bound / (8.0 * tolerance)) if tolerance > 0 else math.inf
    if not math.isfinite(n):
        return 1 if tolerance == math.inf or not math.isfinite(bound) else MAX_POINTS_PER_CURVE
    return int(min(max(math.ceil(n), 1), MAX_POINTS_PER_CURVE))


def _arc_pieces(radius: float, sweep: float, tolerance: float) -> int:
    """Equal angle steps over `sweep` radians whose sagitta on `radius` is below `tolerance`."""
    if not (math.isfinite(radius) and math.isfinite(sweep)) or radius <= 0:
        return 1
    step = 2.0 * math.acos(1.0 - tolerance / radius) if tolerance < radius else math.pi / 2
    if step <= 0:
        return MAX_POINTS_PER_CURVE
    return int(min(max(math.ceil(abs(sweep) / step), 1), MAX_POINTS_PER_CURVE))


def _segment_pieces(segment, tolerance: float) -> int:
    """How many points `_segment_points` makes of one svgpathtools segment (cheap: no points built)."""
    from svgpathtools import Arc, CubicBezier, QuadraticBezier

    if isinstance(segment, CubicBezier):
        p0, p1, p2, p3 = segment.start, segment.control1, segment.control2, segment.end
        return _pieces(6.0 * max(abs(p0 - 2 * p1 + p2), abs(p1 - 2 * p2 + p3)), tolerance)
    if isinstance(segment, QuadraticBezier):
        return _pieces(2.0 * abs(segment.start - 2 * segment.control + segment.end), tolerance)
    if isinstance(segment, Arc):
        return _arc_pieces(max(abs(segment.radius.real), abs(segment.radius.imag)), math.radians(segment.delta), tolerance)
    return 1


def _segment_points(segment, n: int) -> np.ndarray:
    """Complex points of one svgpathtools segment after its start, ending at its end, in `n` pieces
    (`_segment_pieces`)."""
    from svgpathtools import Arc, CubicBezier, QuadraticBezier

    t = np.arange(1, n + 1) / n
    s = 1.0 - t
    if isinstance(segment, CubicBezier):
        p0, p1, p2, p3 = segment.start, segment.control1, segment.control2, segment.end
        return s**3 * p0 + 3 * s**2 * t * p1 + 3 * s * t**2 * p2 + t**3 * p3
    if isinstance(segment, QuadraticBezier):
        p0, p1, p2 = segment.start, segment.control, segment.end
        return s**2 * p0 + 2 * s * t * p1 + t**2 * p2
    if isinstance(segment, Arc):
        rx, ry = abs(segment.radius.real), abs(segment.radius.imag)
        angle = math.radians(segment.theta) + math.radians(segment.delta) * np.arange(1, n + 1) / n
        rotation = np.exp(1j * math.radians(segment.rotation))
        points = segment.center + rotation * (rx * np.cos(angle) + 1j * ry * np.sin(angle))
        points[-1] = segment.end  # exact end point despite rounding
        return points
    return np.array([segment.end])


def polyline_paths(ds: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fast path for path data made only of absolute M and L commands, for many paths at once.

    Returns (points (N, 2) float64, counts (K,) int64, ok (K,) bool, starts (N,) bool): path k
    owns the next counts[k] points; ok[k] is False (and counts[k] 0) when ds[k] holds anything
    else, and svgpathtools must parse it; starts[i] is True where point i opens a stroke (the
    point of a moveto: every subpath is a stroke). The strokes equal `path_strokes`': a moveto
    alone draws nothing.

    All paths are scanned as one string: each number becomes the letter "n", so the token kinds
    ("M", "L", "n", "|" between paths) form a byte array that numpy can group."""
    count = len(ds)
    ok = np.array([_POLYLINE_D.match(d) is not None for d in ds], dtype=bool)
    joined = "|".join(d if good else "" for d, good in zip(ds, ok))
    kinds = _NUMBER.sub("n", joined).translate(_DROP_SEPARATORS)
    if kinds.strip("MLn|"):  # a stray character ("1e", "..") somewhere: find the paths that hold one
        ok &= np.array([not _NUMBER.sub("n", d).translate(_DROP_SEPARATORS).strip("MLn") for d in ds], dtype=bool)
        joined = "|".join(d if good else "" for d, good in zip(ds, ok))
        kinds = _NUMBER.sub("n", joined).translate(_DROP_SEPARATORS)
    numbers = _NUMBER.findall(joined)
    kind = np.frombuffer(kinds.encode("ascii"), dtype=np.uint8)
    is_break = kind == ord("|")
    owner = np.cumsum(is_break)[~is_break]
    kind = kind[~is_break]
    value_index = np.cumsum(kind == ord("n")) - 1  # index into `numbers` of each number token

    def drop(paths: np.ndarray) -> None:
        nonlocal kind, owner, value_index
        ok[paths] = False
        keep = ~np.isin(owner, paths)
        kind, owner, value_index = kind[keep], owner[keep], value_index[keep]

    starts = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.zeros(0, dtype=bool)
    bad = np.unique(owner[starts & (kind != ord("M"))])  # must open with a moveto
    if bad.size:
        drop(bad)
    is_command = kind != ord("n")
    per_command = np.bincount((np.cumsum(is_command) - 1)[~is_command], minlength=int(is_command.sum()))
    bad = np.unique(owner[is_command][(per_command < 2) | (per_command % 2 == 1)])
    if bad.size:  # a command without whole (x, y) pairs
        drop(bad)
        is_command = kind != ord("n")
        per_command = np.bincount((np.cumsum(is_command) - 1)[~is_command], minlength=int(is_command.sum()))

    values = np.fromiter(map(float, numbers), dtype=np.float64, count=len(numbers))
    points = values[value_index[~is_command]].reshape(-1, 2)
    point_owner = owner[~is_command][::2]
    pairs = per_command // 2
    is_move = np.zeros(len(points), dtype=bool)
    is_move[(np.cumsum(pairs) - pairs)[kind[is_command] == ord("M")]] = True
    lone = is_move & np.r_[is_move[1:] | (point_owner[1:] != point_owner[:-1]), True]
    points, is_move, point_owner = points[~lone], is_move[~lone], point_owner[~lone]
    return points, np.bincount(point_owner, minlength=count).astype(np.int64), ok, is_move


def flatten_tolerance(drawing: float, canvas: float | None = None) -> float:
    """The chord tolerance in canvas units for a drawing whose box has diagonal `drawing` on a
    canvas of diagonal `canvas` (None when unknown): FLATTEN_TOLERANCE of the smaller of the two.
    A drawing without extent (all one point) gets 1 unit (its curves have no bend)."""
    size = drawing if canvas is None or not canvas > 0 else min(drawing, canvas)
    if not math.isfinite(size):
        return math.inf
    return FLATTEN_TOLERANCE * size if size > 0 else 1.0


class _Subpath(NamedTuple):
    """One pen-down trace of a path: its start point, svgpathtools segments and whether it closes."""

    start: complex
    segments: list
    closed: bool


@lru_cache(maxsize=1)
def _omitted_arc_type() -> type:
    """The type svgpathtools' parser gives an arc that ends where it starts, which SVG says to omit
    (SVG 1.1 F.6.2); `_parse_subpaths` drops its segments.

    svgpathtools asserts start != end when it builds an Arc: its parser builds arcs through the
    name `Arc` of its path module, so that name is replaced (once, for the whole process) by a
    subclass that returns a zero-length Line of this type for such an arc instead. Every other arc
    is built as before."""
    import svgpathtools.path as sp

    class OmittedArc(sp.Line):
        pass

    class SpecArc(sp.Arc):
        def __new__(cls, start, radius, rotation, large_arc, sweep, end, *args, **kwargs):
            return OmittedArc(start, end) if start == end else super().__new__(cls)

    sp.Arc = SpecArc
    return OmittedArc


def _parse_subpaths(d: str, path, where: str) -> list[_Subpath]:
    """Path data -> its drawn subpaths, split at every moveto (svgpathtools parses each piece,
    starting from the current point the previous piece left: its end, or its start after `z`).
    Arcs that end where they start are omitted, as SVG says."""
    from svgpathtools import parse_path

    omitted = _omitted_arc_type()
    subpaths, current = [], 0j
    for chunk in _MOVETO.split(d):
        if not chunk.strip(_PATH_SPACE):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                segments = [s for s in parse_path(chunk, current_pos=current) if not isinstance(s, omitted)]
        except Exception as exc:  # svgpathtools raises assorted exception types on malformed data
            message = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise InputError(f"invalid path data in {where} ({message})", path) from None
        for segment in segments:
            if not all(isinstance(p, complex) for p in (segment.start, segment.end)):
                raise InputError(f"invalid path data in {where} (a segment without an end point)", path)
        closed = chunk.rstrip(_PATH_SPACE)[-1] in "zZ"
        if segments:
            start = segments[0].start
        elif chunk[0] in "Mm":  # a moveto without segments: only its point moves the pen
            numbers = [float(v) for v in _NUMBER.findall(chunk[1:])[:2]]
            start = complex(*numbers) + (current if chunk[0] == "m" else 0)
        else:
            start = current
        if segments or closed:
            subpaths.append(_Subpath(start, segments, closed))
        current = start if closed or not segments else segments[-1].end
    return subpaths


def _control_points(subpaths: list[_Subpath]) -> np.ndarray:
    """(K, 2) points whose box holds every subpath (Bezier control points, arc radius boxes)."""
    from svgpathtools import Arc, CubicBezier, QuadraticBezier

    points = []
    for subpath in subpaths:
        points.append(subpath.start)
        for segment in subpath.segments:
            if isinstance(segment, CubicBezier):
                points.extend((segment.control1, segment.control2, segment.end))
            elif isinstance(segment, QuadraticBezier):
                points.extend((segment.control, segment.end))
            elif isinstance(segment, Arc):
                r = max(abs(segment.radius.real), abs(segment.radius.imag))
                points.extend((segment.center + r * (1 + 1j), segment.center - r * (1 + 1j), segment.end))
            else:
                points.append(segment.end)
    points = np.asarray(points, dtype=np.complex128)
    return np.stack([points.real, points.imag], axis=1)


def _flatten_subpaths(subpaths: list[_Subpath], tolerance: float, path, where: str) -> list[np.ndarray]:
    """Each subpath as (P, 2) float64 points in the path's user units (a closed moveto is a dot)."""
    strokes, total = [], 0
    with np.errstate(all="ignore"):
        for subpath in subpaths:
            chunks = [np.array([subpath.start], dtype=np.complex128)]
            for segment in subpath.segments:
                pieces = _segment_pieces(segment, tolerance)
                total += pieces
                if total > MAX_POINTS_TOTAL:
                    raise InputError(f"{where} flattens into more than {MAX_POINTS_TOTAL:,} points", path)
                chunks.append(np.asarray(_segment_points(segment, pieces), dtype=np.complex128))
            points = np.concatenate(chunks)
            strokes.append(np.stack([points.real, points.imag], axis=1))
    return strokes


def path_strokes(d: str, tolerance: float, path=None, where: str = "<path>") -> list[np.ndarray]:
    """Path data -> one (P, 2) float64 array per drawn subpath, in the path's user units, curves
    flattened with `tolerance` user units; [] when nothing is drawn."""
    points, counts, ok, starts = polyline_paths([d])
    if ok[0]:
        return np.split(points, np.flatnonzero(starts)[1:]) if len(points) else []
    return _flatten_subpaths(_parse_subpaths(d, path, where), tolerance, path, where)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, tolerance: float) -> np.ndarray:
    """Closed (N + 1, 2) outline of an axis-aligned ellipse, from angle 0 (cx + rx, cy)."""
    n = max(_arc_pieces(max(rx, ry), 2 * math.pi, tolerance), 4)
    angle = 2 * math.pi * np.arange(n + 1) / n
    points = np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)
    points[-1] = points[0]
    return points


def _rect_points(x: float, y: float, w: float, h: float, rx: float, ry: float, tolerance: float) -> np.ndarray:
    """Closed outline of a (rounded) rectangle, clockwise from (x + rx, y)."""
    if rx <= 0 or ry <= 0:
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]], dtype=np.float64)
    n = max(_arc_pieces(max(rx, ry), math.pi / 2, tolerance), 1)
    quarter = np.arange(n + 1) / n * (math.pi / 2)
    corners = []
    centres = ((x + w - rx, y + ry), (x + w - rx, y + h - ry), (x + rx, y + h - ry), (x + rx, y + ry))
    for start, (cx, cy) in zip((-math.pi / 2, 0.0, math.pi / 2, math.pi), centres):
        angle = start + quarter
        corners.append(np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1))
    outline = np.concatenate(corners)
    return np.concatenate([outline, outline[:1]])


# ------------------------------------------------------------------------------------------- shapes


class _Geometry(NamedTuple):
    """A shape parsed but not yet flattened: `control` (K, 2) local points whose box holds it,
    `flatten(tolerance in user units)` -> its strokes as (P, 2) float64 arrays in user units, and
    `count(tolerance)` -> how many points flattening makes (0 for points written in the file), known
    before they are built."""

    control: np.ndarray
    flatten: Callable[[float], list[np.ndarray]]
    count: Callable[[float], int] = lambda tolerance: 0


def _fixed(points: np.ndarray) -> _Geometry:
    strokes = [points] if len(points) else []
    return _Geometry(points, lambda tolerance: strokes)


def _subpath_count(subpaths: list[_Subpath], tolerance: float) -> int:
    return sum(1 + sum(_segment_pieces(segment, tolerance) for segment in sub.segments) for sub in subpaths)


def _round_count(rx: float, ry: float, sweep: float, tolerance: float) -> int:
    """Points of a flattened ellipse (sweep 2 pi) or of the four corners of a rounded rectangle."""
    if sweep < 2 * math.pi:
        return 5 if rx <= 0 or ry <= 0 else 4 * (max(_arc_pieces(max(rx, ry), sweep, tolerance), 1) + 1) + 1
    return max(_arc_pieces(max(rx, ry), sweep, tolerance), 4) + 1


_EMPTY = _fixed(np.zeros((0, 2)))


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y1]], dtype=np.float64)


def _shape_geometry(element, tag: str, path, where: str, viewport: tuple[float, float] | None) -> _Geometry:
    """The geometry of a shape element in its own user units; no strokes when it draws nothing."""
    attrib = element.attrib
    ref_w, ref_h = viewport if viewport else (None, None)
    ref_d = math.hypot(ref_w, ref_h) / math.sqrt(2) if viewport else None

    def length(name: str, reference: float | None, default: float = 0.0) -> float:
        value = _length(attrib.get(name), path, f"{name} on {where}", reference)
        return default if value is None else value

    if tag == "path":
        d = attrib.get("d", "")
        subpaths = _parse_subpaths(d, path, where)
        if not subpaths:
            return _EMPTY
        return _Geometry(_control_points(subpaths), lambda tolerance: _flatten_subpaths(subpaths, tolerance, path, where),
                         lambda tolerance: _subpath_count(subpaths, tolerance))
    if tag in ("polyline", "polygon"):
        numbers = _numbers(attrib.get("points", ""), f"points on {where}", path)
        points = np.array(numbers[: len(numbers) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        if tag == "polygon" and len(points) > 1:
            points = np.concatenate([points, points[:1]])
        return _fixed(points)
    if tag == "line":
        return _fixed(np.array([[length("x1", ref_w), length("y1", ref_h)],
                                [length("x2", ref_w), length("y2", ref_h)]]))
    if tag == "rect":
        w, h = length("width", ref_w), length("height", ref_h)
        if not (w > 0 and h > 0):
            return _EMPTY
        rx_value = None if attrib.get("rx", "auto").strip() == "auto" else length("rx", ref_w)
        ry_value = None if attrib.get("ry", "auto").strip() == "auto" else length("ry", ref_h)
        rx = ry_value if rx_value is None else rx_value
        ry = rx_value if ry_value is None else ry_value
        rx, ry = min(max(rx or 0.0, 0.0), w / 2), min(max(ry or 0.0, 0.0), h / 2)
        x, y = length("x", ref_w), length("y", ref_h)
        return _Geometry(_box(x, y, x + w, y + h), lambda tolerance: [_rect_points(x, y, w, h, rx, ry, tolerance)],
                         lambda tolerance: _round_count(rx, ry, math.pi / 2, tolerance))
    if tag == "circle":
        rx = ry = length("r", ref_d)
    else:  # ellipse
        rx_value = None if attrib.get("rx", "auto").strip() == "auto" else length("rx", ref_w)
        ry_value = None if attrib.get("ry", "auto").strip() == "auto" else length("ry", ref_h)
        rx = ry_value if rx_value is None else rx_value
        ry = rx_value if ry_value is None else ry_value
    if not (rx and ry and rx > 0 and ry > 0):
        return _EMPTY
    cx, cy = length("cx", ref_w), length("cy", ref_h)
    return _Geometry(_box(cx - rx, cy - ry, cx + rx, cy + ry), lambda tolerance: [_ellipse_points(cx, cy, rx, ry, tolerance)],
                     lambda tolerance: _round_count(rx, ry, 2 * math.pi, tolerance))


# ------------------------------------------------------------------------------------- documents


def _local_name(tag) -> str | None:
    """The SVG-namespace local name of a tag, None for other namespaces and comments."""
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return local if namespace == SVG_NS else None
    return tag


def _metadata(root) -> dict:
    """The "sketchkit" object of the root <metadata> JSON, or {}."""
    for child in root:
        if _local_name(child.tag) == "metadata":
            text = "".join(child.itertext()).strip()
            if not text.startswith("{"):
                continue
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("sketchkit"), dict):
                return doc["sketchkit"]
    return {}


def _metadata_canvas(meta: dict) -> tuple[float, float] | None:
    canvas = meta.get("canvas")
    if (isinstance(canvas, list) and len(canvas) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in canvas)):
        return float(canvas[0]), float(canvas[1])
    return None


def _nested_viewport(element, path, viewport) -> np.ndarray:
    """Matrix of a nested <svg>: translate(x, y), then its viewBox fitted (meet, centred) into
    width x height when both are known."""
    ref_w, ref_h = viewport if viewport else (None, None)
    x = _length(element.attrib.get("x"), path, "x on a nested <svg>", ref_w) or 0.0
    y = _length(element.attrib.get("y"), path, "y on a nested <svg>", ref_h) or 0.0
    matrix = _transform_item("translate", [x, y])
    box = _viewbox(element.attrib.get("viewBox"), path)
    width = _length(element.attrib.get("width"), path, "width on a nested <svg>", ref_w)
    height = _length(element.attrib.get("height"), path, "height on a nested <svg>", ref_h)
    if box and width and height and width > 0 and height > 0:
        scale = min(width / box[2], height / box[3])
        tx = (width - box[2] * scale) / 2 - box[0] * scale
        ty = (height - box[3] * scale) / 2 - box[1] * scale
        matrix = matrix @ np.array([[scale, 0.0, tx], [0.0, scale, ty], [0.0, 0.0, 1.0]])
    return matrix


def _int_or_none(value: str | None) -> int | None:
    """An instance number; None (no instance) for text that is not an integer or is beyond int64."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:  # not a number, or more digits than Python converts
        return None
    return number if -2**63 <= number < 2**63 else None


# ------------------------------------------------------------------------------------------- reader

_PALE = "pale"  # a fill-only shape too pale to be ink: skipped, as background paper when it covers the canvas


@dataclass
class _Shapes:
    """Shape elements that may be strokes, in document order, as found by the walk (before
    flattening), and the elements skipped on the way."""

    elements: list = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)       # _STROKED, _FILLED or _PALE
    matrix_ids: list[int] = field(default_factory=list)  # index into `matrices`
    widths: list[float] = field(default_factory=list)    # stroke-width in the element's user units
    labels: list[str | None] = field(default_factory=list)
    instances: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)     # shape index, for messages
    orders: list[int] = field(default_factory=list)      # position among the counted elements
    matrices: list[np.ndarray] = field(default_factory=lambda: [np.eye(3)])
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (position, kind)


def _where(element, tag: str, number: int) -> str:
    where = f"<{tag}> #{number}"
    return where + (f" id={element.attrib['id'][:40]!r}" if "id" in element.attrib else "")


def _source_id(element) -> str | None:
    attrib = element.attrib
    value = attrib.get("data-source-id", attrib.get("id"))
    return value if value else None


def _collect(root, root_matrix: np.ndarray, viewport, path) -> _Shapes:
    """Walk the tree in document order: list the shape elements that may be strokes with their
    transform, inherited stroke width, label and instance, and what is skipped (module docstring)."""
    shapes = _Shapes()
    shapes.matrices.append(root_matrix)
    root_state = _State(matrix_id=1, stroke_width=1.0, visible=True, hidden=False, opacity=1.0, stroke=None,
                        stroke_opacity=1.0, fill=None, fill_opacity=1.0, color="black",
                        label=root.attrib.get("data-label"), instance=_int_or_none(root.attrib.get("data-instance")))
    root_state = _inherit(root_state, _style(root), viewport)
    stack = [(child, root_state) for child in reversed(list(root))]
    number = order = 0
    while stack:
        element, state = stack.pop()
        tag = _local_name(element.tag)
        is_shape = tag in SHAPES
        if not is_shape and tag not in CONTAINERS and tag not in UNREAD:
            continue  # other namespaces, non-drawing and unknown elements: not drawn, not entered, not counted
        attrib = element.attrib
        if attrib.get("data-sketchkit") == "legend":
            continue
        if not _PROPERTY_KEYS.isdisjoint(attrib):
            state = _inherit(state, _style(element), viewport)
        if tag in UNREAD:
            hidden = state.hidden or not state.visible or state.opacity <= 0
            shapes.skipped.append((order, f"hidden {tag}" if hidden else tag))
            order += 1
            continue
        if is_shape:
            number += 1
        if "transform" in attrib or tag == "svg":
            where = _where(element, tag, number) if is_shape else f"<{tag}>"
            matrix = shapes.matrices[state.matrix_id]
            if "transform" in attrib:
                matrix = matrix @ parse_transform(attrib["transform"], path, where)
            if tag == "svg":
                matrix = matrix @ _nested_viewport(element, path, viewport)
            shapes.matrices.append(matrix)
            state = state._replace(matrix_id=len(shapes.matrices) - 1)
        if "data-label" in attrib:
            state = state._replace(label=attrib["data-label"].strip() or None)
        if "data-instance" in attrib:
            state = state._replace(instance=_int_or_none(attrib["data-instance"]))
        if not is_shape:
            stack.extend((child, state) for child in reversed(list(element)))
            continue
        kind = _classify(state, tag)
        if kind.startswith("fill-only"):
            kind = _PALE
        if kind in (_STROKED, _FILLED, _PALE):
            shapes.elements.append(element)
            shapes.tags.append(tag)
            shapes.kinds.append(kind)
            shapes.matrix_ids.append(state.matrix_id)
            shapes.widths.append(state.stroke_width)
            shapes.labels.append(state.label)
            shapes.instances.append(-1 if state.instance is None else state.instance)
            shapes.numbers.append(number)
            shapes.orders.append(order)
        else:
            shapes.skipped.append((order, kind))
        order += 1
    return shapes



def _stretch(matrix: np.ndarray) -> float:
    """Largest singular value of the linear part of an affine matrix (closed form for 2 x 2)."""
    a, b, c, d = matrix[0, 0], matrix[1, 0], matrix[0, 1], matrix[1, 1]
    with np.errstate(all="ignore"):
        squares = a * a + b * b + c * c + d * d
        det = a * d - b * c
        value = math.sqrt(max((squares + math.sqrt(max(squares * squares - 4 * det * det, 0.0))) / 2, 0.0)) \
            if math.isfinite(squares) and math.isfinite(det) else math.inf
    return value




def _element_boxes(points: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(E, 4) x0, y0, x1, y1 of consecutive point groups (NaN for a group without points)."""
    boxes = np.full((len(counts), 4), np.nan)
    has = counts > 0
    if has.any():
        starts = (np.cumsum(counts) - counts)[has]
        with np.errstate(all="ignore"):
            boxes[has, :2] = np.minimum.reduceat(points, starts, axis=0)
            boxes[has, 2:] = np.maximum.reduceat(points, starts, axis=0)
    return boxes


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return points @ matrix[:2, :2].T + matrix[:2, 2]


def _encloses(element, tag: str) -> bool:
    """Whether a shape outlines an area (a line or an open path is never paper)."""
    return tag in ("rect", "polygon", "circle", "ellipse") or (tag == "path" and bool(
        set(element.attrib.get("d", "")) & {"z", "Z"}))


def _covers(box: np.ndarray, canvas: np.ndarray) -> bool:
    """Whether `box` (x0, y0, x1, y1) covers BACKGROUND_COVER of `canvas` in both directions."""
    with np.errstate(all="ignore"):
        overlap = np.minimum(box[2:], canvas[2:]) - np.maximum(box[:2], canvas[:2])
        return bool((overlap >= BACKGROUND_COVER * (canvas[2:] - canvas[:2])).all())


def _strokes(shapes: _Shapes, viewport, canvas: tuple[float, float] | None,
             path) -> tuple[list[np.ndarray], np.ndarray]:
    """The strokes in canvas units and the (T,) index of the element each came from, in document
    order; background and pale fill-only shapes are moved to `shapes.skipped`.

    Paths of absolute M/L commands go through the batched fast path; every other element is
    parsed first (its box from its control points), then flattened with the chord tolerance
    of the whole drawing mapped into its user units."""
    count = len(shapes.elements)
    matrices = np.stack(shapes.matrices)
    matrix_ids = np.asarray(shapes.matrix_ids, dtype=np.int64)
    path_rows = np.flatnonzero(np.array([tag == "path" for tag in shapes.tags], dtype=bool))
    fast_points, fast_counts, fast_ok, fast_starts = polyline_paths(
        [shapes.elements[k].attrib.get("d", "") for k in path_rows])
    total = len(fast_points)
    if total > MAX_POINTS_TOTAL:
        raise InputError(f"the SVG has more than {MAX_POINTS_TOTAL:,} points", path)
    with np.errstate(all="ignore"):  # overflowing transforms give inf/nan, refused later by coordinate checks
        fast_points = _transform_points(fast_points, fast_counts, matrix_ids[path_rows], matrices)
    boxes = np.full((count, 4), np.nan)
    boxes[path_rows] = _element_boxes(fast_points, fast_counts)
    done = np.zeros(count, dtype=bool)
    done[path_rows[fast_ok]] = True
    if len(path_rows) - int(fast_ok.sum()) > MAX_CURVE_ELEMENTS:  # svgpathtools parses these, slowly
        raise InputError(f"the SVG has more than {MAX_CURVE_ELEMENTS:,} paths with curves, arcs or relative "
                         "commands", path)
    geometries: dict[int, _Geometry] = {}
    for k in np.flatnonzero(~done):
        element, tag = shapes.elements[k], shapes.tags[k]
        geometry = _shape_geometry(element, tag, path, _where(element, tag, shapes.numbers[k]), viewport)
        geometries[int(k)] = geometry
        if len(geometry.control):
            control = _apply(matrices[matrix_ids[k]], geometry.control)
            boxes[k] = [*control.min(axis=0), *control.max(axis=0)]

    # background paper and pale fills are skipped; the rest are strokes
    kinds = np.array(shapes.kinds, dtype=object)
    stroked = kinds == _STROKED
    if canvas is not None:
        paper = np.array([0.0, 0.0, canvas[0], canvas[1]])
    elif (stroked & ~np.isnan(boxes[:, 0])).any():
        with np.errstate(all="ignore"):
            paper = np.r_[np.nanmin(boxes[stroked, :2], axis=0), np.nanmax(boxes[stroked, 2:], axis=0)]
    else:
        paper = None
    keep = np.ones(count, dtype=bool)
    for k in np.flatnonzero(~stroked):
        tag = shapes.tags[k]
        if (paper is not None and not np.isnan(boxes[k, 0]) and _encloses(shapes.elements[k], tag)
                and _covers(boxes[k], paper)):
            shapes.skipped.append((shapes.orders[k], f"background {tag}"))
            keep[k] = False
        elif kinds[k] == _PALE:
            shapes.skipped.append((shapes.orders[k], f"fill-only {tag}"))
            keep[k] = False

    # one tolerance for the whole drawing, from its box
    kept_boxes = boxes[keep & ~np.isnan(boxes[:, 0])]
    drawing = 0.0
    if len(kept_boxes):
        with np.errstate(all="ignore"):
            drawing = float(np.hypot(*(kept_boxes[:, 2:].max(axis=0) - kept_boxes[:, :2].min(axis=0))))
    tolerance = flatten_tolerance(drawing, math.hypot(*canvas) if canvas is not None else None)

    owners, strokes, flattened = [], [], 0
    if len(fast_points):
        point_owner = np.repeat(path_rows, fast_counts)
        starts = np.flatnonzero(fast_starts)
        owners.append(point_owner[starts])
        strokes.extend(np.split(fast_points, starts[1:]))
    for k, geometry in geometries.items():
        if not keep[k]:
            continue
        matrix = matrices[matrix_ids[k]]
        stretch = _stretch(matrix)
        local_tolerance = tolerance / stretch if 0 < stretch < math.inf else math.inf
        flattened += geometry.count(local_tolerance)
        if flattened > MAX_FLATTENED_POINTS:  # checked before the points are built
            raise InputError(f"the SVG's curves, arcs and circles flatten into more than {MAX_FLATTENED_POINTS:,} "
                             "points", path)
        local = geometry.flatten(local_tolerance)
        total += sum(len(s) for s in local)
        if total > MAX_POINTS_TOTAL:
            raise InputError(f"the SVG has more than {MAX_POINTS_TOTAL:,} points", path)
        owners.append(np.full(len(local), k, dtype=np.int64))
        strokes.extend(_apply(matrix, s) for s in local)
    if not strokes:
        return [], np.zeros(0, dtype=np.int64)
    owners = np.concatenate(owners)
    order = np.argsort(owners, kind="stable")
    chosen = order[keep[owners[order]]]
    return [strokes[i] for i in chosen], owners[chosen]


def _transform_points(points: np.ndarray, counts: np.ndarray, matrix_ids: np.ndarray,
                      matrices: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Apply each element's (3, 3) matrix to its points, chunk by chunk (no (N, 3, 3) gather)."""
    coefficients = matrices[:, :2, :].reshape(len(matrices), 6)  # a c e b d f
    if np.all(coefficients[matrix_ids] == coefficients[0]):
        return points
    point_matrix = np.repeat(matrix_ids, counts)
    out = np.empty_like(points)
    with np.errstate(all="ignore"):
        for lo in range(0, len(points), chunk):
            hi = min(lo + chunk, len(points))
            a, c, e, b, d, f = coefficients[point_matrix[lo:hi]].T
            x, y = points[lo:hi, 0], points[lo:hi, 1]
            out[lo:hi, 0] = a * x + c * y + e
            out[lo:hi, 1] = b * x + d * y + f
    return out




def read_svg(data: bytes, path) -> Sketch:
    """SVG bytes -> Sketch (see the module docstring for what counts as a stroke and the frames)."""
    root = _parse_xml(decode_svg(data, path), path)
    if _local_name(root.tag) != "svg":
        raise InputError(f"not an SVG document: the root element is <{str(root.tag).rpartition('}')[2]}>", path)
    meta = _metadata(root)
    box = _viewbox(root.attrib.get("viewBox"), path)
    if box:
        width, height = box[2], box[3]
        root_matrix = _transform_item("translate", [-box[0], -box[1]])
    else:
        width = _length(root.attrib.get("width"), path, "width on <svg>")
        height = _length(root.attrib.get("height"), path, "height on <svg>")
        width = width if width is not None and width > 0 else None
        height = height if height is not None and height > 0 else None
        if width is None or height is None:
            fallback = _metadata_canvas(meta)
            if fallback:
                width, height = (width or fallback[0]), (height or fallback[1])
        root_matrix = np.eye(3)
    viewport = (width, height) if width and height else None
    if "transform" in root.attrib:
        with np.errstate(all="ignore"):
            root_matrix = root_matrix @ parse_transform(root.attrib["transform"], path, "<svg>")

    with np.errstate(all="ignore"):  # overflowing transforms give inf/nan, refused below by coordinate checks
        shapes = _collect(root, root_matrix, viewport, path)
        strokes, owners = _strokes(shapes, viewport, viewport if viewport and all(map(math.isfinite, viewport))
                                   else None, path)
    skipped: dict[str, int] = {}
    for _, kind in sorted(shapes.skipped, key=lambda item: item[0]):
        skipped[kind] = skipped.get(kind, 0) + 1
    if not strokes:
        raise InputError("no strokes found: the SVG has no visible stroked path, line, polyline, polygon, rect, "
                         f"circle or ellipse{describe_skipped(skipped, ' (skipped: {})')}", path)
    matrices = np.stack(shapes.matrices)
    matrix_ids = np.asarray(shapes.matrix_ids, dtype=np.int64)[owners]
    with np.errstate(all="ignore"):
        area_scale = np.sqrt(np.abs(np.linalg.det(matrices[:, :2, :2])))
        widths = np.asarray(shapes.widths, dtype=np.float64)[owners] * area_scale[matrix_ids]
    widths = np.where(np.isfinite(widths) & (widths >= 0), widths, 1.0)
    labels = [shapes.labels[k] for k in owners]
    instances = np.asarray(shapes.instances, dtype=np.int64)[owners]
    source_ids = [_source_id(shapes.elements[k]) for k in owners]
    caption = meta.get("caption") if isinstance(meta.get("caption"), str) and meta["caption"].strip() else None
    recorded = _metadata_canvas(meta)
    widen = 1.0
    if recorded and box and box[0] == 0 and box[1] == 0:  # sketchkit's own SVG: the viewBox also holds the legend
        widen = box[2] / recorded[0] if recorded[0] else 1.0
        width, height = recorded
    order = _written_order([shapes.elements[k] for k in owners])
    if order is not None:  # sketchkit's own SVG groups strokes in layers by label: restore their order
        strokes, widths, instances = [strokes[i] for i in order], widths[order], instances[order]
        labels, source_ids = [labels[i] for i in order], [source_ids[i] for i in order]
    sketch = build_sketch(strokes, path, width=width, height=height,
                          labels=labels if any(label is not None for label in labels) else None,
                          instance_ids=instances if (instances >= 0).any() else None,
                          caption=caption, stroke_widths=widths,
                          source_ids=source_ids if any(i is not None for i in source_ids) else None,
                          skipped=skipped)
    return replace(sketch, display_size=_display_size(root, widen))


def _display_size(root, widen: float = 1.0) -> tuple[str, str] | None:
    """The root's declared width and height with their units ("210mm"), when both are absolute lengths;
    the width divided by `widen` (sketchkit's own SVG: the legend panel's share of the viewBox)."""
    size = [root.attrib.get(k, "").strip() for k in ("width", "height")]
    matches = [_LENGTH.match(v) for v in size]
    if not all(m and not v.endswith("%") for m, v in zip(matches, size)):
        return None
    if widen != 1.0:
        number = float(matches[0].group(1)) / widen
        size[0] = f"{number:.6g}{matches[0].group(2)}"
    return size[0], size[1]


def _written_order(elements) -> np.ndarray | None:
    """When every drawn element carries a distinct `data-stroke` index 0..S-1 (sketchkit's labelled SVG),
    the permutation that puts the strokes back in that order; else None (document order stands)."""
    indices = [_int_or_none(e.attrib.get("data-stroke")) for e in elements]
    if any(i is None for i in indices) or sorted(indices) != list(range(len(indices))):
        return None
    return np.argsort(np.asarray(indices))


@lru_cache(maxsize=256)
def _stroke_width(value: str, inherited: float, viewport: tuple[float, float] | None) -> float:
    """A stroke-width property in user units; like a browser, an invalid value, "inherit" or an
    unresolvable percentage keeps the inherited width."""
    match = _LENGTH.match(value)
    if not match:
        return inherited
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        reference = _diagonal(viewport)
        return inherited if reference is None else number * reference / 100.0
    if unit not in _UNITS or not number >= 0:
        return inherited
    return number * _UNITS[unit]


def _diagonal(viewport: tuple[float, float] | None) -> float | None:
    """The reference length of percentages that are neither horizontal nor vertical."""
    return None if viewport is None else math.hypot(*viewport) / math.sqrt(2)
