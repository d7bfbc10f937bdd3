"""FS-COCO vector sketches: `.npy` arrays of shape (N, 3) [x, y, pen_flag].

Coordinates are absolute canvas points. As in the public FS-COCO loaders, pen_flag = 1 means "the
pen is lifted after this point": it marks the last point of a stroke. Some exports put the flag on
the first point of each stroke instead; a file whose first row is flagged and whose last row is not
is read that way (under the usual convention it would start with a one-point stroke and end
without a lift, which real drawings do not do).

Arrays are loaded with `allow_pickle=False`: an object array (which needs pickle, i.e. arbitrary
code execution) is refused. The header is checked before any data is read: dtype, shape and a
size that the file can actually hold.

Caption: a `.txt` with the same stem beside the file (handled by `read_sketch`), else, in FS-COCO's
own layout `<root>/vector_sketches/<user>/<id>.npy`, the file `<root>/text/<user>/<id>.txt`.
The canvas is the ink bounds plus a small margin (the arrays carry no canvas size).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.strokes_json import build_sketch, split_at_lifts
from sketchkit.types import Sketch

NPY_MAGIC = b"\x93NUMPY"


@contextlib.contextmanager
def python2_headers_quietly():
    """numpy reads a .npy header written by Python 2 (`(3L, 3L)`) with a UserWarning: valid input, no warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created on Python 2", category=UserWarning)
        yield


def load_npy(data: bytes, allow_pickle: bool = False) -> np.ndarray:
    """np.load of .npy bytes, Python 2 headers included."""
    with python2_headers_quietly():
        return np.load(io.BytesIO(data), allow_pickle=allow_pickle)


def read_npy_header(data: bytes, path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a .npy header, nothing loaded; InputError for a broken or unsupported header."""
    stream = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        with python2_headers_quietly():
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(stream)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = fmt.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unknown .npy version {version}")
    except (ValueError, TypeError, OSError, EOFError, SyntaxError, OverflowError) as exc:
        raise InputError(f"not a valid .npy file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         path) from None
    return shape, dtype


def _header(data: bytes, path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an FS-COCO vector .npy: a plain numeric (N, 3) array the file can hold."""
    shape, dtype = read_npy_header(data, path)
    if dtype.hasobject:
        raise InputError("the .npy array holds Python objects, which can only be loaded with pickle; "
                         "sketchkit refuses to unpickle files (save a plain numeric (N, 3) array)", path)
    if dtype.kind not in "biuf":
        raise InputError(f"the .npy array has dtype {dtype}, expected numbers", path)
    if len(shape) != 2 or shape[1] != 3:
        raise InputError(f"the .npy array has shape {shape}, expected (N, 3) rows of [x, y, pen_flag]", path)
    if shape[0] * 3 * dtype.itemsize > len(data):
        raise InputError(f"the .npy file is truncated: its header declares {shape[0]} rows", path)
    return shape, dtype


def read_fscoco_npy(data: bytes, path) -> Sketch:
    """FS-COCO `.npy` bytes -> Sketch (strokes in the array's canvas units; caption from text/)."""
    shape, _ = _header(data, path)
    if shape[0] == 0:
        raise InputError("the .npy array has no rows: no strokes found", path)
    try:
        rows = load_npy(data)
    except ValueError as exc:
        raise InputError(f"cannot load the .npy array ({str(exc).splitlines()[0]})", path) from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot load the .npy array ({exc})", path) from None
    rows = np.asarray(rows, dtype=np.float64)
    flags = rows[:, 2] > 0.5
    if len(flags) > 1 and flags[0] and not flags[-1]:
        # flags mark the first point of each stroke: a stroke ends just before the next flag
        flags = np.append(flags[1:], True)
    strokes = split_at_lifts(rows[:, :2], flags, path)
    return build_sketch(strokes, path, caption=fscoco_caption(Path(path)) if path is not None else None)


def fscoco_caption_path(path: Path) -> Path | None:
    """`<root>/text/<user>/<id>.txt` for `<root>/vector_sketches/<user>/<id>.npy`, else None."""
    if path.parent.parent.name != "vector_sketches":
        return None
    return path.parent.parent.parent / "text" / path.parent.name / f"{path.stem}.txt"


def fscoco_caption(path: Path) -> str | None:
    """The FS-COCO caption of the sketch at `path`, when its text file exists."""
    from sketchkit.io import read_caption_file

    caption_path = fscoco_caption_path(path)
    if caption_path is None or not caption_path.is_file():
        return None
    return read_caption_file(caption_path, within=path.parent.parent.parent / "text")
