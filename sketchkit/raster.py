"""Aspect-preserving rendering of a Sketch into a square raster, with a stroke-id map.

Frames (see sketchkit.types): points are (x, y) in canvas units; `Transform` maps them to raster
pixels (raster = canvas * scale + offset); pixel (i, j) covers [j, j+1) x [i, i+1) in raster units.

Two renders per sketch:
- the model image: anti-aliased black ink on white, round caps and joins, consecutive strokes
  joined into long paths so overlaps do not darken twice;
- the stroke-id map: the same strokes drawn one by one without anti-aliasing, each in the RGB24
  colour that encodes its index + 1, so a later stroke overwrites an earlier one.

Paths go to cairo through `cairo_append_path` over a numpy buffer laid out as `cairo_path_data_t`,
one cffi call per stroke instead of one per point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cairocffi as cairo
import numpy as np
from PIL import Image

from sketchkit.errors import InputError, SketchkitError
from sketchkit.types import Raster, Sketch, Transform

DEFAULT_SIZE = 224
LINE_WIDTH_AT_224 = 1.5  # raster pixels at 224 px; proportional at other sizes
DEFAULT_MARGIN = 0.04  # fraction of the raster side left blank on each side
MIN_ID_LINE_WIDTH = 1.0  # id-map strokes are at least this wide (raster pixels)
MIN_DOT_ID_WIDTH = 1.5  # a disc this wide always covers a pixel centre (> sqrt(2))
INK_THRESHOLD = 0.8  # grey values below this count as ink in bitmap images
MAX_STROKES = (1 << 24) - 1  # ids are encoded as 24-bit RGB
BATCH_POINTS = 1024  # points per cairo path in the one-colour render
MAX_PATH_POINTS = 1024
"""Most points of one path handed to cairo: longer strokes are drawn as pieces (overlapping by a
point; round caps and joins make the same ink). Cairo's stroker is quadratic in a path whose
segments overlap (a back-and-forth stroke of 100,000 points took minutes) and crashes on tens of
millions of points."""

_ffi, _lib = cairo.ffi, cairo.cairo

# numpy views of cairo's path structs, laid out from the cffi declarations.
_PATH_DATA_SIZE = _ffi.sizeof("cairo_path_data_t")
_PATH_T_DTYPE = np.dtype(
    {
        "names": ["status", "data", "num_data"],
        "formats": ["i4", np.uintp, "i4"],
        "offsets": [_ffi.offsetof("cairo_path_t", n) for n in ("status", "data", "num_data")],
        "itemsize": _ffi.sizeof("cairo_path_t"),
    }
)
if _PATH_DATA_SIZE != 16:  # header {int type, int length} overlaid on point {double x, double y}
    raise ImportError(f"unexpected cairo_path_data_t size {_PATH_DATA_SIZE}; sketchkit.raster needs 16")


def default_line_width(size: int) -> float:
    """Default ink width in raster pixels for a raster of side `size` (1.5 px at 224)."""
    return LINE_WIDTH_AT_224 * size / DEFAULT_SIZE


# ----------------------------------------------------------------------------------------- checks


def _check_sketch(sketch: Sketch, chosen=None) -> None:
    """Raise InputError for a sketch that cannot be drawn (no strokes, bad shapes, non-finite).

    `chosen` (stroke indices) limits the per-stroke checks to the strokes about to be drawn, so that
    drawing a few strokes of a huge scene many times does not re-check every stroke each time."""
    if sketch.num_strokes == 0:
        raise InputError("sketch has no strokes", sketch.source)
    if sketch.num_strokes > MAX_STROKES:
        raise InputError(f"sketch has {sketch.num_strokes} strokes; at most {MAX_STROKES} can be drawn", sketch.source)
    indices = range(sketch.num_strokes) if chosen is None else [int(i) for i in chosen]
    strokes = [sketch.strokes[i] for i in indices]
    for index, stroke in zip(indices, strokes):
        if stroke.ndim != 2 or stroke.shape[1] != 2 or stroke.shape[0] < 1:
            raise InputError(f"stroke {index} has shape {stroke.shape}, expected (P >= 1, 2)", sketch.source)
    points = np.concatenate(strokes, axis=0) if strokes else np.zeros((0, 2))
    if not np.isfinite(points).all():
        bad = next(i for i, s in zip(indices, strokes) if not np.isfinite(s).all())
        raise InputError(f"stroke {bad} has non-finite coordinates", sketch.source)
    if sketch.stroke_widths is not None:
        widths = np.asarray(sketch.stroke_widths, dtype=np.float64)
        if widths.shape != (sketch.num_strokes,) or not np.isfinite(widths).all() or (widths < 0).any():
            raise InputError("stroke_widths must be one finite, non-negative width per stroke", sketch.source)
    if sketch.image is not None and (sketch.image.ndim != 2 or sketch.image.size == 0):
        raise InputError(f"bitmap image has shape {sketch.image.shape}, expected (H, W)", sketch.source)


def _check_size(size: int) -> int:
    if int(size) != size or size < 1:
        raise InputError(f"raster size must be a positive integer, got {size!r}")
    return int(size)


def _check_transform(transform: Transform) -> int:
    values = (transform.scale, transform.offset_x, transform.offset_y)
    if not (np.isfinite(values).all() and transform.scale > 0):
        raise InputError(f"transform needs a finite positive scale and finite offsets, got {transform}")
    return _check_size(transform.size)


def _line_width(line_width: float | None, size: int) -> float:
    if line_width is None:
        return default_line_width(size)
    if not (math.isfinite(line_width) and line_width > 0):
        raise InputError(f"line width must be a positive number of raster pixels, got {line_width!r}")
    return float(line_width)


# ------------------------------------------------------------------------------------- framing


def _ink_box(image: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) pixel-edge box of the ink (< INK_THRESHOLD) of a grey image, or None."""
    ink = image < INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def fit_transform(
    sketch: Sketch,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    *,
    line_width: float | None = None,
    use_source_widths: bool = False,
) -> Transform:
    """The Transform that fits the sketch's ink, centred, into a size x size raster.

    Vector sketches: the box of all stroke points, padded by half the line width on each side
    (`line_width` raster pixels, default `default_line_width(size)`; with `use_source_widths`,
    half the widest source stroke in canvas units). Bitmap sketches (`sketch.image` set): the
    pixel box of the image's ink, or the whole image when it has none.
    `margin` is the fraction of `size` left blank on each side. The aspect ratio is kept; a box
    with no extent (a dot) counts as 1e-3 of the canvas's longer side so nothing divides by zero.
    """
    _check_sketch(sketch)
    return _fit(sketch, _check_size(size), margin, line_width, use_source_widths)


