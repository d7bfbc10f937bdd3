"""SVG sketches: every drawable element is one stroke, in canvas units.

Parsing is defused: defusedxml with DTDs, entities and external references forbidden. A plain
`<!DOCTYPE svg PUBLIC "..." "...">` line without an internal subset (as Illustrator writes) is
removed before parsing, since it can define nothing; any other DTD is refused. Nothing is ever
fetched: `<use>` and `<image>` (internal or external href) are not drawn.

Strokes come from path (svgpathtools for curves), polyline, polygon (closed), line, rect, circle
and ellipse. A path with several subpaths stays one stroke, its points concatenated. Curves are
flattened adaptively: a Bezier is cut into n equal parameter steps with n from its second
derivative bound (chord error < FLATTEN_TOLERANCE canvas units), an arc / circle / ellipse into
equal angle steps whose sagitta is below the same tolerance; at most MAX_POINTS_PER_CURVE points
per curve. Straight segments keep exactly their end points.

Frames: `transform` on elements and ancestors (matrix, translate, scale, rotate, skewX, skewY)
is applied; the root viewBox defines the canvas (canvas size = viewBox width/height, points
shifted by the viewBox origin so the canvas starts at 0,0). Without a viewBox, user units are
pixels: width/height with units (px, pt, pc, mm, cm, in, em, ex) give the canvas, and a missing or
percentage size falls back to the sketchkit metadata canvas, then to the ink bounds.

Skipped: defs, metadata, title, desc, text, style, clipPath, mask, symbol, pattern (and other
non-drawing elements), elements of other namespaces, subtrees marked data-sketchkit="legend",
display="none" subtrees and visibility="hidden" elements (attribute or style).

Per stroke: stroke-width (attribute or style, inherited, default 1) times the transform's area
scale sqrt(|det|) -> Sketch.stroke_widths; data-label -> Sketch.labels and data-instance ->
Sketch.instance_ids (both inherited from groups). sketchkit's own labelled SVG keeps its caption in
the root `<metadata>` as JSON: {"sketchkit": {"caption": ..., "canvas": [w, h], ...}}.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import MAX_POINTS_PER_CURVE, MAX_POINTS_TOTAL, MAX_SVG_ELEMENTS
from sketchkit.io.strokes_json import build_sketch
from sketchkit.types import Sketch

SVG_NS = "http://www.w3.org/2000/svg"
FLATTEN_TOLERANCE = 0.25
"""Largest distance, in canvas units, between a flattened curve and the true curve."""

CONTAINERS = frozenset({"g", "a", "switch", "svg"})  # entered; any other element (defs, text, use, ...) is not
SHAPES = frozenset({"path", "polyline", "polygon", "line", "rect", "circle", "ellipse"})

_UNITS = {"": 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "q": 96 / 101.6, "em": 16.0, "rem": 16.0, "ex": 8.0}
_NUMBER_PATTERN = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = re.compile(_NUMBER_PATTERN)
_LENGTH = re.compile(rf"^\s*({_NUMBER_PATTERN})\s*([a-zA-Z]*|%)\s*$")
_SEPARATORS = re.compile(r"^[\s,]*$")
_TRANSFORM_ITEM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^()]*)\)")
_TRANSFORM_ARGS = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}
_SIMPLE_DOCTYPE = re.compile(r"<!DOCTYPE\s+svg(?:\s+PUBLIC\s+(\"[^\"]*\"|'[^']*')\s+(\"[^\"]*\"|'[^']*')"
                             r"|\s+SYSTEM\s+(\"[^\"]*\"|'[^']*'))?\s*>", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_POLYLINE_D = re.compile(r"^[\s,0-9eE.+\-ML]*$")
_DROP_SEPARATORS = str.maketrans("", "", " \t\r\n\f,")


# -------------------------------------------------------------------------------------------- text


def decode_svg(data: bytes, path) -> str:
    """SVG bytes -> text: BOM (UTF-8, UTF-16, UTF-32), BOM-less UTF-16, the XML declaration's
    encoding, else UTF-8. InputError for bytes that are not text in that encoding."""
    boms = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8-sig"),
            (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))
    encoding, skip = None, 0
    for bom, name in boms:
        if data.startswith(bom):
            encoding, skip = name, (0 if name == "utf-8-sig" else len(bom))
            break
    if encoding is None:
        if data[:2] == b"<\x00":
            encoding = "utf-16-le"
        elif data[:2] == b"\x00<":
            encoding = "utf-16-be"
        else:
            declared = _XML_ENCODING.match(data.lstrip()[:200])
            encoding = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    try:
        return data[skip:].decode(encoding)
    except LookupError:
        raise InputError(f"the SVG declares an unknown text encoding {encoding!r}", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"the SVG is not valid {encoding} text (byte {exc.start})", path) from None


def _parse_xml(text: str, path):
    """Root element of the defused parse; InputError for bad XML, DTDs or too many elements."""
    import defusedxml
    import defusedxml.ElementTree as SafeET
    from xml.etree.ElementTree import ParseError, TreeBuilder

    text = _SIMPLE_DOCTYPE.sub("", text, count=1)

    class _TooManyElements(Exception):
        pass

    class CountingBuilder(TreeBuilder):
        count = 0

        def start(self, tag, attrs):
            self.count += 1
            if self.count > MAX_SVG_ELEMENTS:
                raise _TooManyElements
            return super().start(tag, attrs)

    try:
        # start tags are the "<" not opening an end tag, a comment, CDATA or a processing instruction
        start_tags = text.count("<") - text.count("</") - text.count("<!") - text.count("<?")
        if start_tags <= MAX_SVG_ELEMENTS:
            return SafeET.fromstring(text, forbid_dtd=True)
        parser = SafeET.DefusedXMLParser(target=CountingBuilder(), forbid_dtd=True)
        parser.feed(text)
        return parser.close()
    except _TooManyElements:
        raise InputError(f"the SVG has more than {MAX_SVG_ELEMENTS:,} elements", path) from None
    except defusedxml.DTDForbidden:
        raise InputError("the SVG has a DTD (<!DOCTYPE ... [...]>); sketchkit refuses DTDs because entity "
                         "expansion and external references are unsafe", path) from None
    except defusedxml.EntitiesForbidden:
        raise InputError("the SVG defines XML entities, which sketchkit refuses (entity expansion is unsafe)",
                         path) from None
    except defusedxml.ExternalReferenceForbidden:
        raise InputError("the SVG references an external entity, which sketchkit never fetches", path) from None
    except defusedxml.DefusedXmlException as exc:
        raise InputError(f"the SVG uses an XML feature sketchkit refuses ({type(exc).__name__})", path) from None
    except ParseError as exc:
        raise InputError(f"not well-formed XML ({exc})", path) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"cannot parse the XML ({type(exc).__name__})", path) from None


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


def _style(element) -> dict[str, str]:
    """Presentation properties of an element: attributes overridden by its `style` declarations."""
    props = {key: element.attrib[key] for key in ("display", "visibility", "stroke-width") if key in element.attrib}
    style = element.attrib.get("style")
    if style:
        for declaration in style.split(";"):
            name, sep, value = declaration.partition(":")
            if sep:
                props[name.strip().lower()] = value.replace("!important", "").strip()
    return props


def parse_transform(text: str, path, where: str = "an element") -> np.ndarray:
    """An SVG transform list -> (3, 3) float64 affine matrix (points as column vectors)."""
    matrix = np.eye(3)
    position, length = 0, len(text)
    while position < length:
        if not text[position:].strip(" \t\r\n,"):
            break
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


def _segment_points(segment, tolerance: float) -> np.ndarray:
    """Complex points of one svgpathtools segment after its start, ending at its end."""
    from svgpathtools import Arc, CubicBezier, QuadraticBezier

    if isinstance(segment, CubicBezier):
        p0, p1, p2, p3 = segment.start, segment.control1, segment.control2, segment.end
        n = _pieces(6.0 * max(abs(p0 - 2 * p1 + p2), abs(p1 - 2 * p2 + p3)), tolerance)
        t = np.arange(1, n + 1) / n
        s = 1.0 - t
        return s**3 * p0 + 3 * s**2 * t * p1 + 3 * s * t**2 * p2 + t**3 * p3
    if isinstance(segment, QuadraticBezier):
        p0, p1, p2 = segment.start, segment.control, segment.end
        n = _pieces(2.0 * abs(p0 - 2 * p1 + p2), tolerance)
        t = np.arange(1, n + 1) / n
        s = 1.0 - t
        return s**2 * p0 + 2 * s * t * p1 + t**2 * p2
    if isinstance(segment, Arc):
        rx, ry = abs(segment.radius.real), abs(segment.radius.imag)
        sweep = math.radians(segment.delta)
        n = _arc_pieces(max(rx, ry), sweep, tolerance)
        angle = math.radians(segment.theta) + sweep * np.arange(1, n + 1) / n
        rotation = np.exp(1j * math.radians(segment.rotation))
        points = segment.center + rotation * (rx * np.cos(angle) + 1j * ry * np.sin(angle))
        points[-1] = segment.end  # exact end point despite rounding
        return points
    return np.array([segment.end])


def polyline_paths(ds: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast path for path data made only of absolute M and L commands, for many paths at once.

    Returns (points (N, 2) float64, counts (K,) int64, ok (K,) bool): path k owns the next
    counts[k] points; ok[k] is False (and counts[k] 0) when ds[k] holds anything else, and
    svgpathtools must parse it. The points equal the general path's: a moveto alone draws
    nothing, and a subpath starting where the previous one ended does not repeat that point.

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
    repeat = is_move & np.r_[False, (point_owner[1:] == point_owner[:-1]) & (points[1:] == points[:-1]).all(axis=1)]
    points, point_owner = points[~repeat], point_owner[~repeat]
    return points, np.bincount(point_owner, minlength=count).astype(np.int64), ok


def path_points(d: str, tolerance: float, path, where: str) -> np.ndarray:
    """Path data -> (N, 2) float64 points in the path's user units (N = 0 when nothing is drawn)."""
    points, _, ok = polyline_paths([d])
    return points if ok[0] else _general_path_points(d, tolerance, path, where)


