"""Colours and pictures of results: the label palette, the PNG overlay, the model-view raster PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sketchkit.files import atomic_write_bytes
from sketchkit.raster import DEFAULT_MARGIN, render_rgb
from sketchkit.results import label_counts, source_name
from sketchkit.types import BACKGROUND, Raster, SegmentResult, Sketch, Transform

PNG_SIZE = 512

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)


GREY = "#7f7f7f"  # "background" class and strokes without a label


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
    info = f"{source_name(sketch)} - {sketch.num_strokes} strokes, {len(result.labels)} labels"
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


def png_bytes(image) -> bytes:
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
    png = png_bytes(Image.fromarray(grey, "L"))
    if ids_path is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(raster.stroke_ids, dtype=np.int32), allow_pickle=False)
        atomic_write_bytes(ids_path, buffer.getvalue(), overwrite=overwrite)
    return atomic_write_bytes(path, png, overwrite=overwrite)

