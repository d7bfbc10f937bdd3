"""QuickDraw drawings: .ndjson (one JSON record per line), a JSON array of records, or one record.

    {"word": "cat", "countrycode": "US", "recognized": true, "key_id": "5152802093400064",
     "drawing": [[[x0, x1, ...], [y0, y1, ...]], ...]}     # raw data adds a third list: times

Both the "simplified" form (x, y lists; 0..255 integers) and the "raw" form (x, y, t lists; the
times are ignored) are read. Every stroke is labelled with "word" when present, and the caption
is "a cat". The canvas is the ink bounds. Empty strokes are dropped.

A file of several drawings is read drawing by drawing: `iter_named_drawings` streams an .ndjson
file one line at a time (a whole category file can be read), `named_drawings` does the same for
records already in memory. Each drawing is named by its key_id when it has one not used by an
earlier drawing of the file and that is safe in a file name (letters, digits, ".", "_", "-"), else
by its 0-based index ("3"; "3_" when an earlier key_id was "3"), and its `Sketch.source` becomes
"path#name". A file holding one drawing is a single sketch: name "" and
source "path". `read_sketch` reads only the first drawing (`sketchkit.io.iter_drawings` reads all).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import MAX_NDJSON_LINE_BYTES
from sketchkit.io.jsontext import load_json
from sketchkit.io.strokes_json import build_sketch, caption_from_names
from sketchkit.types import Sketch


def _stroke(value: object, index: int, path, where: str) -> np.ndarray:
    """One QuickDraw stroke [[xs], [ys](, [ts])] -> (P, 2) float64 points."""
    problem = f"{where}drawing stroke {index} must be [[x, ...], [y, ...]] (optionally [t, ...]) of equal length"
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise InputError(problem, path)
    try:
        xs, ys = (np.asarray(axis) for axis in value[:2])
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InputError(problem, path) from None
    if xs.ndim != 1 or ys.shape != xs.shape or xs.dtype.kind not in "biuf" or ys.dtype.kind not in "biuf":
        raise InputError(problem, path)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.stack([xs, ys], axis=1).astype(np.float64)


def sketch_from_record(record: object, path, where: str = "") -> Sketch:
    """A QuickDraw record (parsed JSON object) -> Sketch. `where` prefixes messages ("line 3: ")."""
    if not isinstance(record, dict) or "drawing" not in record:
        raise InputError(f"{where}not a QuickDraw record: expected an object with a 'drawing' list", path)
    drawing = record["drawing"]
    if not isinstance(drawing, list):
        raise InputError(f"{where}'drawing' must be a list of strokes", path)
    strokes = [_stroke(value, index, path, where) for index, value in enumerate(drawing)]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        raise InputError(f"{where}the drawing has no strokes", path)
    word = record.get("word")
    word = word.strip() if isinstance(word, str) and word.strip() else None
    return build_sketch(strokes, path, labels=[word] * len(strokes) if word else None,
                        caption=caption_from_names([word]) if word else None)


def _record(line: str, path, line_number: int) -> object:
    return load_json(line, path, where=f"line {line_number}: ")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of ndjson text."""
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield line_number, line


def read_first_drawing(text: str, path) -> Sketch:
    """The first non-blank line of ndjson `text` as a Sketch."""
    for line_number, line in _lines(text):
        return sketch_from_record(_record(line, path, line_number), path, where=f"line {line_number}: ")
    raise InputError("no drawing found (every line is blank)", path)


def _file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of an ndjson file, read one line at a time."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", path) from None
    with handle:
        line_number = 0
        while True:
            try:
                raw = handle.readline(MAX_NDJSON_LINE_BYTES + 1)
            except OSError as exc:
                raise InputError(f"cannot read the file: {exc.strerror or exc}", path) from None
            if not raw:
                return
            line_number += 1
            if len(raw) > MAX_NDJSON_LINE_BYTES:
                raise InputError(f"line {line_number} is longer than {MAX_NDJSON_LINE_BYTES} bytes", path)
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InputError(f"line {line_number}: not UTF-8 text", path) from None
            if line.strip():
                yield line_number, line


def _line_records(lines: Iterable[tuple[int, str]], path) -> Iterator[tuple[object, Sketch]]:
    for line_number, line in lines:
        record = _record(line, path, line_number)
        yield _key(record), sketch_from_record(record, path, where=f"line {line_number}: ")


_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")


def _key(record: object) -> str | None:
    """A record's key_id as text, or None when it has none that is safe in a file name (letters,
    digits, '.', '_', '-'; at most 100 characters; no leading '.')."""
    key = record.get("key_id") if isinstance(record, dict) else None
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return None
    key = str(key).strip()
    return key if _SAFE_KEY.match(key) else None


def _name(drawings: Iterator[tuple[str | None, Sketch]], path, empty: str) -> Iterator[tuple[str, Sketch]]:
    """Name the drawings of one file (module docstring); one drawing alone is named "". InputError
    with `empty` when there is none."""
    first = next(drawings, None)
    if first is None:
        raise InputError(empty, path)
    second = next(drawings, None)
    if second is None:
        yield "", first[1]
        return
    used: set[str] = set()
    for index, (key, sketch) in enumerate(chain([first, second], drawings)):
        name = key if key is not None and key not in used else str(index)
        while name in used:  # an index that an earlier key_id took
            name += "_"
        used.add(name)
        yield name, replace(sketch, source=f"{path}#{name}")


def named_drawings(records: list, path) -> Iterator[tuple[str, Sketch]]:
    """(name, Sketch) for every QuickDraw record of a parsed JSON array (see the module docstring)."""
    return _name(((_key(record), sketch_from_record(record, path, where=f"record {index}: "))
                  for index, record in enumerate(records)), path, "the JSON list is empty: no drawing found")


def named_text_drawings(text: str, path) -> Iterator[tuple[str, Sketch]]:
    """(name, Sketch) for every drawing of ndjson text already in memory."""
    return _name(_line_records(_lines(text), path), path, "no drawing found (every line is blank)")


def iter_named_drawings(path: str | Path) -> Iterator[tuple[str, Sketch]]:
    """(name, Sketch) for every drawing of a QuickDraw .ndjson file, streamed line by line.

    Blank lines are skipped. A malformed line raises InputError naming its line number (after the
    drawings before it were yielded); a line longer than MAX_NDJSON_LINE_BYTES is refused. No limit
    on the file size or drawing count; memory grows only with the names seen (for uniqueness).
    """
    path = Path(path)
    return _name(_line_records(_file_lines(path), path), path, "no drawing found (every line is blank)")


def iter_quickdraw(path: str | Path) -> Iterator[Sketch]:
    """Yield every drawing of a QuickDraw .ndjson file in file order, streaming line by line.

    Blank lines are skipped. A malformed line raises InputError naming its line number; a line
    longer than MAX_NDJSON_LINE_BYTES is refused. No limit on the file size or drawing count.
    Sketch.source is the file's path (`iter_named_drawings` also names each drawing).
    """
    path = Path(path)
    for _, sketch in _line_records(_file_lines(path), path):
        yield sketch