def _general_path_points(d: str, tolerance: float, path, where: str) -> np.ndarray:
    """Any path data through svgpathtools, curves flattened (see `path_points`)."""
    from svgpathtools import parse_path

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            segments = list(parse_path(d))
    except Exception as exc:  # svgpathtools raises assorted exception types on malformed data
        message = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"invalid path data in {where} ({message})", path) from None
    chunks, last_end, total = [], None, 0
    with np.errstate(all="ignore"):
        for segment in segments:
            if not all(isinstance(p, complex) for p in (segment.start, segment.end)):
                raise InputError(f"invalid path data in {where} (a segment without an end point)", path)
            if last_end is None or segment.start != last_end:
                chunks.append(np.array([segment.start], dtype=np.complex128))
            chunks.append(np.asarray(_segment_points(segment, tolerance), dtype=np.complex128))
            last_end = segment.end
            total += len(chunks[-1])
            if total > MAX_POINTS_TOTAL:
                raise InputError(f"{where} flattens into more than {MAX_POINTS_TOTAL:,} points", path)
    if not chunks:
        return np.zeros((0, 2))
    points = np.concatenate(chunks)
    return np.stack([points.real, points.imag], axis=1)


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


def _shape_points(element, tag: str, tolerance: float, path, where: str,
                  viewport: tuple[float, float] | None) -> np.ndarray:
    """(N, 2) float64 points of a shape element in its own user units; N = 0 when it draws nothing."""
    attrib = element.attrib
    ref_w, ref_h = viewport if viewport else (None, None)
    ref_d = math.hypot(ref_w, ref_h) / math.sqrt(2) if viewport else None

    def length(name: str, reference: float | None, default: float = 0.0) -> float:
        value = _length(attrib.get(name), path, f"{name} on {where}", reference)
        return default if value is None else value

    if tag == "path":
        return path_points(attrib.get("d", ""), tolerance, path, where)
    if tag in ("polyline", "polygon"):
        numbers = _numbers(attrib.get("points", ""), f"points on {where}", path)
        points = np.array(numbers[: len(numbers) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        if tag == "polygon" and len(points) > 1:
            points = np.concatenate([points, points[:1]])
        return points
    if tag == "line":
        return np.array([[length("x1", ref_w), length("y1", ref_h)], [length("x2", ref_w), length("y2", ref_h)]])
    if tag == "rect":
        w, h = length("width", ref_w), length("height", ref_h)
        if not (w > 0 and h > 0):
            return np.zeros((0, 2))
        rx_value = None if attrib.get("rx", "auto").strip() == "auto" else length("rx", ref_w)
        ry_value = None if attrib.get("ry", "auto").strip() == "auto" else length("ry", ref_h)
        rx = ry_value if rx_value is None else rx_value
        ry = rx_value if ry_value is None else ry_value
        rx, ry = min(max(rx or 0.0, 0.0), w / 2), min(max(ry or 0.0, 0.0), h / 2)
        return _rect_points(length("x", ref_w), length("y", ref_h), w, h, rx, ry, tolerance)
    if tag == "circle":
        r = length("r", ref_d)
        if not r > 0:
            return np.zeros((0, 2))
        return _ellipse_points(length("cx", ref_w), length("cy", ref_h), r, r, tolerance)
    # ellipse
    rx_value = None if attrib.get("rx", "auto").strip() == "auto" else length("rx", ref_w)
    ry_value = None if attrib.get("ry", "auto").strip() == "auto" else length("ry", ref_h)
    rx = ry_value if rx_value is None else rx_value
    ry = rx_value if ry_value is None else ry_value
    if not (rx and ry and rx > 0 and ry > 0):
        return np.zeros((0, 2))
    return _ellipse_points(length("cx", ref_w), length("cy", ref_h), rx, ry, tolerance)


# ------------------------------------------------------------------------------------------- reader


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
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass
class _Shapes:
    """Drawable elements in document order, as found by the traversal (before flattening)."""

    elements: list = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    matrix_ids: list[int] = field(default_factory=list)  # index into `matrices`
    widths: list[float] = field(default_factory=list)    # stroke-width in the element's user units
    labels: list[str | None] = field(default_factory=list)
    instances: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)     # shape index, for messages
    matrices: list[np.ndarray] = field(default_factory=lambda: [np.eye(3)])


def _where(element, tag: str, number: int) -> str:
    where = f"<{tag}> #{number}"
    return where + (f" id={element.attrib['id'][:40]!r}" if "id" in element.attrib else "")


def _collect(root, root_matrix: np.ndarray, viewport, path) -> _Shapes:
    """Walk the tree in document order and list the visible drawable elements with their
    transform, inherited stroke width, label and instance."""
    shapes = _Shapes()
    root_props = _style(root)
    if root_props.get("display", "").strip().lower() == "none":
        return shapes
    shapes.matrices.append(root_matrix)
    root_width = _stroke_width(root_props.get("stroke-width", "1"), 1.0, viewport)
    root_visible = root_props.get("visibility", "visible").strip().lower() not in ("hidden", "collapse")
    # stack entries: (element, matrix id, stroke width, visible, label, instance)
    stack = [(child, 1, root_width, root_visible, root.attrib.get("data-label"),
              _int_or_none(root.attrib.get("data-instance"))) for child in reversed(list(root))]
    number = 0
    while stack:
        element, matrix_id, stroke_width, visible, label, instance = stack.pop()
        tag = _local_name(element.tag)
        is_shape = tag in SHAPES
        if not is_shape and tag not in CONTAINERS:
            continue  # other namespaces, skipped and unknown elements: not drawn, not entered
        attrib = element.attrib
        if attrib.get("data-sketchkit") == "legend":
            continue
        if is_shape:
            number += 1
        if "style" in attrib or "display" in attrib or "visibility" in attrib or "stroke-width" in attrib:
            props = _style(element)
            if props.get("display", "").strip().lower() == "none":
                continue
            keyword = props.get("visibility", "inherit").strip().lower()
            if keyword != "inherit":
                visible = keyword not in ("hidden", "collapse")
            if "stroke-width" in props:
                stroke_width = _stroke_width(props["stroke-width"], stroke_width, viewport)
        if "transform" in attrib or tag == "svg":
            where = _where(element, tag, number) if is_shape else f"<{tag}>"
            matrix = shapes.matrices[matrix_id]
            if "transform" in attrib:
                matrix = matrix @ parse_transform(attrib["transform"], path, where)
            if tag == "svg":
                matrix = matrix @ _nested_viewport(element, path, viewport)
            shapes.matrices.append(matrix)
            matrix_id = len(shapes.matrices) - 1
        if "data-label" in attrib:
            label = attrib["data-label"].strip() or None
        if "data-instance" in attrib:
            instance = _int_or_none(attrib["data-instance"])
        if not is_shape:
            stack.extend((child, matrix_id, stroke_width, visible, label, instance)
                         for child in reversed(list(element)))
        elif visible:
            shapes.elements.append(element)
            shapes.tags.append(tag)
            shapes.matrix_ids.append(matrix_id)
            shapes.widths.append(stroke_width)
            shapes.labels.append(label)
            shapes.instances.append(-1 if instance is None else instance)
            shapes.numbers.append(number)
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


def _flatten(shapes: _Shapes, viewport, path) -> tuple[np.ndarray, np.ndarray]:
    """Local points of every element: (points (N, 2) float64 in user units, counts (E,) int64).

    Paths of absolute M/L commands go through the batched fast path; every other element is
    flattened on its own with the chord tolerance mapped into its user units."""
    count = len(shapes.elements)
    is_path = np.array([tag == "path" for tag in shapes.tags], dtype=bool)
    path_rows = np.flatnonzero(is_path)
    fast_points, fast_counts, fast_ok = polyline_paths([shapes.elements[k].attrib.get("d", "") for k in path_rows])
    counts = np.zeros(count, dtype=np.int64)
    counts[path_rows] = fast_counts
    done = np.zeros(count, dtype=bool)
    done[path_rows[fast_ok]] = True
    chunks: dict[int, np.ndarray] = {}
    total = int(fast_counts.sum())
    for k in np.flatnonzero(~done):
        element, tag = shapes.elements[k], shapes.tags[k]
        stretch = _stretch(shapes.matrices[shapes.matrix_ids[k]])
        tolerance = FLATTEN_TOLERANCE / stretch if 0 < stretch < math.inf else math.inf
        where = _where(element, tag, shapes.numbers[k])
        if tag == "path":  # the fast path could not take it
            local = _general_path_points(element.attrib.get("d", ""), tolerance, path, where)
        else:
            local = _shape_points(element, tag, tolerance, path, where, viewport)
        chunks[int(k)] = local
        counts[k] = len(local)
        total += len(local)
        if total > MAX_POINTS_TOTAL:
            raise InputError(f"the SVG has more than {MAX_POINTS_TOTAL:,} points", path)
    if not chunks:
        return fast_points, counts
    # place the fast-path points and the others in document order
    offsets = np.r_[0, np.cumsum(counts)]
    points = np.empty((int(offsets[-1]), 2))
    fast_rows = path_rows[fast_ok]
    fast_start = np.r_[0, np.cumsum(counts[fast_rows])[:-1]]
    points[np.repeat(offsets[fast_rows] - fast_start, counts[fast_rows]) + np.arange(len(fast_points))] = fast_points
    for k, local in chunks.items():
        points[offsets[k]:offsets[k + 1]] = local
    return points, counts


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
        local, counts = _flatten(shapes, viewport, path)
    drawn = counts > 0
    if not drawn.any():
        raise InputError("no strokes found: the SVG has no visible path, line, polyline, polygon, rect, circle "
                         "or ellipse", path)
    matrices = np.stack(shapes.matrices)
    matrix_ids = np.asarray(shapes.matrix_ids, dtype=np.int64)
    points = _transform_points(local, counts, matrix_ids, matrices)
    strokes = np.split(points, np.cumsum(counts[drawn])[:-1])
    with np.errstate(all="ignore"):
        area_scale = np.sqrt(np.abs(np.linalg.det(matrices[:, :2, :2])))
        widths = np.asarray(shapes.widths, dtype=np.float64)[drawn] * area_scale[matrix_ids[drawn]]
    widths = np.where(np.isfinite(widths) & (widths >= 0), widths, 1.0)
    labels = [label for label, keep in zip(shapes.labels, drawn) if keep]
    instances = np.asarray(shapes.instances, dtype=np.int64)[drawn]
    caption = meta.get("caption") if isinstance(meta.get("caption"), str) and meta["caption"].strip() else None
    recorded = _metadata_canvas(meta)
    if recorded and box and box[0] == 0 and box[1] == 0:  # sketchkit's own SVG: the viewBox also holds the legend
        width, height = recorded
    order = _written_order([e for e, keep in zip(shapes.elements, drawn) if keep])
    if order is not None:  # sketchkit's own SVG groups strokes in layers by label: restore their order
        strokes, widths, instances = [strokes[i] for i in order], widths[order], instances[order]
        labels = [labels[i] for i in order]
    return build_sketch(strokes, path, width=width, height=height,
                        labels=labels if any(label is not None for label in labels) else None,
                        instance_ids=instances if (instances >= 0).any() else None,
                        caption=caption, stroke_widths=widths)


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
