"""The reference's model input and stroke geometry, as pure functions of a `Sketch`.

The reference code (AhmedBourouis/Scene-Sketch-Segmentation at af751b1; `test.py` 47-58, `utils.py`
288-336, `models/clip.py` 94-101) sees a sketch like this, and so does everything here:

1. The 256 frame. The canvas (width x height canvas units) is fitted into a 256 x 256 frame by its
   longest side and centred: with s = 256 / max(w, h), x' = x * s + (256 - w * s) / 2 and
   y' = y * s + (256 - h * s) / 2, computed in that order in float64 (`to_frame`). 256 is the frame
   `utils.preprocess` assumes (it divides by 256).
2. Stroke footprints at 512 px. Each stroke's points go to 512 px as x' / 256 * 512, rounded with
   `np.round` (half to even); consecutive points are joined with 1-px Bresenham lines (the algorithm
   of the `bresenham` package, `bresenham_line`); a pixel is kept only when 0 < x < 512 and
   0 < y < 512 (row 0 and column 0 never receive a line pixel); then one binary dilation with the
   3 x 3 cross (scipy.ndimage's default structure). A stroke's footprint is its own 512-px mask.
3. The sketch image: 0 (ink) wherever any footprint is set, 255 elsewhere (`sketch_image`).
4. The model input: that image as RGB, PIL `resize((224, 224), BICUBIC)` (PIL's antialiased bicubic,
   not `torch.nn.functional.interpolate`), /255, then the CLIP mean/std normalisation
   (`input_tensor`): (1, 3, 224, 224) float32.

Frames: "frame" coordinates are the 256 frame of step 1; "pixels" are the 512-px raster of step 2,
where point (x, y) lands in column round(x / 256 * 512), row round(y / 256 * 512).
`pixel_transform` states that mapping as a `sketchkit.types.Transform` in sketchkit's convention
(pixel (i, j) covers [j, j + 1) x [i, i + 1)): raster = canvas * (512 / max(w, h)) + offset + 0.5, so
results can be drawn or voted in sketchkit's own frames (`Transform.resized(224)` gives the model
input's frame, since the 224-px image is a resize of the whole 512-px one).

Bresenham is written here in numpy (vectorised over all segments of a sketch) rather than taken
from the `bresenham` package: the package yields one pixel at a time from a Python generator and
has no other use in sketchkit; `tests/test_reference.py` checks this implementation against a
transcription of the package's loop. Segments far outside the raster are clipped along their major
axis before any pixel is generated (exactly: the minor coordinate has a closed form), so a stroke
with huge coordinates costs no more than one crossing the raster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sketchkit.errors import InputError
from sketchkit.model.encoder import CLIP_MEAN, CLIP_STD
from sketchkit.types import Sketch, Transform

FRAME = 256
"""Side of the reference's coordinate frame (`utils.preprocess` divides by 256)."""
SIDE = 512
"""Side of the stroke footprints, the sketch image and the evaluation rasters (`prerender_stroke`)."""
INPUT_SIZE = 224
"""Side of the model input (`models/clip.py` `_transform(224)`)."""

_INT64_SAFE_LENGTH = 1 << 30  # segments shorter than this: 2 * minor * step + major fits int64


# ---------------------------------------------------------------------------------------- frames


def frame_fit(width: float, height: float) -> tuple[float, float, float]:
    """(s, offset_x, offset_y) of the canvas -> 256-frame fit: x' = x * s + offset_x, y' = y * s + offset_y.

    s = 256 / max(width, height); offsets (256 - width * s) / 2 and (256 - height * s) / 2, float64.
    """
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise InputError(f"canvas size {width!r} x {height!r} must be finite and positive")
    scale = FRAME / max(width, height)
    return scale, (FRAME - width * scale) / 2, (FRAME - height * scale) / 2


def to_frame(sketch: Sketch) -> tuple[np.ndarray, ...]:
    """The sketch's strokes in the 256 frame: S arrays (P_i, 2) float64, x' = x * s + offset (see `frame_fit`)."""
    scale, off_x, off_y = frame_fit(sketch.width, sketch.height)
    if not sketch.strokes:
        return ()
    points = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in sketch.strokes])
    framed = np.empty_like(points)
    framed[:, 0] = points[:, 0] * scale + off_x
    framed[:, 1] = points[:, 1] * scale + off_y
    ends = np.cumsum([len(s) for s in sketch.strokes])[:-1]
    return tuple(np.split(framed, ends))