def _fit(sketch: Sketch, size: int, margin: float, line_width: float | None, use_source_widths: bool) -> Transform:
    """fit_transform for a checked sketch and size."""
    if not (0 <= margin < 0.5):
        raise InputError(f"margin must be a fraction in [0, 0.5), got {margin!r}")
    pad_px, pad_canvas = 0.0, 0.0
    box = _ink_box(sketch.image) if sketch.image is not None else None
    if sketch.image is not None:
        if box is None:
            box = (0.0, 0.0, float(sketch.image.shape[1]), float(sketch.image.shape[0]))
    else:
        box = sketch.bounds()
        if use_source_widths and sketch.stroke_widths is not None:
            pad_canvas = float(np.max(sketch.stroke_widths))
        else:
            pad_px = _line_width(line_width, size)
    x0, y0, x1, y1 = box
    min_extent = 1e-3 * max(sketch.width, sketch.height, 1e-6)
    extent = max(x1 - x0 + pad_canvas, y1 - y0 + pad_canvas, min_extent)
    available = size * (1.0 - 2.0 * margin)
    # the line-width pad never takes more than half of the frame
    scale = max(available - pad_px, 0.5 * available) / extent
    return Transform(
        scale=scale,
        offset_x=size / 2.0 - scale * (x0 + x1) / 2.0,
        offset_y=size / 2.0 - scale * (y0 + y1) / 2.0,
        size=size,
    )


# ---------------------------------------------------------------------------------- path buffers


