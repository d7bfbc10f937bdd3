"""The labelled SVG writer (the reader is sketchkit.io.svg).

- One `<path>` per stroke in the sketch's own canvas units, coloured by predicted label (`--palette`),
  with `data-label`, `data-stroke` (its index), `data-instance`, `data-confidence`, and the source
  element's id as `data-source-id` (also as `id` when that id names one stroke only).
- One Inkscape layer per label (`<g inkscape:groupmode="layer" inkscape:label="tree">`, unlabelled
  strokes in a layer "unlabelled"), so Inkscape lists the categories as layers.
- JSON metadata in `<metadata>` (caption, labels, canvas, model and weights, scoring, threshold,
  skipped input elements); a legend group `data-sketchkit="legend"` to the right of the canvas (the
  viewBox is widened for it, so it never covers the drawing; its size follows the canvas), which
  the reader skips. The root width/height keep the source's units when it declared them.

Coordinates are written in fixed point with at most 6 decimals, trailing zeros stripped ("395",
"179.703125"): the round-trip error is at most 5e-7 canvas units, and multiples of 1/64 (all FrISS
coordinates, integer and half-integer ones included) come back exactly.
"""

from __future__ import annotations

import json
import math
import re
from xml.sax.saxutils import escape as _xml_escape

import numpy as np

import sketchkit
from sketchkit.raster import default_line_width
from sketchkit.render import DEFAULT_PALETTE, GREY, Palette
from sketchkit.results import label_counts, plain_number, provenance, source_name
from sketchkit.types import SegmentResult

SVG_DECIMALS = 6
UNLABELLED_LAYER = "unlabelled"
_XML_ID = re.compile(r"^[A-Za-z_][\w.-]*$")


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_safe(text: str) -> str:
    """Replace characters XML 1.0 cannot hold at all (control characters, lone surrogates) with U+FFFD."""
    return _XML_INVALID.sub("\ufffd", str(text))


def _attr(value: object) -> str:
    """A double-quoted XML attribute value with &, <, >, ", newlines and tabs escaped."""
    entities = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
    return '"' + _xml_escape(_xml_safe(str(value)), entities) + '"'


def _text(value: object) -> str:
    return _xml_escape(_xml_safe(str(value)))


def _num(value: float, decimals: int = SVG_DECIMALS) -> str:
    """Fixed-point with at most `decimals` decimals, trailing zeros stripped: 12.5, 3, -0.0625."""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _slug(label: str) -> str:
    """CSS-class-safe form of a label: lower case, runs of other characters -> '-'."""
    return re.sub(r"[^\w]+|_", "-", _xml_safe(label).lower()).strip("-") or "label"


def _path_data(points: np.ndarray) -> str:
    """'M x y L x y ...'; a one-point stroke is written 'M x y L x y' (a zero-length, round-capped dot)."""
    if len(points) == 1:
        points = np.repeat(points, 2, axis=0)
    coords = [f"{_num(x)} {_num(y)}" for x, y in np.asarray(points, dtype=np.float64)]
    return "M " + coords[0] + "".join(" L " + c for c in coords[1:])


def svg_stroke_widths(result: SegmentResult) -> np.ndarray:
    """(S,) float64 line widths in canvas units: the sketch's own, else the width the model's raster
    was drawn with (`default_line_width(size)` raster px through the result's transform)."""
    sketch, transform = result.sketch, result.raster.transform
    fallback = default_line_width(transform.size) / transform.scale
    if sketch.stroke_widths is None:
        return np.full(sketch.num_strokes, fallback)
    widths = np.asarray(sketch.stroke_widths, dtype=np.float64)
    return np.where(np.isfinite(widths) & (widths > 0), widths, fallback)


_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
SODIPODI_NS = "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"


def _legend(result: SegmentResult, counts: dict[str, int], colors: list[str]) -> tuple[list[str], float]:
    """A legend panel to the right of the canvas (x >= width, so it never covers the drawing): one swatch
    + 'label (n)' line per label that has strokes; its size scales with the canvas. Returns (lines, panel width)."""
    sketch = result.sketch
    entries = []
    for name, count in counts.items():
        if count:
            index = result.labels.index(name) if name in result.labels else -1
            entries.append((f"{name} ({count})", colors[index] if index >= 0 else GREY))
    if not entries:
        return ['<g id="legend" data-sketchkit="legend"/>'], 0.0
    font = min(max(sketch.width, sketch.height) / 40.0, sketch.height / (1.4 * len(entries) + 1.0))
    row, pad = 1.4 * font, 0.5 * font
    panel = pad * 4 + font + 0.6 * font * max(len(text) for text, _ in entries)
    x0 = sketch.width + pad
    lines = [f'<g id="legend" data-sketchkit="legend" font-family="sans-serif" font-size="{_num(font, 3)}">',
             f'<rect x="{_num(x0, 3)}" y="{_num(pad, 3)}" width="{_num(panel - 2 * pad, 3)}" '
             f'height="{_num(pad * 2 + row * len(entries), 3)}" fill="#ffffff" stroke="#999999" '
             f'stroke-width="{_num(font / 12, 3)}"/>']
    for k, (text, color) in enumerate(entries):
        top = 2 * pad + k * row
        lines.append(f'<rect x="{_num(x0 + pad, 3)}" y="{_num(top + 0.2 * font, 3)}" width="{_num(font, 3)}" '
                     f'height="{_num(font, 3)}" fill="{color}"/>')
        lines.append(f'<text x="{_num(x0 + 2 * pad + font, 3)}" y="{_num(top + 1.05 * font, 3)}" '
                     f'fill="#222222">{_text(text)}</text>')
    lines.append("</g>")
    return lines, panel


