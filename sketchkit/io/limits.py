"""Resource limits every reader enforces, so that a hostile or broken file fails fast with an
InputError instead of exhausting memory or time.

All limits are checked before the expensive step they guard: the file size before any byte is
read, the SVG element count while the XML is parsed, the pixel count from the image header before
any pixel is decoded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sketchkit.errors import InputError

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest sketch file read at all (64 MiB); checked with stat() before opening."""

MAX_CAPTION_BYTES = 1024 * 1024
"""Largest caption .txt read beside a sketch (1 MiB)."""

MAX_SVG_ELEMENTS = 500_000
"""Most XML elements an SVG may hold (a scene of 200,000 one-path strokes fits with room to spare)."""

MAX_STROKES_PER_SKETCH = 500_000
"""Most strokes a sketch may have; counted (from the pen lifts or list length) before the per-stroke
arrays are built, each of which costs several hundred bytes beyond its points."""

MAX_POINTS_TOTAL = 20_000_000
"""Most stroke points a sketch may have after curve flattening (320 MB of float64 points)."""

MAX_POINTS_PER_CURVE = 4096
"""Most points one curve segment (Bezier, arc) or one circle/ellipse is flattened into."""

MAX_FLATTENED_POINTS = 2_000_000
"""Most points an SVG's curves, arcs, circles, ellipses and rounded corners may be flattened into,
counted before they are built (a 100 kB file of 5,000 arcs would otherwise make 20 million)."""

MAX_CURVE_ELEMENTS = 100_000
"""Most SVG shapes needing the general path parser (curves, arcs, relative commands, circles, ...);
paths of absolute M/L commands take a batched fast path and count only towards MAX_SVG_ELEMENTS."""

MAX_TRANSFORM_ITEMS = 1_000
"""Most items (translate, scale, ...) in one element's transform attribute."""

MAX_BITMAP_PIXELS = 40_000_000
"""Most pixels (width * height) a PNG/JPEG may declare; larger images are refused before decoding."""

MAX_COORDINATE = 1e7
"""Largest |x| or |y| a point may have, in canvas units, after all transforms."""