@dataclass
class _Paths:
    """All strokes of a sketch as cairo path data in one numpy buffer.

    data:   (2 * N, 2) float64 -- per point a header (MOVE_TO / LINE_TO, length 2) then the point,
            in raster coordinates. One-point strokes are doubled so they stroke as round dots.
    paths:  cffi array of cairo_path_t, one per piece of at most MAX_PATH_POINTS points of a stroke
            (one piece for most strokes), pointing into `data`.
    pieces: (S + 1,) int64: the pieces of stroke k are paths[pieces[k]:pieces[k + 1]].
    batches: cffi array of cairo_path_t, each covering consecutive whole pieces (~BATCH_POINTS points).
    extents: (S,) float64 raster diagonal of each stroke's box (0 for a dot).
    """

    data: np.ndarray
    paths: object
    pieces: np.ndarray
    batches: object
    extents: np.ndarray

    def pieces_of(self, stroke: int) -> range:
        return range(int(self.pieces[stroke]), int(self.pieces[stroke + 1]))


def _split_long(counts: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strokes of `counts` points cut into pieces of at most `limit` points, each piece starting at
    the last point of the one before: (point index of each piece point, (K,) piece sizes, (S,)
    pieces per stroke)."""
    per_stroke = np.maximum(-(-(counts - 1) // (limit - 1)), 1)
    owner = np.repeat(np.arange(len(counts)), per_stroke)
    number = np.arange(len(owner)) - np.repeat(np.cumsum(per_stroke) - per_stroke, per_stroke)
    first = number * (limit - 1)
    sizes = np.minimum(first + limit, counts[owner]) - first
    begin = (np.cumsum(counts) - counts)[owner] + first
    index = np.repeat(begin - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
    return index, sizes, per_stroke


def _build_paths(sketch: Sketch, transform: Transform, strokes: np.ndarray | None = None) -> _Paths:
    """Path data for the strokes `strokes` (default all), in that order, in raster coordinates."""
    chosen = sketch.strokes if strokes is None else [sketch.strokes[i] for i in strokes]
    counts = np.fromiter((len(s) for s in chosen), dtype=np.int64, count=len(chosen))
    points = transform.to_raster(np.concatenate(chosen, axis=0).astype(np.float64, copy=False))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    maxs = np.maximum.reduceat(points, starts, axis=0)
    mins = np.minimum.reduceat(points, starts, axis=0)
    extents = np.hypot(*(maxs - mins).T)
    per_stroke = np.ones(len(counts), dtype=np.int64)
    if (counts > MAX_PATH_POINTS).any():
        index, counts, per_stroke = _split_long(counts, MAX_PATH_POINTS)
        points = points[index]
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # double the single point of one-point strokes: move_to p, line_to p draws a round dot
    repeats = np.ones(len(points), dtype=np.int64)
    repeats[starts[counts == 1]] = 2
    points = np.repeat(points, repeats, axis=0)
    counts = np.maximum(counts, 2)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

    data = np.empty((2 * len(points), 2), dtype=np.float64)
    data[1::2] = points
    header = data.view(np.int32).reshape(-1, 4)[0::2]
    header[:, 0] = cairo.PATH_LINE_TO
    header[starts, 0] = cairo.PATH_MOVE_TO
    header[:, 1] = 2
    header[:, 2:] = 0

    base = int(_ffi.cast("uintptr_t", _ffi.from_buffer(data)))
    paths = _ffi.new("cairo_path_t[]", len(counts))
    table = np.frombuffer(_ffi.buffer(paths), dtype=_PATH_T_DTYPE)
    table["status"] = cairo.STATUS_SUCCESS
    table["data"] = base + 2 * starts * _PATH_DATA_SIZE
    table["num_data"] = 2 * counts
    # batches of consecutive strokes of about BATCH_POINTS points for the one-colour render
    ends = starts + counts
    cut = np.flatnonzero(np.diff(ends // BATCH_POINTS, prepend=0)) + 1
    bounds = np.unique(np.concatenate(([0], cut[cut < len(counts)], [len(counts)])))
    batches = _ffi.new("cairo_path_t[]", len(bounds) - 1)
    batch_table = np.frombuffer(_ffi.buffer(batches), dtype=_PATH_T_DTYPE)
    batch_table["status"] = cairo.STATUS_SUCCESS
    batch_table["data"] = base + 2 * starts[bounds[:-1]] * _PATH_DATA_SIZE
    batch_table["num_data"] = 2 * (ends[bounds[1:] - 1] - starts[bounds[:-1]])
    return _Paths(data=data, paths=paths, pieces=np.concatenate(([0], np.cumsum(per_stroke))), batches=batches,
                  extents=extents)


def _new_context(surface: cairo.ImageSurface, antialias: int) -> cairo.Context:
    ctx = cairo.Context(surface)
    ctx.set_antialias(antialias)
    ctx.set_line_cap(cairo.LINE_CAP_ROUND)
    ctx.set_line_join(cairo.LINE_JOIN_ROUND)
    return ctx


def _finish(ctx: cairo.Context, surface: cairo.ImageSurface) -> None:
    """Raise if cairo refused any call made through the raw library, then flush the pixels."""
    status = _lib.cairo_status(ctx._pointer)
    if status != cairo.STATUS_SUCCESS:
        reason = _ffi.string(_lib.cairo_status_to_string(status)).decode()
        raise SketchkitError(f"cairo could not draw the sketch: {reason}")
    surface.flush()


def _surface(fmt: int, size: int) -> tuple[cairo.ImageSurface, np.ndarray]:
    """A cairo image surface drawing straight into a zeroed (size, stride) uint8 numpy buffer."""
    stride = cairo.ImageSurface.format_stride_for_width(fmt, size)
    buffer = np.zeros(size * stride, dtype=np.uint8)
    return cairo.ImageSurface(fmt, size, size, buffer, stride), buffer.reshape(size, stride)


def _widths_px(
    sketch: Sketch, transform: Transform, line_width: float | None, use_source_widths: bool, chosen: np.ndarray
) -> np.ndarray:
    """(len(chosen),) float64 line width in raster pixels of each stroke in `chosen` (indices)."""
    if use_source_widths and sketch.stroke_widths is not None:
        return np.asarray(sketch.stroke_widths, dtype=np.float64)[chosen] * transform.scale
    return np.full(len(chosen), _line_width(line_width, transform.size))


def _stroke_each(ctx: cairo.Context, paths: _Paths, order, colors, widths) -> None:
    """Stroke paths.paths[k] for k in order with colour colors[k] ((r, g, b) floats) and width widths[k]."""
    pointer, stroke_path = ctx._pointer, paths.paths
    append, set_rgb = _lib.cairo_append_path, _lib.cairo_set_source_rgb
    set_width, stroke = _lib.cairo_set_line_width, _lib.cairo_stroke
    whole = paths.pieces[-1] == len(paths.pieces) - 1  # no stroke was cut: piece k is stroke k
    current = None
    for k in order:
        width = widths[k]
        if width != current:
            set_width(pointer, width)
            current = width
        set_rgb(pointer, *colors[k])
        for piece in ((k,) if whole else paths.pieces_of(k)):
            append(pointer, stroke_path + piece)
            stroke(pointer)


def _id_map(transform: Transform, paths: _Paths, ids: np.ndarray, widths_px: np.ndarray) -> np.ndarray:
    """(size, size) int32 map of ids[k] for the pixels drawn last by path k, -1 elsewhere."""
    size = transform.size
    surface, buffer = _surface(cairo.FORMAT_RGB24, size)
    ctx = _new_context(surface, cairo.ANTIALIAS_NONE)
    widths = np.maximum(widths_px, MIN_ID_LINE_WIDTH)
    # strokes shorter than a pixel are dots: wide enough that the disc covers a pixel centre
    widths = np.where(paths.extents < 1.0, np.maximum(widths, MIN_DOT_ID_WIDTH), widths).tolist()
    code = ids.astype(np.int64) + 1
    colors = (np.stack([(code >> 16) & 255, (code >> 8) & 255, code & 255], axis=1) / 255.0).tolist()
    _stroke_each(ctx, paths, range(len(ids)), colors, widths)
    _finish(ctx, surface)
    # RGB24 pixels are native-endian uint32 0x00RRGGBB
    return (buffer.view(np.int32)[:, :size] & 0xFFFFFF) - 1


def _ink_image(transform: Transform, paths: _Paths, widths_px: np.ndarray) -> np.ndarray:
    """(size, size) float32 anti-aliased grey render, 1 = paper, 0 = ink."""
    size = transform.size
    surface, buffer = _surface(cairo.FORMAT_A8, size)
    ctx = _new_context(surface, cairo.ANTIALIAS_GRAY)
    if (widths_px == widths_px[0]).all():
        # a few paths of consecutive strokes: overlaps inside one are covered once, not darkened
        # twice; batches keep cairo fast on huge scenes (one path of 10^5 strokes is 4x slower)
        ctx.set_line_width(float(widths_px[0]))
        ctx.set_source_rgba(0, 0, 0, 1)
        for b in range(len(paths.batches)):
            _lib.cairo_append_path(ctx._pointer, paths.batches + b)
            _lib.cairo_stroke(ctx._pointer)
    else:  # per distinct width, paths of about BATCH_POINTS points
        ctx.set_source_rgba(0, 0, 0, 1)
        for width in np.unique(widths_px).tolist():
            ctx.set_line_width(width)
            pending = 0
            for k in np.flatnonzero(widths_px == width).tolist():
                for piece in paths.pieces_of(k):
                    _lib.cairo_append_path(ctx._pointer, paths.paths + piece)
                    pending += paths.paths[piece].num_data // 2
                    if pending >= BATCH_POINTS:
                        _lib.cairo_stroke(ctx._pointer)
                        pending = 0
            _lib.cairo_stroke(ctx._pointer)
    _finish(ctx, surface)
    return 1.0 - buffer[:, :size].astype(np.float32) / 255.0


def _resample_image(image: np.ndarray, transform: Transform) -> np.ndarray:
    """(size, size) float32: a grey bitmap (canvas = its pixels) seen through `transform`, paper outside."""
    size, scale = transform.size, transform.scale
    height, width = image.shape
    # canvas box seen by the raster, then enough paper padding that the box lies inside the image
    left, top = -transform.offset_x / scale, -transform.offset_y / scale
    right, bottom = left + size / scale, top + size / scale
    pad = int(math.ceil(max(0.0, -left, -top, right - width, bottom - height))) + 1
    padded = np.pad(np.clip(image, 0.0, 1.0).astype(np.float32), pad, constant_values=1.0)
    box = (left + pad, top + pad, right + pad, bottom + pad)
    resample = Image.Resampling.BOX if scale < 1.0 else Image.Resampling.BILINEAR
    out = Image.fromarray(padded, mode="F").resize((size, size), resample=resample, box=box)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


# ------------------------------------------------------------------------------------ public API


def rasterize(
    sketch: Sketch,
    size: int = DEFAULT_SIZE,
    *,
    line_width: float | None = None,
    transform: Transform | None = None,
    margin: float = DEFAULT_MARGIN,
    use_source_widths: bool = False,
) -> Raster:
    """Draw a sketch into a square raster: the model image and the stroke-id map.

    size:        raster side in pixels (ignored when `transform` is given: transform.size wins).
    line_width:  ink width in raster pixels; default `default_line_width(size)` (1.5 px at 224).
    transform:   canvas -> raster mapping to use instead of fitting (e.g. `raster.transform.resized(512)`).
    margin:      blank fraction of the side on each side when fitting.
    use_source_widths: draw vector strokes with `sketch.stroke_widths` (canvas units) instead.

    Returns Raster(image (size, size) float32 1 = paper, stroke_ids (size, size) int32 -1 = no ink).
    The id map is drawn without anti-aliasing, strokes at least 1 px wide (dots 1.5 px) so that
    every stroke not covered by later ones owns a pixel; later strokes win overlaps.
    Bitmap sketches: the image is `sketch.image` resampled through the transform (area filter
    when shrinking); ids come from the pseudo-strokes at their source widths, kept where the
    resampled image has ink (a stroke that would lose every pixel keeps its own).
    Raises InputError for an empty sketch or non-finite coordinates.
    """
    _check_sketch(sketch)
    if transform is None:
        transform = _fit(sketch, _check_size(size), margin, line_width, use_source_widths)
    _check_transform(transform)
    paths = _build_paths(sketch, transform)
    ids = np.arange(sketch.num_strokes)
    if sketch.image is not None:
        image = _resample_image(sketch.image, transform)
        stroke_ids = _id_map(transform, paths, ids, _widths_px(sketch, transform, line_width, True, ids))
        stroke_ids = _mask_to_ink(stroke_ids, image < INK_THRESHOLD, sketch.num_strokes)
    else:
        widths_px = _widths_px(sketch, transform, line_width, use_source_widths, ids)
        image = _ink_image(transform, paths, widths_px)
        stroke_ids = _id_map(transform, paths, ids, widths_px)
    return Raster(image=image, stroke_ids=stroke_ids, transform=transform)


def _mask_to_ink(stroke_ids: np.ndarray, ink: np.ndarray, num_strokes: int) -> np.ndarray:
    """Keep id pixels on image ink; a stroke left with no pixel keeps all its own pixels."""
    drawn = stroke_ids >= 0
    owned_before = np.bincount(stroke_ids[drawn], minlength=num_strokes) > 0
    kept = drawn & ink
    owned_after = np.bincount(stroke_ids[kept], minlength=num_strokes) > 0
    lost = owned_before & ~owned_after
    kept |= drawn & lost[np.where(drawn, stroke_ids, 0)]
    return np.where(kept, stroke_ids, -1).astype(np.int32)


def render_stroke_ids(
    sketch: Sketch,
    transform: Transform,
    *,
    strokes=None,
    line_width: float | None = None,
    use_source_widths: bool | None = None,
) -> np.ndarray:
    """(size, size) int32 id map of only the strokes `strokes` (indices; default all), -1 = no ink.

    Ids keep their original stroke index; among the chosen strokes, a higher index wins overlaps.
    Same drawing rules as `rasterize` (no anti-aliasing, width >= 1 px, dots >= 1.5 px);
    `line_width` in raster pixels at transform.size, default `default_line_width(transform.size)`.
    `use_source_widths` defaults to True for bitmap sketches (pseudo-strokes) and False otherwise.
    No masking to bitmap ink is done here.
    """
    _check_transform(transform)
    if use_source_widths is None:
        use_source_widths = sketch.image is not None
    if strokes is None:
        chosen = np.arange(sketch.num_strokes)
    else:
        chosen = np.unique(np.asarray(strokes, dtype=np.int64).reshape(-1))
        if chosen.size and (chosen[0] < 0 or chosen[-1] >= sketch.num_strokes):
            raise InputError(f"stroke indices must lie in [0, {sketch.num_strokes}), got {chosen[0]}..{chosen[-1]}")
    _check_sketch(sketch, None if strokes is None else chosen)
    if chosen.size == 0:
        return np.full((transform.size, transform.size), -1, dtype=np.int32)
    paths = _build_paths(sketch, transform, chosen)
    return _id_map(transform, paths, chosen, _widths_px(sketch, transform, line_width, use_source_widths, chosen))


def render_rgb(
    sketch: Sketch,
    transform: Transform,
    colors,
    *,
    line_width: float | None = None,
    background=(1.0, 1.0, 1.0),
    use_source_widths: bool | None = None,
) -> np.ndarray:
    """(size, size, 3) uint8 RGB: anti-aliased strokes, stroke k in colors[k], drawn in index order.

    colors: (S, 3) floats in [0, 1] (clipped). background: (r, g, b) floats in [0, 1].
    `line_width` in raster pixels (default `default_line_width(transform.size)`);
    `use_source_widths` defaults to True for bitmap sketches and False otherwise.
    """
    _check_sketch(sketch)
    size = _check_transform(transform)
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape != (sketch.num_strokes, 3) or not np.isfinite(colors).all():
        raise InputError(f"colors must be finite with shape ({sketch.num_strokes}, 3), got {colors.shape}")
    background = np.clip(np.asarray(background, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if background.shape != (3,):
        raise InputError("background must be an (r, g, b) triple")
    if use_source_widths is None:
        use_source_widths = sketch.image is not None
    paths = _build_paths(sketch, transform)
    widths_px = _widths_px(sketch, transform, line_width, use_source_widths, np.arange(sketch.num_strokes))
    surface, buffer = _surface(cairo.FORMAT_RGB24, size)
    ctx = _new_context(surface, cairo.ANTIALIAS_GRAY)
    ctx.set_source_rgb(*background.tolist())
    ctx.paint()
    _stroke_each(ctx, paths, range(sketch.num_strokes), np.clip(colors, 0.0, 1.0).tolist(), widths_px.tolist())
    _finish(ctx, surface)
    pixels = buffer.view(np.uint32)[:, :size]
    return np.stack([(pixels >> 16) & 255, (pixels >> 8) & 255, pixels & 255], axis=-1).astype(np.uint8)
