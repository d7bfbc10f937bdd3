"""Typed failures. The CLI turns each into one line on stderr and an exit code.

`InputError` and `UsageError` mean "the user gave something we cannot use" (exit 2);
`WeightsError` means model weights could not be resolved (exit 2, with what to do);
anything else deriving from `SketchkitError` is exit 1.

Messages are neutral (they name values and files, never command-line flags), so the library reads
well from Python. `hint` names what the user can change (a key of `HINTS`: "labels", "weights",
...); the CLI turns it into the flags to use, the Python API into the keyword arguments.
"""

from __future__ import annotations

HINTS = ("labels", "weights", "adapter", "backbone", "overwrite", "device", "threshold", "vocabulary", "pickle", "compile",
         "data", "captions", "validation", "resume")
"""What a hint may name; the CLI has a flag text for each (cli/_errors.py HINT_FLAGS)."""


class SketchkitError(Exception):
    """Base class of every error sketchkit raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        if hint is not None and hint not in HINTS:
            raise ValueError(f"unknown error hint {hint!r}")
        self.hint = hint
        super().__init__(message)


class InputError(SketchkitError):
    """An input file or value is unreadable, empty, malformed or unsupported."""

    exit_code = 2

    def __init__(self, message: str, path: object | None = None, *, hint: str | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message, hint=hint)


class UsageError(SketchkitError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = 2


class WeightsError(SketchkitError):
    """Model weights or an adapter could not be found, read or matched to the backbone."""

    exit_code = 2


class TrainingError(SketchkitError):
    """Training cannot go on with these settings and data (a non-finite loss): exit 2, nothing bad saved."""

    exit_code = 2
