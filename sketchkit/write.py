"""Write segmentation results: labelled SVG, HDF5, PNG overlay, JSON. Every file is written atomically.

    write_result(result, "scene.svg")                 # format from the suffix
    write_result(result, "scene.out", fmt="json")
    write_results_h5(results, "test_split.h5")        # many sketches in one file
    stored = read_results_h5("test_split.h5")         # -> list[StoredResult]

Formats (see docs/hdf5.md for the HDF5 schema):
- svg:  the sketch in its own canvas units (original stroke points, not raster coordinates), one
        `<path>` per stroke coloured by predicted label with `data-label`, `data-stroke`,
        `data-instance` (when known) and `data-confidence`; JSON metadata in `<metadata>`; a
        legend group `<g id="legend" data-sketchkit="legend">` that readers skip. Coordinates are
        written in fixed point with at most 6 decimals, trailing zeros stripped ("395", "179.703125"):
        the round-trip error is at most 5e-7 canvas units, and multiples of 1/64 (all FrISS
        coordinates, integer and half-integer ones included) come back exactly.
- png:  strokes rendered by `sketchkit.raster.render_rgb` at 512 px (aspect kept, cropped to the
        drawing), coloured by predicted label; a title bar naming the model and a legend panel.
- json: per-stroke labels, confidence, top-3 and point counts; per-label stroke counts.
- h5:   everything needed to re-score without re-running a model (strokes, maps, scores).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as _xml_escape

import numpy as np

import sketchkit
from sketchkit.errors import InputError, UsageError
from sketchkit.files import atomic_path, atomic_write_bytes, atomic_write_text, check_output_path
from sketchkit.raster import DEFAULT_MARGIN, default_line_width, render_rgb
from sketchkit.types import Raster, SegmentResult, Sketch, StrokeVotes, Transform

FORMATS = ("svg", "h5", "png", "json")
_SUFFIX_FORMATS = {".svg": "svg", ".h5": "h5", ".hdf5": "h5", ".png": "png", ".json": "json"}

H5_FORMAT = "sketchkit-results"
H5_FORMAT_VERSION = 1

# tab20 without its two greys, strong colours first: class c gets PALETTE[c % 18].
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)
GREY = "#7f7f7f"  # "background" class and strokes without a label
BACKGROUND = "background"
UNKNOWN = "unknown"

SVG_DECIMALS = 6
PNG_SIZE = 512


# ----------------------------------------------------------------------------------------- common


def _format_from_path(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = "h5" if fmt == "hdf5" else fmt
        if fmt not in FORMATS:
            raise UsageError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise UsageError(
            f"cannot tell the output format of {path} from its suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(_SUFFIX_FORMATS)} or give the format explicitly"
        )
    return _SUFFIX_FORMATS[suffix]


def write_result(result: SegmentResult, path: str | os.PathLike, fmt: str | None = None, *,
                 overwrite: bool = True) -> Path:
    """Write one result as svg, h5, png or json (`fmt`, else from the suffix: .svg .h5 .hdf5 .png .json).

    Returns the path written. UsageError for an unknown format, for a path that is the sketch's
    own source file, and for an existing path when overwrite is False.
    """
    path = Path(path)
    fmt = _format_from_path(path, fmt)
    _check_result(result)
    check_output_path(path, _sources([result]), overwrite)
    if fmt == "svg":
        return atomic_write_text(path, result_to_svg(result), overwrite=overwrite)
    if fmt == "json":
        return atomic_write_text(path, result_to_json(result), overwrite=overwrite)
    if fmt == "png":
        return atomic_write_bytes(path, _png_bytes(render_overlay(result)), overwrite=overwrite)
    return write_results_h5([result], path, overwrite=overwrite)


def _sources(results: list[SegmentResult]) -> list[str]:
    return [r.sketch.source for r in results if r.sketch.source]


def _check_result(result: SegmentResult) -> None:
    """Raise ValueError when the arrays of a result disagree (a bug upstream, not bad user input)."""
    num_strokes, num_classes = result.sketch.num_strokes, len(result.labels)
    size = result.raster.size
    problems = []
    if result.raster.stroke_ids.shape != (size, size):
        problems.append(f"stroke_ids {result.raster.stroke_ids.shape} != ({size}, {size})")
    if result.pixel_labels.shape != (size, size):
        problems.append(f"pixel_labels {result.pixel_labels.shape} != ({size}, {size})")
    if result.scores.shape != (num_classes, size, size):
        problems.append(f"scores {result.scores.shape} != ({num_classes}, {size}, {size})")
    for name, array, shape in (("votes.labels", result.votes.labels, (num_strokes,)),
                               ("votes.confidence", result.votes.confidence, (num_strokes,)),
                               ("votes.top3", result.votes.top3, (num_strokes, 3))):
        if np.shape(array) != shape:
            problems.append(f"{name} {np.shape(array)} != {shape}")
    sketch = result.sketch
    for name, array in (("sketch.stroke_widths", sketch.stroke_widths), ("sketch.instance_ids", sketch.instance_ids),
                        ("sketch.labels", sketch.labels)):
        if array is not None and len(array) != num_strokes:
            problems.append(f"{name} has {len(array)} entries for {num_strokes} strokes")
    if not problems:
        if result.raster.stroke_ids.size and result.raster.stroke_ids.max() >= num_strokes:
            problems.append("stroke_ids name a stroke the sketch does not have")
        for name, array in (("pixel_labels", result.pixel_labels), ("votes.labels", result.votes.labels),
                            ("votes.top3", result.votes.top3)):
            if np.size(array) and (np.max(array) >= num_classes or np.min(array) < -1):
                problems.append(f"{name} hold class indices outside [-1, {num_classes})")
    for i, stroke in enumerate(result.sketch.strokes):
        if stroke.ndim != 2 or stroke.shape[1] != 2 or len(stroke) == 0 or not np.isfinite(stroke).all():
            problems.append(f"stroke {i} is not a non-empty finite (P, 2) array")
            break
    if problems:
        raise ValueError("inconsistent SegmentResult: " + "; ".join(problems))


def class_color(labels: tuple[str, ...] | list[str], index: int) -> str:
    """'#rrggbb' of class `index` (-1 = no label): PALETTE[index % 18]; grey for 'background' and -1."""
    if index < 0 or labels[index] == BACKGROUND:
        return GREY
    return PALETTE[index % len(PALETTE)]


def _hex_to_rgb01(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def stroke_colors(result: SegmentResult) -> np.ndarray:
    """(S, 3) float64 RGB in [0, 1]: each stroke's predicted-label colour."""
    table = np.array([_hex_to_rgb01(class_color(result.labels, c)) for c in range(len(result.labels))]
                     + [_hex_to_rgb01(GREY)]).reshape(-1, 3)
    labels = np.asarray(result.votes.labels, dtype=np.int64)
    return table[np.where(labels >= 0, labels, len(result.labels))]