def _root_size(sketch, view_width: float) -> tuple[str, str]:
    """Root width/height: the source's declared size with its units (the width stretched by the legend
    panel in the same unit), else the canvas numbers."""
    if sketch.display_size is not None:
        parsed = [_LENGTH.match(str(v)) for v in sketch.display_size]
        if all(parsed) and all(m.group(2) != "%" for m in parsed):
            (w, wu), (h, hu) = ((float(m.group(1)), m.group(2)) for m in parsed)
            return f"{_num(w * view_width / sketch.width)}{wu}", f"{_num(h)}{hu}"
    return _num(view_width), _num(sketch.height)


def _path_element(result: SegmentResult, i: int, points, color: str, width: float, unique_ids: set) -> str:
    sketch, label = result.sketch, int(result.votes.labels[i])
    name = result.labels[label] if label >= 0 else "unknown"  # (stroke_label_names builds every stroke's name)
    confidence = float(result.votes.confidence[i])
    attrs = []
    source_id = sketch.source_ids[i] if sketch.source_ids is not None else None
    if source_id is not None:
        if source_id in unique_ids:
            attrs.append(f"id={_attr(source_id)}")
        attrs.append(f"data-source-id={_attr(source_id)}")
    if label >= 0:
        attrs.append(f"data-label={_attr(name)}")
    attrs.append(f'data-stroke="{i}"')
    if sketch.instance_ids is not None and sketch.instance_ids[i] >= 0:
        attrs.append(f'data-instance="{int(sketch.instance_ids[i])}"')
    title = name
    if label >= 0 and math.isfinite(confidence):
        attrs.append(f'data-confidence="{_num(confidence, 3)}"')
        title = f"{name} ({confidence * 100:.0f}%)"
    attrs.append(f"class={_attr('sk-stroke sk-label-' + _slug(name))}")
    return (f'<path d="{_path_data(points)}" {" ".join(attrs)} fill="none" stroke="{color}" '
            f'stroke-width="{_num(width, 3)}" stroke-linecap="round" stroke-linejoin="round">'
            f"<title>{_text(title)}</title></path>")


def result_to_svg(result: SegmentResult, palette: Palette | None = None) -> str:
    """The labelled SVG document as text (UTF-8 declared). See the module docstring for the contract."""
    sketch = result.sketch
    colors = (palette or DEFAULT_PALETTE).colors(result.labels)
    metadata = {"sketchkit": {
        "version": sketchkit.__version__, "caption": sketch.caption, "labels": list(result.labels),
        "canvas": [plain_number(sketch.width), plain_number(sketch.height)], **provenance(result),
        "source": sketch.source,
    }}
    legend, panel = _legend(result, label_counts(result), colors)
    view_width = sketch.width + panel
    root_w, root_h = _root_size(sketch, view_width)
    ids = [i for i in (sketch.source_ids or ()) if i is not None]
    unique_ids = {i for i in ids if ids.count(i) == 1 and _XML_ID.match(i)}
    widths = svg_stroke_widths(result)
    labels = np.asarray(result.votes.labels)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="{INKSCAPE_NS}" xmlns:sodipodi="{SODIPODI_NS}" '
        f'width="{root_w}" height="{root_h}" viewBox="0 0 {_num(view_width)} {_num(sketch.height)}">',
        f"<title>{_text(source_name(sketch) + ' - ' + (result.model or 'sketchkit'))}</title>",
        f"<metadata>{_text(json.dumps(metadata, ensure_ascii=False, allow_nan=False))}</metadata>",
        '<sodipodi:namedview inkscape:current-layer="layer-0"/>',
    ]
    layers = [(c, result.labels[c]) for c in range(len(result.labels))] + [(-1, UNLABELLED_LAYER)]
    for number, (c, name) in enumerate(layers):
        members = np.flatnonzero(labels == c) if c >= 0 else np.flatnonzero(labels < 0)
        if not len(members):
            continue
        lines.append(f'<g id="layer-{number}" inkscape:groupmode="layer" inkscape:label={_attr(name)}>')
        color = colors[c] if c >= 0 else GREY
        lines += [_path_element(result, i, sketch.strokes[i], color, widths[i], unique_ids) for i in members]
        lines.append("</g>")
    lines.extend(legend)
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
