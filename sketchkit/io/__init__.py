"""Read sketches: SVG, InkML, PNG/JPEG, FrISS/CBSC stroke JSON, QuickDraw (ndjson, JSON arrays of
records) and FS-COCO .npy.

    sketch = read_sketch("scene.svg")                  # any supported file -> its (first) Sketch
    sketch = read_sketch("scene.png", caption="a cat on a mat")
    for name, sketch in iter_drawings("cat.ndjson"):   # every sketch a file holds, named
        ...

`iter_drawings` is the complete reader: a file may hold several drawings (a QuickDraw .ndjson of
a whole category, a JSON array of QuickDraw records), and it yields each as its own sketch,
named by key_id or index. `read_sketch` returns the first drawing of such a file and says
nothing about the others: use it for files known to hold one sketch.

The reader is chosen by content first (PNG/JPEG magic bytes, NumPy magic, an `<ink>` root or the
InkML namespace for InkML, '<' after an optional UTF-8/16/32 byte-order mark for SVG, '{' or '['
for JSON, several JSON lines for QuickDraw ndjson) and by suffix only when the content says
nothing, so a PNG named .svg still reads as a PNG. A QuickDraw .ndjson larger than MAX_FILE_BYTES
(a whole category file) is streamed instead of being refused. Input files are only read, never
modified. Every problem (missing, empty, too large, truncated, malformed, unsupported, no strokes)
raises `InputError` naming the file and the problem in one line; resource limits are in
`sketchkit.io.limits`.

Caption: the `caption` argument when given; else a `.txt` with the same stem beside the input
(scene.svg + scene.txt); else what the file itself carries (sketchkit SVG metadata, FrISS instance
names, the QuickDraw word, FS-COCO's text/<user>/<id>.txt); else None.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from sketchkit.errors import InputError
from sketchkit.io import limits
from sketchkit.io.jsontext import SEVERAL, load_json
from sketchkit.io.limits import MAX_CAPTION_BYTES, read_bytes_limited
from sketchkit.io.quickdraw import iter_quickdraw
from sketchkit.io.strokes_json import caption_from_names, describe_skipped
from sketchkit.types import Sketch

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

__all__ = ["SUPPORTED_SUFFIXES", "caption_from_names", "describe_skipped", "detect_format", "iter_drawings",
           "iter_quickdraw", "read_caption_file", "read_sketch", "read_sketch_data"]

SUPPORTED_SUFFIXES = (".svg", ".inkml", ".json", ".ndjson", ".npy", ".png", ".jpg", ".jpeg")
"""Suffixes (lower case) of the files `sketchkit.data.find_sketches` collects from folders."""

_SUFFIX_FORMATS = {".svg": "svg", ".inkml": "inkml", ".json": "json", ".ndjson": "json", ".npy": "npy",
                   ".png": "bitmap", ".jpg": "bitmap", ".jpeg": "bitmap"}
_INKML_NAMESPACE = "http://www.w3.org/2003/InkML"
# the first element of the document (after the XML declaration, comments and a DOCTYPE)
_FIRST_ELEMENT = re.compile(r"^(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*<([\w.:-]+)", re.DOTALL)
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
    """'svg', 'inkml', 'json', 'npy', 'h5' (sketchkit results) or 'bitmap' from the content, else from the
    suffix, else None.

    InkML: the first element is `<ink>` (any prefix), or the InkML namespace appears in the first
    characters; any other markup is SVG (its reader names a wrong root element)."""
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
        first = _FIRST_ELEMENT.match(head)
        if (first and first.group(1).rpartition(":")[2] == "ink") or _INKML_NAMESPACE in head:
            return "inkml"
        if suffix.lower() == ".inkml" and not (first and first.group(1).rpartition(":")[2] == "svg"):
            return "inkml"
        return "svg"
    if head[:1] in ("{", "["):
        return "json"
    return _SUFFIX_FORMATS.get(suffix.lower())


def _describe_unknown(data: bytes) -> str:
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    return "not a recognised sketch format"


def read_caption_file(path: str | os.PathLike, within: str | os.PathLike | None = None) -> str | None:
    """A caption text file -> its text with whitespace runs collapsed (None when blank).

    UTF-8 (with or without BOM) or UTF-16 with BOM; at most MAX_CAPTION_BYTES. `within`: the folder
    the file must really lie in (a symbolic link leading out of it is refused, never read)."""
    path = Path(path)
    if within is not None and Path(within).resolve() not in path.resolve().parents:
        raise InputError(f"the caption file is a link leading outside {within}; sketchkit reads no caption from "
                         "outside the sketch's folder", path)
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

    text = _decode_json(data, path)
    doc = load_json(text, path, several=True)
    if doc is SEVERAL:  # several JSON values: QuickDraw ndjson, one drawing per line
        return read_first_drawing(text, path)
    return read_json_document(doc, path)


def _decode_json(data: bytes, path) -> str:
    encoding = "utf-16" if data[:4].startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"the JSON is not {encoding.replace('-sig', '')} text (byte {exc.start})", path) from None


def _json_drawings(data: bytes, path) -> Iterator[tuple[str, Sketch]]:
    """(name, Sketch) for every drawing of a JSON file: one for a scene or a single record, one per
    record of a QuickDraw array, one per line of ndjson."""
    from sketchkit.io.quickdraw import named_drawings, named_text_drawings
    from sketchkit.io.strokes_json import is_record_list, read_json_document

    text = _decode_json(data, path)
    doc = load_json(text, path, several=True)
    if doc is SEVERAL:
        return named_text_drawings(text, path)
    if is_record_list(doc):
        return named_drawings(doc, path)
    return iter([("", read_json_document(doc, path))])


def _read_format(fmt: str, data: bytes, path) -> Sketch:
    if fmt == "svg":
        from sketchkit.io.svg import read_svg

        return read_svg(data, path)
    if fmt == "inkml":
        from sketchkit.io.inkml import read_inkml

        return read_inkml(data, path)
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


def _format_of(data: bytes, path: Path) -> str:
    fmt = detect_format(data, path.suffix)
    if fmt is None:
        raise InputError(f"unsupported file type: {_describe_unknown(data)}; sketchkit reads "
                         f"{', '.join(SUPPORTED_SUFFIXES)} (SVG, InkML, stroke JSON, QuickDraw ndjson, "
                         "FS-COCO .npy, PNG/JPEG)", path)
    return fmt


def read_sketch_data(data: bytes, name: str) -> Sketch:
    """A sketch file's bytes (not from disk: an upload) -> Sketch, read as `read_sketch` reads a file called
    `name` (its suffix helps the sniffing; no caption file beside it). HDF5 results need a file."""
    fmt = _format_of(data, Path(name))
    if fmt == "h5":
        raise InputError("sketchkit HDF5 results are read from files only", name)
    sketch = _read_format(fmt, data, name)
    limits.check_canvas(sketch.width, sketch.height, name)
    return sketch


def _read_file(path: Path) -> Sketch:
    data = read_bytes_limited(path)
    return _read_format(_format_of(data, path), data, path)


def _is_streamed(path: Path) -> bool:
    """A QuickDraw .ndjson too large to read at once (a whole category file): streamed by line."""
    return path.suffix.lower() == ".ndjson" and path.is_file() and path.stat().st_size > limits.MAX_FILE_BYTES


def _with_caption(sketch: Sketch, path: Path, caption: str | None, sidecar: str | None) -> Sketch:
    """`caption` wins, then the sidecar file's text, then the sketch's own caption."""
    if caption is not None:
        found = " ".join(caption.split()) or None
    else:
        found = sidecar if sidecar is not None else sketch.caption
    return replace(sketch, caption=found)


def _sidecar_caption(path: Path, caption: str | None, sidecar: bool) -> str | None:
    """The text of the same-stem .txt beside `path`, only when it is wanted (no `caption`, `sidecar` True)
    and it lies in the sketch's own folder (a link out of it is refused)."""
    if caption is not None or not sidecar:
        return None
    txt = path.with_suffix(".txt") if path.suffix.lower() != ".txt" else None
    return read_caption_file(txt, within=path.parent) if txt is not None and txt.is_file() else None


