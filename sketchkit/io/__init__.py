"""Read sketches: SVG, PNG/JPEG, FrISS/CBSC stroke JSON, QuickDraw ndjson and FS-COCO .npy.

    sketch = read_sketch("scene.svg")                  # any supported file -> Sketch
    sketch = read_sketch("scene.png", caption="a cat on a mat")
    for drawing in iter_quickdraw("cat.ndjson"): ...   # every drawing of a QuickDraw file

The reader is chosen by content first (PNG/JPEG magic bytes, NumPy magic, '<' after an optional
UTF-8/16/32 byte-order mark for SVG, '{' or '[' for JSON, several JSON lines for QuickDraw ndjson)
and by suffix only when the content says nothing, so a PNG named .svg still reads as a PNG.
A QuickDraw .ndjson larger than MAX_FILE_BYTES (a whole category file) is streamed up to its first
drawing instead of being refused. Input files are only read, never modified. Every problem
(missing, empty, too large, truncated, malformed, unsupported, no strokes) raises `InputError`
naming the file and the problem in one line; resource limits are in `sketchkit.io.limits`.

Caption: the `caption` argument when given; else a `.txt` with the same stem beside the input
(scene.svg + scene.txt); else what the file itself carries (sketchkit SVG metadata, FrISS instance
names, the QuickDraw word, FS-COCO's text/<user>/<id>.txt); else None.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from sketchkit.errors import InputError
from sketchkit.io import limits
from sketchkit.io.limits import MAX_CAPTION_BYTES, read_bytes_limited
from sketchkit.io.quickdraw import iter_quickdraw
from sketchkit.io.strokes_json import caption_from_names
from sketchkit.types import Sketch

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

__all__ = ["SUPPORTED_SUFFIXES", "caption_from_names", "detect_format", "iter_quickdraw", "read_caption_file",
           "read_sketch"]

SUPPORTED_SUFFIXES = (".svg", ".json", ".ndjson", ".npy", ".png", ".jpg", ".jpeg")
"""Suffixes (lower case) of the files `sketchkit.data.find_sketches` collects from folders."""

_SUFFIX_FORMATS = {".svg": "svg", ".json": "json", ".ndjson": "json", ".npy": "npy", ".png": "bitmap",
                   ".jpg": "bitmap", ".jpeg": "bitmap"}
_OTHER_MAGIC = ((b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"II*\x00", "a TIFF image"),
                (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive (.npz?)"),
                (b"\x1f\x8b", "a gzip archive"), (b"BM", "a BMP image"))
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8"),
         (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))


def _text_head(data: bytes, size: int = 1024) -> str:
    """The first characters of `data` as text, decoded leniently from its BOM or UTF-16 pattern."""
    encoding, skip = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, skip = name, len(bom)
            break
    else:
        if data[:2] == b"<\x00":
            encoding = "utf-16-le"
        elif data[:2] == b"\x00<":
            encoding = "utf-16-be"
    return data[skip:skip + size].decode(encoding, errors="ignore")


def detect_format(data: bytes, suffix: str = "") -> str | None:
    """'svg', 'json', 'npy', 'h5' (sketchkit results) or 'bitmap' from the content, else from the suffix, else None."""
    from sketchkit.io.bitmap import JPEG_MAGIC, PNG_MAGIC
    from sketchkit.io.fscoco import NPY_MAGIC

    if data.startswith(PNG_MAGIC) or data.startswith(JPEG_MAGIC):
        return "bitmap"
    if data.startswith(NPY_MAGIC):
        return "npy"
    if data.startswith(HDF5_MAGIC):
        return "h5"
    head = _text_head(data).lstrip()
    if head.startswith("<"):
        return "svg"
    if head[:1] in ("{", "["):
        return "json"
    return _SUFFIX_FORMATS.get(suffix.lower())


def _describe_unknown(data: bytes) -> str:
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    return "not a recognised sketch format"


def read_caption_file(path: str | os.PathLike) -> str | None:
    """A caption text file -> its text with whitespace runs collapsed (None when blank).

    UTF-8 (with or without BOM) or UTF-16 with BOM; at most MAX_CAPTION_BYTES."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None
    except OSError as exc:
        raise InputError(f"cannot read the caption file: {exc.strerror or exc}", path) from None
    data = read_bytes_limited(path, MAX_CAPTION_BYTES)
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise InputError("the caption file is not UTF-8 text", path) from None
    return " ".join(text.split()) or None


def _read_json(data: bytes, path) -> Sketch:
    from sketchkit.io.quickdraw import read_first_drawing
    from sketchkit.io.strokes_json import read_json_document

    head = data[:4]
    encoding = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"the JSON is not {encoding.replace('-sig', '')} text (byte {exc.start})", path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several JSON values: QuickDraw ndjson, one drawing per line
            return read_first_drawing(text, path)
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path) from None
    from sketchkit.io.result_json import is_result_document, read_result_json

    if is_result_document(doc):
        return read_result_json(doc, path)
    return read_json_document(doc, path)


def _read_format(fmt: str, data: bytes, path) -> Sketch:
    if fmt == "svg":
        from sketchkit.io.svg import read_svg

        return read_svg(data, path)
    if fmt == "json":
        return _read_json(data, path)
    if fmt == "npy":
        from sketchkit.io.fscoco import read_fscoco_npy

        return read_fscoco_npy(data, path)
    if fmt == "h5":
        from sketchkit.io.hdf5 import read_sketch_h5

        return read_sketch_h5(path)
    from sketchkit.io.bitmap import read_bitmap

    return read_bitmap(data, path)


def _read_file(path: Path) -> Sketch:
    data = read_bytes_limited(path)
    fmt = detect_format(data, path.suffix)
    if fmt is None:
        raise InputError(f"unsupported file type: {_describe_unknown(data)}; sketchkit reads "
                         f"{', '.join(SUPPORTED_SUFFIXES)} (SVG, stroke JSON, QuickDraw ndjson, FS-COCO .npy, "
                         "PNG/JPEG)", path)
    return _read_format(fmt, data, path)


def read_sketch(path: str | os.PathLike, *, caption: str | None = None) -> Sketch:
    """Read one sketch file (format sniffed from the content, then the suffix) into a Sketch.

    `caption` overrides any caption found; otherwise a same-stem `.txt` beside the file wins over
    the caption the file carries. `Sketch.source` is `str(path)`. Raises InputError (naming the
    file) for anything that cannot be read as a sketch with at least one stroke.
    """
    path = Path(path)
    if path.suffix.lower() == ".ndjson" and path.is_file() and path.stat().st_size > limits.MAX_FILE_BYTES:
        # a whole QuickDraw category file: stream up to the first drawing instead of reading it all
        sketch = next(iter_quickdraw(path), None)
        if sketch is None:
            raise InputError("no drawing found (every line is blank)", path)
    else:
        sketch = _read_file(path)
    limits.check_canvas(sketch.width, sketch.height, path)
    if caption is not None:
        found = " ".join(caption.split()) or None
    else:
        sidecar = path.with_suffix(".txt") if path.suffix.lower() != ".txt" else None
        found = read_caption_file(sidecar) if sidecar is not None and sidecar.is_file() else None
        found = found if found is not None else sketch.caption
    return replace(sketch, caption=found, source=str(path))