MAX_NDJSON_LINE_BYTES = 16 * 1024 * 1024
"""Longest line `iter_quickdraw` accepts when streaming a QuickDraw .ndjson file."""


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def check_file_size(path: Path, limit: int | None = None) -> int:
    """The size of the regular file at `path` in bytes; InputError when it is missing, not a
    file, unreadable, empty or larger than `limit` (default MAX_FILE_BYTES)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", path) from None
    if os.path.isdir(path):
        raise InputError("is a folder, not a sketch file", path)
    size = stat.st_size
    if size == 0:
        raise InputError("the file is empty", path)
    if size > limit:
        raise InputError(f"the file is {_mib(size)}, more than the {_mib(limit)} sketchkit reads", path)
    return size


def read_bytes_limited(path: Path, limit: int | None = None) -> bytes:
    """The whole content of `path` after `check_file_size` (default limit MAX_FILE_BYTES);
    InputError on any OS error.

    The read itself is capped at `limit + 1` bytes, so a file that grows after the stat() is still
    refused rather than read without bound."""
    limit = MAX_FILE_BYTES if limit is None else limit
    size = check_file_size(path, limit)
    try:
        with open(path, "rb") as handle:
            data = handle.read(size + 1)  # not read(limit + 1): that allocates the whole cap for every file
            if len(data) > size:  # grown since the stat(), or a device: read on up to the cap
                data += handle.read(limit + 1 - len(data))
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", path) from None
    if len(data) > limit:
        raise InputError(f"the file is larger than the {_mib(limit)} sketchkit reads", path)
    if not data:
        raise InputError("the file is empty", path)
    return data


def check_coordinates(points, path, what: str = "the sketch") -> None:
    """InputError unless every value of the float array `points` is finite and within
    +-MAX_COORDINATE canvas units."""
    points = np.asarray(points)
    if points.size == 0:
        return
    if not np.isfinite(points).all():
        raise InputError(f"{what} has non-finite coordinates (NaN or infinity)", path)
    largest = float(np.abs(points).max())
    if largest > MAX_COORDINATE:
        raise InputError(f"{what} has a coordinate of {largest:.3g}, beyond the +-{MAX_COORDINATE:.0e} "
                         "sketchkit accepts", path)


def check_canvas(width: float, height: float, path) -> None:
    """InputError unless the canvas size is finite, positive and within MAX_COORDINATE (a canvas of
    1e30 units would shrink the strokes drawn in it to nothing)."""
    if not all(math.isfinite(v) and 0 < v <= MAX_COORDINATE for v in (width, height)):
        raise InputError(f"canvas size {width:.3g} x {height:.3g} is not within (0, {MAX_COORDINATE:.0e}] units", path)


def check_stroke_count(count: int, path) -> None:
    """InputError when a sketch would have more than MAX_STROKES_PER_SKETCH strokes."""
    if count > MAX_STROKES_PER_SKETCH:
        raise InputError(f"the sketch has {count:,} strokes, more than the {MAX_STROKES_PER_SKETCH:,} sketchkit reads",
                         path)


def check_total_points(count: int, path) -> None:
    """InputError when a sketch would have more than MAX_POINTS_TOTAL points."""
    if count > MAX_POINTS_TOTAL:
        raise InputError(f"the sketch has more than {MAX_POINTS_TOTAL:,} points", path)


# ------------------------------------------------------------------ label lists and traced bitmaps

MAX_LIST_FILE_BYTES = 4 * 1024 * 1024
"""Largest label list, vocabulary or name-mapping file read (4 MiB); the read stops at limit + 1."""

MAX_LIST_FILE_LINES = 100_000
"""Most lines a label list, vocabulary or name-mapping file may have; the read stops at limit + 1."""

MAX_LABELS = 1_000
"""Most labels one sketch is scored against (each costs a text encoding and a score map)."""

MAX_LABEL_CHARS = 200
"""Longest label, in characters (CLIP reads at most 77 tokens of a prompt anyway)."""

MAX_BITMAP_STROKES = 50_000
"""Most pseudo-strokes traced from one PNG/JPEG (a speckled scan); checked before they are built."""

MAX_SKELETON_PIXELS = 4_000_000
"""Most pixels of thinned ink traced from one PNG/JPEG: 4,000 lines of 1,000 px; a checkerboard or
texture thins to half its pixels, and tracing holds about 140 bytes per skeleton pixel."""

_LIST_BLOCK = 1 << 16


def read_list_file(path, what: str = "label file", *, max_bytes: int = MAX_LIST_FILE_BYTES,
                   max_lines: int = MAX_LIST_FILE_LINES) -> str:
    """The UTF-8 text of a small list file (labels, a vocabulary, a name mapping), read as a stream
    in blocks so that /dev/zero, a FIFO or a huge file stops at `max_bytes` + 1 bytes or
    `max_lines` + 1 lines. InputError naming `what` for a missing, unreadable, oversized or
    non-UTF-8 file."""
    path = Path(path).expanduser()
    data, lines = bytearray(), 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(min(_LIST_BLOCK, max_bytes + 1 - len(data))):
                data += block
                lines += block.count(b"\n")
                if len(data) > max_bytes:
                    raise InputError(f"the {what} is larger than the {_mib(max_bytes)} sketchkit reads", path)
                if lines > max_lines:
                    raise InputError(f"the {what} has more than the {max_lines:,} lines sketchkit reads", path)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory", path) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", path) from None
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", path) from None


def check_label_count(count: int, source=None) -> None:
    """InputError when a sketch would be scored against more than MAX_LABELS labels."""
    if count > MAX_LABELS:
        raise InputError(f"{count:,} labels given, more than the {MAX_LABELS:,} sketchkit scores at once", source)


def check_label_length(label: str, source=None) -> None:
    """InputError for a label longer than MAX_LABEL_CHARS characters."""
    if len(label) > MAX_LABEL_CHARS:
        raise InputError(f"a label of {len(label):,} characters ({label[:20]!r}...), more than the "
                         f"{MAX_LABEL_CHARS} sketchkit accepts", source)


def check_skeleton_pixels(count: int, path) -> None:
    """InputError when an image's thinned ink has more than MAX_SKELETON_PIXELS pixels (before tracing them)."""
    if count > MAX_SKELETON_PIXELS:
        raise InputError(f"the image's ink thins to {count:,} pixels of line, more than the {MAX_SKELETON_PIXELS:,} "
                         "sketchkit traces (a texture or a dot pattern, not a line drawing)", path)


def check_bitmap_strokes(count: int, path) -> None:
    """InputError when tracing a bitmap would give more than MAX_BITMAP_STROKES pseudo-strokes."""
    if count > MAX_BITMAP_STROKES:
        raise InputError(f"the image traces into more than {MAX_BITMAP_STROKES:,} separate strokes "
                         "(specks or a dot pattern, not a line drawing)", path)
