"""Text from strangers (labels, captions, file names): one rule for what is stored and what is shown.

Stored: a label or caption may hold any character except NUL (HDF5 strings end at it) and a lone
surrogate (not text: no UTF-8 file can hold it; Python makes them from undecodable file names and
JSON escapes such as "\\ud800"). `check_text` refuses those two, where labels and captions enter
(sketch readers, the label policy). Newlines, tabs and other control characters are kept.

Shown: `printable` writes control characters and lone surrogates as escapes (`\\n`, `\\x07`,
`\\udcff`), so a label or a file name always shows as one line that any terminal, font or UTF-8
file can take (error lines, PNG overlays).
"""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSTORABLE = {"\x00": "a NUL character", "surrogate": "a lone surrogate (text that is not Unicode)"}


def printable(text: object) -> str:
    """`str(text)` with control characters and lone surrogates as backslash escapes: one printable line."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def unstorable(text: str) -> str | None:
    """What in `text` no output can store ("a NUL character", "a lone surrogate ..."), or None."""
    if "\x00" in text:
        return _UNSTORABLE["\x00"]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _UNSTORABLE["surrogate"]
    return None


def check_text(text: str | None, what: str, error: type[Exception], path: object | None = None) -> str | None:
    """`text` when it can be stored, else `error` ("the label 'a\\x00b' holds a NUL character"); `path` is
    passed on to InputError."""
    problem = None if text is None else unstorable(text)
    if problem is None:
        return text
    message = f"{what} '{printable(text)}' holds {problem}"
    raise error(message, path) if path is not None else error(message)
