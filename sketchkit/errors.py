"""Typed failures. The CLI turns each into one line on stderr and an exit code.

`InputError` and `UsageError` mean "the user gave something we cannot use" (exit 2);
`WeightsError` means model weights could not be resolved (exit 2, with what to do);
anything else deriving from `SketchkitError` is exit 1.
"""

from __future__ import annotations


class SketchkitError(Exception):
    """Base class of every error sketchkit raises on purpose."""

    exit_code = 1


class InputError(SketchkitError):
    """An input file or value is unreadable, empty, malformed or unsupported."""

    exit_code = 2

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(SketchkitError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = 2


class WeightsError(SketchkitError):
    """Model weights or an adapter could not be found, read or matched to the backbone."""

    exit_code = 2
