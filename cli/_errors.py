"""How errors print: one line on stderr, the library's message plus the flags that address its hint."""

from __future__ import annotations

from rich.text import Text

from sketchkit.text import printable

from ._options import stderr

HINT_FLAGS = {
    "labels": "pass --labels or --caption, or put a caption .txt beside the input",
    "weights": "pass --weights PATH (an open_clip state dict: .safetensors, .bin or .pt), set SKETCHKIT_WEIGHTS=PATH, "
               "or run once with network access so open_clip can download and cache them "
               "(or use --backbone tiny-random for a random-weight test model)",
    "adapter": "pass --adapter PATH (made by `sketchkit train` or `sketchkit import-checkpoint`)",
    "backbone": "pass the matching --backbone, or leave it out to use the adapter's",
    "overwrite": "pass --overwrite to replace it",
    "device": "use --device auto, cpu or cuda",
    "threshold": "--threshold takes a value in [0, 1]",
    "vocabulary": "see `sketchkit labels`, or pass --vocab or --labels",
    "pickle": "pass --allow-pickle for trusted data only: it runs code from the file",
    "compile": "or leave out --compile",
    "data": "pass --data with sketch files or a folder (train: or set `data` in its --config file)",
    "captions": "or pass --captions-from-labels to build captions from their stroke labels, e.g. FrISS instance names",
    "validation": "pass --val-data with labelled sketches (e.g. FrISS) to choose the best checkpoint by mIoU",
    "resume": "pass --resume to continue it, or --overwrite to start over",
}
"""The CLI's words for the library's error hints (sketchkit.errors.HINTS): flags to use."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a command that says in its own words (args[0], a line) what is kept (exit 130)."""


def hinted(text: str, hint: str | None) -> str:
    """`text` plus, in brackets, the flags that address `hint` (a key of sketchkit.errors.HINTS)."""
    return f"{text} ({HINT_FLAGS[hint]})" if hint in HINT_FLAGS else text


def error_line(exc: BaseException) -> str:
    """The one line an error prints as: the library's message plus the flags that address its hint."""
    text = printable(" ".join(str(exc).split())) or type(exc).__name__  # one line, whatever the message holds
    return hinted(text, getattr(exc, "hint", None))


def print_error(exc: BaseException, suffix: str = "") -> None:
    """One red 'Error:' line on stderr; the message is printed as text, never parsed as Rich markup."""
    stderr.print(Text.assemble(("Error:", "red"), " ", error_line(exc), suffix), highlight=False, soft_wrap=True)