def pixel_transform(sketch: Sketch, size: int = SIDE) -> Transform:
    """Canvas -> the reference's `size`-px raster (512: footprints, image, evaluation) in sketchkit's
    convention: a canvas point lands in pixel (int(r_y), int(r_x)) of r = canvas * scale + offset.

    The reference puts point p in pixel round(p * s * 512 / 256 + offset * 512 / 256); that pixel covers
    [j - 0.5, j + 0.5) there, hence the + 0.5 (up to the rounding of the reference's own float64
    arithmetic and its half-to-even ties). `Transform.resized(224)` is the frame of the model input.
    """
    scale, off_x, off_y = frame_fit(sketch.width, sketch.height)
    k = SIDE / FRAME
    return Transform(scale * k, off_x * k + 0.5, off_y * k + 0.5, SIDE).resized(size)


def to_pixels(frame_points: np.ndarray) -> np.ndarray:
    """(P, 2) frame points -> (P, 2) int64 512-px coordinates: np.round(p / 256 * 512), half to even.

    The arithmetic is `utils.preprocess`'s, in its order (divide by 256, multiply by 512, round).
    """
    points = np.asarray(frame_points, dtype=np.float64)
    scaled = np.round(points / np.array([FRAME, FRAME]) * SIDE)
    if not np.isfinite(scaled).all() or np.abs(scaled).max(initial=0) > 2.0**52:
        raise InputError("a stroke point is not finite or lies beyond 2**52 pixels of the reference raster")
    return scaled.astype(np.int64)


# ------------------------------------------------------------------------------------- bresenham