def read_sketch(path: str | os.PathLike, *, caption: str | None = None, sidecar: bool = True) -> Sketch:
    """Read one sketch file (format sniffed from the content, then the suffix) into a Sketch.

    `caption` overrides any caption found; otherwise a same-stem `.txt` beside the file wins over
    the caption the file carries (`sidecar=False`: that file is not read, for callers that do not use
    captions). `Sketch.source` is `str(path)`. Raises InputError (naming the
    file) for anything that cannot be read as a sketch with at least one stroke.
    """
    path = Path(path)
    if _is_streamed(path):
        # a whole QuickDraw category file: stream up to the first drawing instead of reading it all
        sketch = next(iter_quickdraw(path), None)
        if sketch is None:
            raise InputError("no drawing found (every line is blank)", path)
    else:
        sketch = _read_file(path)
    limits.check_canvas(sketch.width, sketch.height, path)
    return replace(_with_caption(sketch, path, caption, _sidecar_caption(path, caption, sidecar)), source=str(path))


def iter_drawings(path: str | os.PathLike, *, caption: str | None = None, sidecar: bool = True
                  ) -> Iterator[tuple[str, Sketch]]:
    """Every sketch a file holds, as (name, Sketch), in file order.

    A file of one sketch (SVG, InkML, bitmap, .npy, a stroke-3 scene, one QuickDraw record, an
    ndjson of one line) yields one item named "" whose `Sketch.source` is `str(path)`, exactly what
    `read_sketch` returns. A file of several drawings (QuickDraw .ndjson, a JSON array of QuickDraw
    records) yields one item per drawing, named by its key_id when that is present, unique in the
    file and safe in a file name, else by its 0-based index ("3"); `Sketch.source` is then
    "path#name" so messages name the drawing. An .ndjson larger than MAX_FILE_BYTES is streamed
    line by line (never loaded whole); other files are read whole, within MAX_FILE_BYTES.

    Captions as in `read_sketch` (`sidecar` too), per drawing: `caption`, else a same-stem `.txt` beside the file,
    else the drawing's own ("a cat" from its word). Raises InputError (naming the file, and the
    line or record of a bad drawing) as soon as a drawing cannot be read; the drawings before it
    have been yielded.
    """
    path = Path(path)
    if _is_streamed(path):
        from sketchkit.io.quickdraw import iter_named_drawings

        drawings = iter_named_drawings(path)
    else:
        data = read_bytes_limited(path)
        fmt = _format_of(data, path)
        drawings = _json_drawings(data, path) if fmt == "json" else iter([("", _read_format(fmt, data, path))])
    side_text = _sidecar_caption(path, caption, sidecar)
    for name, sketch in drawings:
        limits.check_canvas(sketch.width, sketch.height, sketch.source or path)
        sketch = _with_caption(sketch, path, caption, side_text)
        yield name, replace(sketch, source=str(path) if not name else f"{path}#{name}")
