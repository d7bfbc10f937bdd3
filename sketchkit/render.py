"""Colours and pictures of results: the label palette, the PNG overlay, the model-view raster PNG."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from sketchkit.errors import InputError, UsageError
from sketchkit.files import atomic_write_bytes
from sketchkit.raster import DEFAULT_MARGIN, render_rgb
from sketchkit.results import label_counts, source_name
from sketchkit.text import printable
from sketchkit.types import BACKGROUND, Raster, SegmentResult, Sketch, Transform

PNG_SIZE = 512

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)
"""tab20 without its two greys, strong colours first: the first 18 classes."""

GREY = "#7f7f7f"  # "background" class and strokes without a label


@lru_cache(maxsize=None)
def _hue_grid() -> np.ndarray:
    """(K, 3) RGB candidates in [0, 255]: 48 hues x 3 saturations x 3 brightnesses (no greys)."""
    import colorsys

    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h / 48, s, v)]
                     for h in range(48) for s in (0.95, 0.7, 0.45) for v in (0.95, 0.75, 0.5)], dtype=np.float64)


@lru_cache(maxsize=None)
def _extra_colors(count: int) -> tuple[str, ...]:
    """`count` colours after PALETTE, each the candidate farthest (in RGB) from every colour chosen before
    it (PALETTE's and grey included): deterministic, and no two classes look alike."""
    grid = _hue_grid()
    chosen = [np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) for c in (*PALETTE, GREY)]
    nearest = np.min([np.linalg.norm(grid - c, axis=1) for c in chosen], axis=0)
    picked = []
    for _ in range(count):
        best = int(np.argmax(nearest))
        picked.append("#{:02x}{:02x}{:02x}".format(*grid[best].astype(int)))
        nearest = np.minimum(nearest, np.linalg.norm(grid - grid[best], axis=1))
    return tuple(picked)


class Palette:
    """Class -> '#rrggbb': grey for BACKGROUND and unlabelled strokes, else by class index: PALETTE,
    then further distinct colours (`_extra_colors`); or a matplotlib colormap's colours (a listed
    map's own colours, else evenly spaced samples); `named` labels (a JSON file's) win over both."""

    def __init__(self, named: dict[str, str] | None = None, colormap: str | None = None):
        self.named = dict(named or {})
        self.colormap = colormap

    @classmethod
    def from_spec(cls, spec: str | os.PathLike | None) -> "Palette":
        """None: the default; a path to a JSON object {label: "#rrggbb"}; else a matplotlib colormap name."""
        if spec is None:
            return cls()
        path = Path(spec)
        if path.suffix.lower() == ".json" or path.is_file():
            return cls(named=_read_named_colors(path))
        import matplotlib

        if str(spec) not in matplotlib.colormaps:
            raise UsageError(f"unknown palette {str(spec)!r}: give a matplotlib colormap name (e.g. tab20, viridis) "
                             "or a JSON file mapping labels to colours")
        return cls(colormap=str(spec))

    def colors(self, labels: Sequence[str]) -> list[str]:
        """One colour per class index of `labels`."""
        base = self._base(len(labels))
        return [GREY if name == BACKGROUND else self.named.get(name, base[i]) for i, name in enumerate(labels)]

    def _base(self, count: int) -> list[str]:
        if self.colormap is None:
            return list(PALETTE[:count]) + list(_extra_colors(max(count - len(PALETTE), 0)))
        import matplotlib
        from matplotlib.colors import ListedColormap, to_hex

        cmap = matplotlib.colormaps[self.colormap]
        if isinstance(cmap, ListedColormap) and cmap.N <= 32 and count <= cmap.N:  # qualitative: its own colours
            return [to_hex(cmap(i)) for i in range(count)]
        return [to_hex(cmap(i / max(count - 1, 1))) for i in range(count)]


def _read_named_colors(path: Path) -> dict[str, str]:
    from sketchkit.io.limits import read_bytes_limited

    from sketchkit.io.jsontext import load_json

    try:
        doc = load_json(read_bytes_limited(path, 1 << 20).decode("utf-8"), path)
    except UnicodeDecodeError as exc:
        raise InputError(f"the palette is not a JSON object of label: colour ({type(exc).__name__})", path) from None
    if not isinstance(doc, dict):
        raise InputError("the palette must be a JSON object mapping labels to colours", path)
    from matplotlib.colors import to_hex

    named = {}
    for label, color in doc.items():
        try:
            named[str(label)] = to_hex(color)
        except (ValueError, TypeError):
            raise InputError(f"the palette's colour {color!r} for {label!r} is not a colour", path) from None
    return named


