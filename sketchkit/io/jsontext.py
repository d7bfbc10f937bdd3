"""JSON parsing for every file sketchkit reads from strangers: each failure is one InputError.

`json.loads` fails in three ways on hostile text: malformed text (JSONDecodeError), nesting deeper
than the recursion limit (RecursionError) and an integer longer than Python converts (a ValueError
past `sys.get_int_max_str_digits()`, 4,300 digits by default). `load_json` turns each into
"not valid JSON (...)" naming the file.
"""

from __future__ import annotations

import json
import sys

from sketchkit.errors import InputError

SEVERAL = object()
"""What `load_json(..., several=True)` returns for text holding several JSON values (ndjson)."""


def load_json(text: str | bytes, path: object | None = None, *, where: str = "", several: bool = False) -> object:
    """The parsed JSON value of `text`; InputError naming `path` (and `where`, e.g. "line 3: ") for text
    that is not JSON. `several`: return SEVERAL instead of failing when a second value follows the first."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if several and exc.msg == "Extra data":
            return SEVERAL
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        detail = "nested too deeply"
    except ValueError:  # int(): the only other ValueError json.loads raises
        detail = f"a number with more than the {sys.get_int_max_str_digits():,} digits Python converts"
    raise InputError(f"{where}not valid JSON ({detail})", path)
