"""QuickDraw drawings (.ndjson, one JSON record per line, simplified or raw):

    {"word": "cat", "countrycode": "US", "recognized": true, "key_id": "...",
     "drawing": [[[x0, x1, ...], [y0, y1, ...]], ...]}     # raw data adds a third list: times

Every stroke is labelled with "word" when present, and the caption is "a cat". The canvas is the
ink bounds (simplified drawings span 0..255). `read_sketch` reads the first drawing of a file;
`iter_quickdraw` streams all of them, one line at a time, so a whole category file can be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import MAX_NDJSON_LINE_BYTES
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
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise InputError(f"line {line_number}: not valid JSON ({detail})", path) from None


def read_first_drawing(text: str, path) -> Sketch:
    """The first non-blank line of ndjson `text` as a Sketch."""
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            return sketch_from_record(_record(line, path, line_number), path, where=f"line {line_number}: ")
    raise InputError("no drawing found (every line is blank)", path)


def iter_quickdraw(path: str | Path) -> Iterator[Sketch]:
    """Yield every drawing of a QuickDraw .ndjson file in file order, streaming line by line.

    Blank lines are skipped. A malformed line raises InputError naming its line number; a line
    longer than MAX_NDJSON_LINE_BYTES is refused. No limit on the file size or drawing count.
    """
    path = Path(path)
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
                yield sketch_from_record(_record(line, path, line_number), path, where=f"line {line_number}: ")