def bresenham_line(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(n, 2) int64 pixels (x, y) from (x0, y0) to (x1, y1), both included, in the `bresenham`
    package's order and choice of pixels (ties on exact diagonals go to the y-major branch)."""
    pixels, _ = bresenham_segments(np.array([[x0, y0]]), np.array([[x1, y1]]), clip=None)
    return pixels


def bresenham_segments(starts: np.ndarray, ends: np.ndarray, *, clip: int | None = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Bresenham pixels of M segments at once.

    starts, ends: (M, 2) int (x, y). Returns (pixels (K, 2) int64 (x, y), segment (K,) int64): each
    segment's pixels in the package's order, segments in input order. With `clip` = n, only pixels
    with 0 < x < n and 0 < y < n are returned (the reference's bounds test), and pixels outside are
    never generated.

    The package walks the major axis t = 0..A (A = max(|dx|, |dy|), x-major when |dx| > |dy|) and
    steps the minor axis when its error term D >= 0; the minor offset at step t is then
    floor((2 B t + A) / (2 A)), B = min(|dx|, |dy|), which is what is computed here.
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1, 2)
    dx, dy = ends[:, 0] - starts[:, 0], ends[:, 1] - starts[:, 1]
    y_major = np.abs(dx) <= np.abs(dy)  # the package's `else` branch (dx > dy is false)
    a0 = np.where(y_major, starts[:, 1], starts[:, 0])
    b0 = np.where(y_major, starts[:, 0], starts[:, 1])
    da = np.where(y_major, dy, dx)
    db = np.where(y_major, dx, dy)
    sign_a = np.where(da > 0, 1, -1)
    sign_b = np.where(db > 0, 1, -1)
    major, minor = np.abs(da), np.abs(db)
    low, high = np.zeros_like(major), major.copy()
    if clip is not None:  # keep steps whose major coordinate a0 + t * sign_a lies in [1, clip - 1]
        up = sign_a > 0
        low = np.maximum(low, np.where(up, 1 - a0, a0 - (clip - 1)))
        high = np.minimum(high, np.where(up, clip - 1 - a0, a0 - 1))
    counts = np.maximum(high - low + 1, 0)
    total = int(counts.sum())
    segment = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    t = low[segment] + (np.arange(total, dtype=np.int64) - first[segment])
    big, mj = minor[segment], major[segment]
    if total and int(major.max(initial=0)) >= _INT64_SAFE_LENGTH:  # exact integer arithmetic without overflow
        step = np.array([(2 * int(b) * int(s) + int(m)) // (2 * int(m)) if m else 0
                         for b, s, m in zip(big, t, mj)], dtype=np.int64)
    else:
        step = np.where(mj > 0, (2 * big * t + mj) // np.maximum(2 * mj, 1), 0)
    a = a0[segment] + t * sign_a[segment]
    b = b0[segment] + step * sign_b[segment]
    ym = y_major[segment]
    pixels = np.stack([np.where(ym, b, a), np.where(ym, a, b)], axis=1)
    if clip is not None:
        inside = (pixels[:, 1] > 0) & (pixels[:, 1] < clip) & (pixels[:, 0] > 0) & (pixels[:, 0] < clip)
        pixels, segment = pixels[inside], segment[inside]
    return pixels, segment


# ------------------------------------------------------------------------------------ footprints


@dataclass(frozen=True)
class Footprints:
    """Per-stroke 512-px masks (`prerender_stroke`), stored sparsely.

    pixels:  (K,) int64 flat pixel indices row * side + col; stroke i owns pixels[offsets[i]:offsets[i + 1]],
             sorted and unique within the stroke.
    offsets: (S + 1,) int64.
    side:    raster side (512).
    A stroke drawn entirely outside the raster has an empty footprint.
    """

    pixels: np.ndarray
    offsets: np.ndarray
    side: int = SIDE

    @property
    def num_strokes(self) -> int:
        return len(self.offsets) - 1

    def stroke(self, index: int) -> np.ndarray:
        """(k,) flat pixel indices of stroke `index`."""
        return self.pixels[self.offsets[index]:self.offsets[index + 1]]

    def owners(self) -> np.ndarray:
        """(K,) int64 stroke index of every entry of `pixels`."""
        return np.repeat(np.arange(self.num_strokes, dtype=np.int64), np.diff(self.offsets))

    def ink(self) -> np.ndarray:
        """(side, side) bool: pixels covered by any stroke."""
        ink = np.zeros(self.side * self.side, dtype=bool)
        ink[self.pixels] = True
        return ink.reshape(self.side, self.side)

    def masks(self) -> np.ndarray:
        """(S, side, side) bool dense masks (test.py's `strokes_seg`); S * side^2 bytes, for small scenes."""
        dense = np.zeros((self.num_strokes, self.side * self.side), dtype=bool)
        dense[self.owners(), self.pixels] = True
        return dense.reshape(self.num_strokes, self.side, self.side)


def stroke_footprints(frame_strokes: Sequence[np.ndarray]) -> Footprints:
    """Footprints of strokes given in the 256 frame (S arrays (P_i, 2) float64, see `to_frame`).

    Per stroke: points to pixels (`to_pixels`), Bresenham between consecutive points (a one-point
    stroke is its point), pixels kept when 0 < x < 512 and 0 < y < 512, then the cross dilation.
    """
    side = SIDE
    num_strokes = len(frame_strokes)
    lengths = np.array([len(s) for s in frame_strokes], dtype=np.int64)
    if not lengths.sum():
        return Footprints(np.zeros(0, dtype=np.int64), np.zeros(num_strokes + 1, dtype=np.int64), side)
    points = to_pixels(np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in frame_strokes]))
    first = np.cumsum(lengths) - lengths
    owner_of_point = np.repeat(np.arange(num_strokes, dtype=np.int64), lengths)
    has_next = np.ones(len(points), dtype=bool)
    has_next[(first + lengths - 1)[lengths > 0]] = False  # a stroke's last point starts no segment
    single = first[lengths == 1]  # a one-point stroke is the segment from its point to itself
    start = np.concatenate([np.flatnonzero(has_next), single])
    end = np.concatenate([np.flatnonzero(has_next) + 1, single])
    pixels, segment = bresenham_segments(points[start], points[end], clip=side)
    stroke = owner_of_point[start][segment]
    x, y = pixels[:, 0], pixels[:, 1]
    # cross dilation: the pixel and its four neighbours; line pixels lie in [1, side - 1], so only
    # x + 1 and y + 1 can leave the raster
    keys = stroke * (side * side) + y * side + x
    keys = np.concatenate([keys, keys - 1, keys[x + 1 < side] + 1, keys - side, keys[y + 1 < side] + side])
    keys.sort()  # sort + neighbour test: several times faster than np.unique's hashing on large scenes
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    owners, flat = np.divmod(keys, side * side)
    offsets = np.zeros(num_strokes + 1, dtype=np.int64)
    np.cumsum(np.bincount(owners, minlength=num_strokes), out=offsets[1:])
    return Footprints(flat, offsets, side)


# ----------------------------------------------------------------------------------- image, input


def sketch_image(footprints: Footprints) -> np.ndarray:
    """(512, 512) uint8: 0 where any stroke's footprint is set, 255 elsewhere (test.py 52-56, one channel)."""
    return np.where(footprints.ink(), 0, 255).astype(np.uint8)


def input_tensor(image: np.ndarray) -> torch.Tensor:
    """(side, side) uint8 sketch image -> (1, 3, 224, 224) float32 CLIP input, as `_transform(224)`:
    RGB PIL image, `resize((224, 224), BICUBIC)`, /255, (x - mean) / std with CLIP's mean and std."""
    from PIL import Image

    rgb = np.repeat(np.asarray(image, dtype=np.uint8)[:, :, None], 3, axis=2)
    resized = Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.as_tensor(CLIP_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(CLIP_STD, dtype=torch.float32).view(-1, 1, 1)
    return x.sub_(mean).div_(std).unsqueeze(0)