def label_counts(result: SegmentResult) -> dict[str, int]:
    """Strokes per predicted label: every vocabulary name (0 allowed), then 'unknown' when some stroke has none."""
    labels = np.asarray(result.votes.labels, dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=len(result.labels))
    out: dict[str, int] = {}
    for name, count in zip(result.labels, counts):
        out[name] = out.get(name, 0) + int(count)  # a repeated name pools its strokes
    if (labels < 0).any():
        out[UNKNOWN] = out.get(UNKNOWN, 0) + int((labels < 0).sum())
    return out


def stroke_class_pixel_counts(result: SegmentResult) -> np.ndarray:
    """(S, C) int64: per stroke, its ink pixels (raster size) labelled with each class."""
    num_strokes, num_classes = result.sketch.num_strokes, len(result.labels)
    ids, pixel_labels = result.raster.stroke_ids, result.pixel_labels
    ink = (ids >= 0) & (pixel_labels >= 0)
    flat = ids[ink].astype(np.int64) * num_classes + pixel_labels[ink].astype(np.int64)
    return np.bincount(flat, minlength=num_strokes * num_classes).reshape(num_strokes, num_classes)


def _finite_or_none(value: float, digits: int = 4) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _plain_number(value: float) -> int | float:
    """An int when the value is integral (canvas 1100 -> 1100), else the float."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _source_name(sketch: Sketch, index: int | None = None) -> str:
    if sketch.source:
        return Path(sketch.source).stem
    return "sketch" if index is None else f"sketch-{index}"


# -------------------------------------------------------------------------------------------- svg

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


def _svg_legend(result: SegmentResult, counts: dict[str, int]) -> list[str]:
    """Top-right legend: one swatch + 'label (n)' line per label that has strokes."""
    sketch = result.sketch
    entries = []
    for name, count in counts.items():
        if count == 0:
            continue
        index = result.labels.index(name) if name in result.labels else -1
        entries.append((name, count, class_color(result.labels, index)))
    if not entries:
        return ['<g id="legend" data-sketchkit="legend"/>']
    font = max(sketch.width, sketch.height) / 60.0
    row, pad = 1.4 * font, 0.5 * font
    texts = [f"{name} ({count})" for name, count, _ in entries]
    box_w = pad * 3 + font + 0.6 * font * max(len(t) for t in texts)
    box_h = pad * 2 + row * len(entries)
    x0, y0 = sketch.width - box_w - pad, pad
    lines = ['<g id="legend" data-sketchkit="legend" font-family="sans-serif" '
             f'font-size="{_num(font, 2)}">',
             f'<rect x="{_num(x0, 2)}" y="{_num(y0, 2)}" width="{_num(box_w, 2)}" height="{_num(box_h, 2)}" '
             'fill="#ffffff" fill-opacity="0.85" stroke="#999999" stroke-width="1"/>']
    for k, ((name, _, color), label_text) in enumerate(zip(entries, texts)):
        top = y0 + pad + k * row
        lines.append(f'<rect x="{_num(x0 + pad, 2)}" y="{_num(top + 0.2 * font, 2)}" width="{_num(font, 2)}" '
                     f'height="{_num(font, 2)}" fill="{color}"/>')
        lines.append(f'<text x="{_num(x0 + 2 * pad + font, 2)}" y="{_num(top + 1.05 * font, 2)}" '
                     f'fill="#222222">{_text(label_text)}</text>')
    lines.append("</g>")
    return lines


def result_to_svg(result: SegmentResult) -> str:
    """The labelled SVG document as text (UTF-8 declared). See the module docstring for the contract."""
    sketch = result.sketch
    width, height = _num(sketch.width), _num(sketch.height)
    metadata = {"sketchkit": {
        "version": sketchkit.__version__,
        "caption": sketch.caption,
        "labels": list(result.labels),
        "canvas": [_plain_number(sketch.width), _plain_number(sketch.height)],
        "model": result.model,
        "source": sketch.source,
    }}
    names = result.stroke_label_names
    labels = np.asarray(result.votes.labels)
    confidence = np.asarray(result.votes.confidence, dtype=np.float64)
    widths = svg_stroke_widths(result)
    instances = sketch.instance_ids
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f"<title>{_text(_source_name(sketch) + ' - ' + (result.model or 'sketchkit'))}</title>",
        f"<metadata>{_text(json.dumps(metadata, ensure_ascii=False, allow_nan=False))}</metadata>",
        '<g id="strokes">',
    ]
    for i, points in enumerate(sketch.strokes):
        attrs = []
        if labels[i] >= 0:
            attrs.append(f"data-label={_attr(names[i])}")
        attrs.append(f'data-stroke="{i}"')
        if instances is not None and instances[i] >= 0:
            attrs.append(f'data-instance="{int(instances[i])}"')
        title = names[i]
        if labels[i] >= 0 and math.isfinite(confidence[i]):
            attrs.append(f'data-confidence="{_num(confidence[i], 3)}"')
            title = f"{names[i]} ({confidence[i] * 100:.0f}%)"
        attrs.append(f"class={_attr('sk-stroke sk-label-' + _slug(names[i]))}")
        lines.append(
            f'<path d="{_path_data(points)}" {" ".join(attrs)} fill="none" '
            f'stroke="{class_color(result.labels, int(labels[i]))}" stroke-width="{_num(widths[i], 3)}" '
            f'stroke-linecap="round" stroke-linejoin="round"><title>{_text(title)}</title></path>'
        )
    lines.append("</g>")
    lines.extend(_svg_legend(result, label_counts(result)))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- json


def result_to_dict(result: SegmentResult) -> dict:
    """The JSON document as a dict: numbers are numbers, no NaN (non-finite values become null).

    top3 entries carry `votes_share`: the share of the stroke's ink pixels (at raster size) labelled
    with that class; it is left out for a stroke with no ink pixel at raster size.
    """
    sketch = result.sketch
    names = result.stroke_label_names
    labels = np.asarray(result.votes.labels)
    pixel_counts = stroke_class_pixel_counts(result)
    totals = pixel_counts.sum(axis=1)
    strokes = []
    for i, points in enumerate(sketch.strokes):
        top3 = []
        for c in np.asarray(result.votes.top3[i]):
            if c < 0:
                continue
            entry: dict = {"label": result.labels[c]}
            if totals[i] > 0:
                entry["votes_share"] = round(float(pixel_counts[i, c] / totals[i]), 4)
            top3.append(entry)
        stroke = {
            "index": i,
            "label": names[i] if labels[i] >= 0 else None,
            "confidence": _finite_or_none(result.votes.confidence[i]),
            "top3": top3,
            "num_points": int(len(points)),
            "num_pixels": int(totals[i]),
        }
        if sketch.labels is not None:
            stroke["gt_label"] = sketch.labels[i]
        if sketch.instance_ids is not None and sketch.instance_ids[i] >= 0:
            stroke["instance"] = int(sketch.instance_ids[i])
        strokes.append(stroke)
    return {
        "sketchkit_version": sketchkit.__version__,
        "source": sketch.source,
        "model": result.model,
        "labels": list(result.labels),
        "caption": sketch.caption,
        "canvas": [_plain_number(sketch.width), _plain_number(sketch.height)],
        "raster_size": result.raster.size,
        "strokes": strokes,
        "label_counts": label_counts(result),
    }


def result_to_json(result: SegmentResult) -> str:
    """`result_to_dict` as indented JSON text (strict: NaN would raise, and none is produced)."""
    return json.dumps(result_to_dict(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# -------------------------------------------------------------------------------------------- png

_ROW = 20       # px per text line in the title bar and the legend
_TITLE_LINES = 2
_PANEL_W = 240  # legend panel width, px
_PAD = 8


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)  # scalable font: Pillow >= 10.1 with FreeType
    except TypeError:
        return ImageFont.load_default()


def _drawable(text: str, font) -> str:
    """Text the font can encode: Pillow's bitmap fallback font only knows Latin-1."""
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _fit(draw, text: str, font, width: float) -> str:
    """`text` cut with '...' so that it is at most `width` px wide."""
    text = _drawable(text, font)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def overlay_crop_box(transform: Transform, sketch: Sketch) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) px of a render to keep: the points' box plus the raster margin
    (`DEFAULT_MARGIN` of the side, at least 4 px), clipped to the render."""
    size = transform.size
    lo, hi = transform.to_raster(np.array(sketch.bounds()).reshape(2, 2))
    pad = max(4.0, DEFAULT_MARGIN * size)
    left, top = np.floor(lo - pad)
    right, bottom = np.ceil(hi + pad)
    return (int(max(left, 0)), int(max(top, 0)), int(min(right, size)), int(min(bottom, size)))


def render_overlay(result: SegmentResult, size: int = PNG_SIZE):
    """The PNG overlay as an RGB PIL image.

    Layout: a title bar (_TITLE_LINES rows of _ROW px: the model, then source / strokes / caption),
    below it the strokes rendered at `size` px by `sketchkit.raster.render_rgb` with the result's
    transform rescaled to `size`, cropped to `overlay_crop_box`; to the right a _PANEL_W px legend
    with a colour swatch, label and stroke count per label that has strokes. Height grows when
    the legend is longer than the drawing.
    """
    from PIL import Image, ImageDraw

    sketch = result.sketch
    transform = result.raster.transform.resized(size)
    rgb = render_rgb(sketch, transform, stroke_colors(result))
    left, top, right, bottom = overlay_crop_box(transform, sketch)
    drawing = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]), "RGB")

    counts = {name: n for name, n in label_counts(result).items() if n > 0}
    title_h = _TITLE_LINES * _ROW + _PAD
    legend_h = _PAD * 2 + _ROW * (len(counts) + 1)
    width = drawing.width + _PANEL_W
    height = title_h + max(drawing.height, legend_h)
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(drawing, (0, title_h))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    text_w = width - 2 * _PAD
    model = f"model: {result.model or 'unspecified'}"
    info = f"{_source_name(sketch)} - {sketch.num_strokes} strokes, {len(result.labels)} labels"
    if sketch.caption:
        info += f" - {sketch.caption}"
    draw.text((_PAD, _PAD // 2), _fit(draw, model, font, text_w), fill="black", font=font)
    draw.text((_PAD, _PAD // 2 + _ROW), _fit(draw, info, font, text_w), fill="#444444", font=font)
    draw.line([(0, title_h - 2), (width, title_h - 2)], fill="#bbbbbb")
    draw.rectangle([0, title_h, drawing.width - 1, title_h + drawing.height - 1], outline="#dddddd")

    x0, y = drawing.width + _PAD, title_h + _PAD
    draw.text((x0, y), "label (strokes)", fill="#444444", font=font)
    for name, count in counts.items():
        y += _ROW
        index = result.labels.index(name) if name in result.labels else -1
        draw.rectangle([x0, y + 2, x0 + 14, y + 16], fill=class_color(result.labels, index))
        draw.text((x0 + 22, y), _fit(draw, f"{name} ({count})", font, _PANEL_W - 22 - 2 * _PAD),
                  fill="black", font=font)
    return canvas


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def save_raster(raster: Raster, path: str | os.PathLike, *, ids_path: str | os.PathLike | None = None,
                overwrite: bool = True) -> Path:
    """Save the model's view of a sketch: `raster.image` as an 8-bit grey PNG (255 = paper, 0 = ink,
    `round(image * 255)`), and with `ids_path` the (size, size) int32 stroke-id map (-1 = no ink)
    as a .npy file (no pickles). Both written atomically; returns the PNG path."""
    from PIL import Image

    grey = np.rint(np.clip(raster.image, 0.0, 1.0) * 255.0).astype(np.uint8)
    png = _png_bytes(Image.fromarray(grey, "L"))
    if ids_path is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(raster.stroke_ids, dtype=np.int32), allow_pickle=False)
        atomic_write_bytes(ids_path, buffer.getvalue(), overwrite=overwrite)
    return atomic_write_bytes(path, png, overwrite=overwrite)


# ------------------------------------------------------------------------------------------- hdf5

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
        _check_result(result)
    check_output_path(path, _sources(results), overwrite)
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
    group.create_dataset("stroke_top3", data=np.asarray(result.votes.top3, dtype=np.int32).reshape(-1, 3))
    f16 = np.finfo(np.float16).max
    group.create_dataset("scores", data=np.clip(result.scores, -f16, f16).astype(np.float16), **_BIG)
    group.create_dataset("pixel_labels", data=result.pixel_labels.astype(np.int32), **_BIG)
    group.create_dataset("stroke_ids", data=result.raster.stroke_ids.astype(np.int32), **_BIG)
    raster_u8 = np.rint(np.clip(result.raster.image, 0.0, 1.0) * 255.0).astype(np.uint8)
    group.create_dataset("raster", data=raster_u8, **_BIG)
    t = result.raster.transform
    group.attrs["name"] = _source_name(sketch, index)
    group.attrs["canvas"] = np.array([sketch.width, sketch.height], dtype=np.float64)
    group.attrs["transform"] = np.array([t.scale, t.offset_x, t.offset_y, t.size], dtype=np.float64)
    group.attrs["model"] = result.model
    if sketch.source is not None:
        group.attrs["source"] = str(sketch.source)
    if sketch.caption is not None:
        group.attrs["caption"] = sketch.caption


@dataclass(frozen=True)
class StoredResult:
    """One sketch read back from a results HDF5 file (arrays as stored; see docs/hdf5.md).

    strokes:           tuple of S (P_i, 2) float64 arrays, canvas units (stored as float32).
    stroke_widths:     (S,) float64 or None.   gt_labels: per-stroke names (None = unlabelled) or None.
    instance_ids:      (S,) int64 or None.
    labels:            the C class names.      stroke_labels (S,) int32, -1 = none.
    stroke_confidence: (S,) float32.           stroke_top3 (S, 3) int32, -1 padded.
    scores:            (C, size, size) float32 (stored as float16).
    pixel_labels:      (size, size) int32, -1 = no ink.   stroke_ids (size, size) int32, -1 = no ink.
    raster:            (size, size) uint8, 255 = paper, 0 = ink.
    transform:         canvas -> raster mapping of the maps.   canvas: (width, height).
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
    stroke_top3: np.ndarray
    scores: np.ndarray
    pixel_labels: np.ndarray
    stroke_ids: np.ndarray
    raster: np.ndarray

    def to_sketch(self) -> Sketch:
        return Sketch(strokes=self.strokes, width=self.canvas[0], height=self.canvas[1],
                      stroke_widths=self.stroke_widths, labels=self.gt_labels, instance_ids=self.instance_ids,
                      caption=self.caption, source=self.source)

    def to_segment_result(self) -> SegmentResult:
        """Rebuild the SegmentResult (image as float32 raster / 255, scores at float16 precision)."""
        raster = Raster(image=self.raster.astype(np.float32) / 255.0, stroke_ids=self.stroke_ids,
                        transform=self.transform)
        votes = StrokeVotes(labels=self.stroke_labels, confidence=self.stroke_confidence, top3=self.stroke_top3)
        return SegmentResult(sketch=self.to_sketch(), raster=raster, labels=self.labels, scores=self.scores,
                             pixel_labels=self.pixel_labels, votes=votes, model=self.model)


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_results_h5(path: str | os.PathLike) -> list[StoredResult]:
    """Read every sketch of a results file written by `write_results_h5`, in write order.

    Raises InputError when the file is missing, not HDF5, not a sketchkit results file, of a newer
    format version, or lacks a dataset the schema requires.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError("no such results file", path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not an HDF5 file ({exc.__class__.__name__})", path) from None
    with h5:
        if _decode(h5.attrs.get("format", "")) != H5_FORMAT:
            raise InputError(f"not a sketchkit results file (file attribute format != {H5_FORMAT!r})", path)
        version = int(h5.attrs.get("format_version", 0))
        if version > H5_FORMAT_VERSION:
            raise InputError(f"results format version {version} is newer than this sketchkit reads "
                             f"({H5_FORMAT_VERSION}); upgrade sketchkit", path)
        if "sketches" not in h5:
            raise InputError("not a sketchkit results file (no /sketches group)", path)
        groups = h5["sketches"]
        try:
            names = sorted(groups, key=int)
        except ValueError:
            raise InputError("malformed results file: /sketches holds a non-numeric group name", path) from None
        return [_read_h5_sketch(groups[name], path) for name in names]


def _read_h5_sketch(group, path: Path) -> StoredResult:
    where = group.name

    def need(name: str) -> np.ndarray:
        if name not in group:
            raise InputError(f"malformed results file: {where}/{name} is missing", path)
        return group[name][()]

    def need_attr(name: str):
        if name not in group.attrs:
            raise InputError(f"malformed results file: attribute {name!r} of {where} is missing", path)
        return group.attrs[name]

    def optional(name: str):
        return group[name][()] if name in group else None

    offsets = need("stroke_offsets").astype(np.int64)
    points = need("points").astype(np.float64)
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(points) \
            or np.any(np.diff(offsets) < 1) or points.ndim != 2 or points.shape[1] != 2:
        raise InputError(f"malformed results file: {where} stroke_offsets do not split points", path)
    strokes = tuple(np.split(points, offsets[1:-1]))
    widths = optional("stroke_widths")
    gt = optional("gt_labels")
    instances = optional("instance_ids")
    canvas = np.asarray(need_attr("canvas"), dtype=np.float64)
    scale, offset_x, offset_y, size = np.asarray(need_attr("transform"), dtype=np.float64)
    caption = group.attrs.get("caption")
    source = group.attrs.get("source")
    return StoredResult(
        name=_decode(group.attrs.get("name", where.rsplit("/", 1)[-1])),
        source=None if source is None else _decode(source),
        caption=None if caption is None else _decode(caption),
        model=_decode(group.attrs.get("model", "")),
        canvas=(float(canvas[0]), float(canvas[1])),
        transform=Transform(float(scale), float(offset_x), float(offset_y), int(size)),
        labels=tuple(_decode(n) for n in need("labels")),
        strokes=strokes,
        stroke_widths=None if widths is None else widths.astype(np.float64),
        gt_labels=None if gt is None else tuple(_decode(n) or None for n in gt),
        instance_ids=None if instances is None else instances.astype(np.int64),
        stroke_labels=need("stroke_labels").astype(np.int32),
        stroke_confidence=need("stroke_confidence").astype(np.float32),
        stroke_top3=need("stroke_top3").astype(np.int32),
        scores=need("scores").astype(np.float32),
        pixel_labels=need("pixel_labels").astype(np.int32),
        stroke_ids=need("stroke_ids").astype(np.int32),
        raster=need("raster").astype(np.uint8),
    )
