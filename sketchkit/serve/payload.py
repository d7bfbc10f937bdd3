"""Request bodies -> sketches, label sets and thresholds, with the limits of docs/limits.md.

A request names its sketch in one of three ways (docs/serve.md):
- `"sketch"`: the file's text (SVG, stroke JSON), or a stroke JSON document itself (object or list);
- `"sketch_base64"`: the bytes of any sketch file, base64 (PNG, JPEG, SVG, JSON, .npy; a
  `data:...;base64,` prefix is allowed);
- `"index"`: in folder mode, the number of a sketch of the folder's listing.
`"filename"` is optional: its suffix helps when the content says nothing, and its base name (never
a path: nothing is opened by it) names the sketch in messages and outputs.

Bytes go through the same readers as `read_sketch`, chosen by `sketchkit.io.detect_format`. Every
problem is an `InputError`/`UsageError` whose one-line message is what the CLI prints for the same
file; `TooLarge` (HTTP 413) when the body or the sketch file in it is over its limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import replace
from pathlib import PurePosixPath

from ..errors import InputError, SketchkitError, UsageError
from ..inference import LabelPolicy
from ..inference.engine import check_threshold
from ..inference.policy import check_labels
from ..io.limits import MAX_FILE_BYTES
from ..types import Sketch

MAX_REQUEST_BYTES = MAX_FILE_BYTES * 4 // 3 + 2**20
"""Largest request body (86.3 MiB): a sketch file of MAX_FILE_BYTES (64 MiB), base64-encoded, in its JSON envelope."""

MAX_NAME_CHARS = 255
DEFAULT_NAME = "sketch"


class TooLarge(SketchkitError):
    """A request body, or the sketch file inside it, over its limit (HTTP 413)."""

    exit_code = 2


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def body_too_large(size: int | None, limit: int) -> TooLarge:
    told = f"{_mib(size)}, " if size is not None else ""
    return TooLarge(f"the request body is {told}more than the {_mib(limit)} the server reads")


def parse_json_body(data: bytes) -> dict:
    """The body as a JSON object; InputError (one line) otherwise."""
    if not data:
        raise InputError("the request body is empty; send a JSON object (see docs/serve.md)")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"the request body is not utf-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError("the request body is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise InputError(f"the request body must be a JSON object, not a {type(doc).__name__}")
    return doc


def display_name(value: object) -> str:
    """The base name of a client's file name, for messages and outputs only (no path survives)."""
    if value is None:
        return DEFAULT_NAME
    if not isinstance(value, str):
        raise InputError(f'"filename" must be text, got {type(value).__name__}')
    name = PurePosixPath(value.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:MAX_NAME_CHARS]
    return name if name not in ("", ".", "..") else DEFAULT_NAME


def sketch_bytes(body: dict) -> tuple[bytes, str]:
    """(file bytes, display name) of the sketch a body carries in "sketch" or "sketch_base64"."""
    name = display_name(body.get("filename"))
    given = [key for key in ("sketch", "sketch_base64") if body.get(key) is not None]
    if len(given) != 1:
        raise InputError('send the sketch in exactly one of "sketch" (its text, or a stroke JSON document) and '
                         '"sketch_base64" (a file\'s bytes)' + ("; got both" if given else ""))
    if given[0] == "sketch":
        value = body["sketch"]
        if isinstance(value, (dict, list)):
            data = json.dumps(value).encode("utf-8")
            name = name if name != DEFAULT_NAME else "sketch.json"
        elif isinstance(value, str):
            data = value.encode("utf-8")
        else:
            raise InputError(f'"sketch" must be text or a JSON document, got {type(value).__name__}')
    else:
        value = body["sketch_base64"]
        if not isinstance(value, str):
            raise InputError(f'"sketch_base64" must be text, got {type(value).__name__}')
        if value.startswith("data:") and "," in value:
            value = value.split(",", 1)[1]
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InputError('"sketch_base64" is not valid base64') from None
    return data, name


def read_sketch_bytes(data: bytes, name: str = DEFAULT_NAME) -> Sketch:
    """A sketch file's bytes -> Sketch, read as `read_sketch` reads a file of that name (without a
    caption file beside it: there is none). TooLarge over MAX_FILE_BYTES; InputError otherwise."""
    from .. import io as sketch_io

    if not data:
        raise InputError("the file is empty", name)
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(f"{name}: the file is {_mib(len(data))}, more than the {_mib(MAX_FILE_BYTES)} sketchkit reads")
    sketch = sketch_io.read_sketch_data(data, name)
    return replace(sketch, source=None if name == DEFAULT_NAME else name)


def request_labels(body: dict, sketch: Sketch, default: LabelPolicy) -> tuple[str, ...]:
    """The label set of a request: "labels" (a list of names, or one comma-separated string; names
    are used verbatim and never read as file names), else "caption" (its categories, as `sketchkit
    labels` finds them), else the server's default policy (its labels or caption, else the sketch's
    own caption)."""
    labels, caption = body.get("labels"), body.get("caption")
    if labels is not None:
        return tuple(parse_label_list(labels))
    if caption is not None:
        if not isinstance(caption, str):
            raise InputError(f'"caption" must be text, got {type(caption).__name__}')
        return tuple(LabelPolicy.from_caption(caption, default.vocabulary).labels_for(sketch))
    return tuple(default.labels_for(sketch))


def parse_label_list(value: object) -> list[str]:
    """A JSON list of names, or "a, b, c"; distinct non-blank names in order (UsageError when none)."""
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = value
    else:
        raise InputError('"labels" must be a list of names or a comma-separated string')
    return check_labels([" ".join(n.split()) for n in names])


def request_threshold(body: dict) -> float | None:
    value = body.get("threshold")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"the threshold must be a number within [0, 1], got {value!r:.40}", hint="threshold")
    check_threshold(float(value))
    return float(value)


def stroke_labels(body: dict, num_strokes: int) -> list[str | None]:
    """The body's "stroke_labels": one name (or null) per stroke."""
    value = body.get("stroke_labels")
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise InputError('"stroke_labels" must be a list with one name (or null) per stroke')
    if len(value) != num_strokes:
        raise InputError(f'"stroke_labels" has {len(value)} entries but the sketch has {num_strokes} strokes')
    return [(" ".join(v.split()) or None) if isinstance(v, str) else None for v in value]


def request_index(body: dict) -> int | None:
    """The body's "index" (folder mode), or None."""
    value = body.get("index")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f'"index" must be a whole number, got {value!r:.40}')
    return value
