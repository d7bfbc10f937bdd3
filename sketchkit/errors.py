"""Typed failures. The CLI turns each into one line on stderr and an exit code.

`InputError` and `UsageError` mean "the user gave something we cannot use" (exit 2);
`WeightsError` means model weights could not be resolved (exit 2, with what to do);
anything else deriving from `SketchkitError` is exit 1.

Messages are neutral (they name values and files, never command-line flags), so the library reads
well from Python. `hint` names what the user can change (a key of `HINTS`: "labels", "weights",
...); the CLI turns it into the flags to use, the Python API into the keyword arguments.
"""

from __future__ import annotations

import errno
import os
import re

from .text import printable

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
        super().__init__(f"{printable(self.path)}: {message}" if self.path else message, hint=hint)


class UsageError(SketchkitError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = 2


class WeightsError(SketchkitError):
    """Model weights or an adapter could not be found, read or matched to the backbone."""

    exit_code = 2


class TrainingError(SketchkitError):
    """Training cannot go on with these settings and data (a non-finite loss): exit 2, nothing bad saved."""

    exit_code = 2


class OutputError(SketchkitError):
    """An output could not be written: the disk is full, a quota or file-size limit is reached, the
    filesystem is read-only or the folder is not writable (exit 2; no partial file is left)."""

    exit_code = 2


class ResourceError(SketchkitError):
    """The input needs more memory than the machine, or the process's memory limit (`ulimit -v`, a
    container), allows: exit 2 with one line, like a full disk."""

    exit_code = 2


OUTPUT_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM")
                          if hasattr(errno, name))
"""OSError numbers that mean "cannot write here" rather than a bug: they become OutputError."""

PATH_ERRNOS = frozenset(getattr(errno, name) for name in ("ELOOP", "ENAMETOOLONG", "ENOTDIR") if hasattr(errno, name))
"""OSError numbers that mean a path cannot be used as given (symbolic link loop, name too long)."""

_LIBRARY_ERRNO = re.compile(r"errno = (\d+)|\(os error (\d+)\)")


def os_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, also when a library only names it in the message (h5py: 'errno = 28';
    safetensors, whose SafetensorError is no OSError: '(os error 28)')."""
    if not isinstance(exc, OSError) and type(exc).__name__ != "SafetensorError":
        return None
    if getattr(exc, "errno", None) is not None:
        return exc.errno
    found = _LIBRARY_ERRNO.search(str(exc))
    return int(found.group(1) or found.group(2)) if found else None


def as_sketchkit_error(exc: BaseException, path: object | None = None) -> SketchkitError | None:
    """The one-line error an operating-system failure stands for (disk full, read-only, link loop, name
    too long, ...), naming `path` (else the file the error names); None when it is no such failure."""
    number = os_errno(exc)
    if number not in OUTPUT_ERRNOS | PATH_ERRNOS:
        return None
    where = path if path is not None else getattr(exc, "filename", None)
    reason = os.strerror(number).lower()
    kind = OutputError if number in OUTPUT_ERRNOS else InputError
    return kind(f"{printable(where)}: {reason}" if where is not None else reason)


_OOM_TEXT = ("can't allocate memory", "cannot allocate memory", "out of memory")
_OOM_BYTES = re.compile(r"allocate (\d+) bytes")


def as_memory_error(exc: BaseException) -> ResourceError | None:
    """The one-line error an allocation failure stands for (numpy's MemoryError, torch's "DefaultCPUAllocator:
    can't allocate memory", ENOMEM), else None."""
    text = str(exc)
    if not (isinstance(exc, MemoryError) or os_errno(exc) == errno.ENOMEM
            or isinstance(exc, RuntimeError) and any(t in text.lower() for t in _OOM_TEXT)):
        return None
    size = _OOM_BYTES.search(text)
    what = f"an allocation of {int(size.group(1)) / 2**20:,.0f} MiB failed" if size else "an allocation failed"
    return ResourceError(f"not enough memory ({what}): this input needs more memory than the machine or the "
                         "process's memory limit allows")