DEFAULT_PALETTE = Palette()


def class_color(labels: Sequence[str], index: int, palette: Palette | None = None) -> str:
    """'#rrggbb' of class `index` of `labels` (-1 = no label: grey)."""
    if index < 0:
        return GREY
    return (palette or DEFAULT_PALETTE).colors(labels)[index]


def _hex_to_rgb01(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def stroke_colors(result: SegmentResult, palette: Palette | None = None) -> np.ndarray:
    """(S, 3) float64 RGB in [0, 1]: each stroke's predicted-label colour."""
    colors = (palette or DEFAULT_PALETTE).colors(result.labels)
    table = np.array([_hex_to_rgb01(c) for c in colors] + [_hex_to_rgb01(GREY)]).reshape(-1, 3)
    labels = np.asarray(result.votes.labels, dtype=np.int64)
    return table[np.where(labels >= 0, labels, len(result.labels))]


_SHOWN_CHARS = 500  # most characters of one text line measured for the PNG overlay
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
    """`text` cut with '...' so that it is at most `width` px wide: at most _SHOWN_CHARS characters
    are measured, the cut found by bisection (a 20,000-character label took minutes cut one
    character at a time)."""
    text = _drawable(printable(text), font)
    shown = text[:_SHOWN_CHARS]
    if len(shown) == len(text) and draw.textlength(text, font=font) <= width:
        return text
    low, high = 0, len(shown)  # the longest prefix that fits with '...' is shown[:low]
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(shown[:middle] + "...", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return shown[:low] + "..."


def overlay_crop_box(transform: Transform, sketch: Sketch) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) px of a render to keep: the points' box plus the raster margin
    (`DEFAULT_MARGIN` of the side, at least 4 px), clipped to the render."""
    size = transform.size
    lo, hi = transform.to_raster(np.array(sketch.bounds()).reshape(2, 2))
    pad = max(4.0, DEFAULT_MARGIN * size)
    left, top = np.floor(lo - pad)
    right, bottom = np.ceil(hi + pad)
    return (int(max(left, 0)), int(max(top, 0)), int(min(right, size)), int(min(bottom, size)))


def render_overlay(result: SegmentResult, size: int = PNG_SIZE, palette: Palette | None = None):
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
    rgb = render_rgb(sketch, transform, stroke_colors(result, palette))
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
        draw.rectangle([x0, y + 2, x0 + 14, y + 16], fill=class_color(result.labels, index, palette))
        draw.text((x0 + 22, y), _fit(draw, f"{name} ({count})", font, _PANEL_W - 22 - 2 * _PAD),
                  fill="black", font=font)
    return canvas


def png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


RASTER_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".webp": "WEBP"}
"""Image formats `save_raster` writes, by suffix (PNG, the lossless default, for anything measured)."""


def save_raster(raster: Raster, path: str | os.PathLike, *, ids_path: str | os.PathLike | None = None,
                overwrite: bool = True) -> Path:
    """Save the model's view of a sketch: `raster.image` as an 8-bit grey image in the format the suffix
    names (RASTER_FORMATS; 255 = paper, 0 = ink, `round(image * 255)`), and with `ids_path` the (size,
    size) int32 stroke-id map (-1 = no ink) as a .npy file (no pickles). Both written atomically; returns
    the image path. UsageError for a suffix no image format is known for."""
    import io

    from PIL import Image

    image_format = RASTER_FORMATS.get(Path(path).suffix.lower())
    if image_format is None:
        raise UsageError(f"cannot write a raster image as {Path(path).suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(RASTER_FORMATS)}")
    grey = np.rint(np.clip(raster.image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, format=image_format)
    encoded = buffer.getvalue()
    if ids_path is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(raster.stroke_ids, dtype=np.int32), allow_pickle=False)
        atomic_write_bytes(ids_path, buffer.getvalue(), overwrite=overwrite)
    return atomic_write_bytes(path, encoded, overwrite=overwrite)

