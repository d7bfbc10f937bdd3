"""Atomic file writing: every file sketchkit writes goes through this module.

A file is written under a temporary name in the target's own folder (`.{name}.tmp-XXXXXXXX`),
flushed and fsynced, then moved onto the target with `os.replace` (atomic on POSIX and Windows
when both names are on one filesystem, which the shared folder guarantees). On any exception the
temporary file is deleted and an existing target keeps its old content: no half-written files.

    with atomic_write("out.svg", "w") as f:      # text, UTF-8
        f.write(svg_text)
    with atomic_path("out.h5") as tmp:          # for libraries that want a file name (h5py)
        with h5py.File(tmp, "w") as h5: ...
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from sketchkit.errors import UsageError

_TEXT_MODES = {"w", "wt", "w+", "w+t"}
_BINARY_MODES = {"wb", "w+b", "wb+"}


def _default_file_mode() -> int:
    """Permission bits a plain `open(path, "w")` would give a new file (0o666 minus the umask)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no read-only API elsewhere; restore at once
    os.umask(umask)
    return 0o666 & ~umask


def _same_file(a: Path, b: Path) -> bool:
    """True when a and b name the same file (hard links, symlinks, `..`, case-folding filesystems)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass  # one of them does not exist yet: compare names instead
    return a.resolve() == b.resolve()


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UsageError(f"output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"output folder {path.parent} does not exist")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise UsageError(f"output {path} exists", hint="overwrite")


def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> Path:
    """Validate an output path before any work starts; returns it as a Path.

    Refuses (UsageError) an output that is the same file as any input (same resolved path, or
    os.path.samefile for hard and symbolic links), an output that is a directory or whose folder
    does not exist, and an existing output when `overwrite` is False.
    """
    out_path = Path(out)
    for inp in inputs:
        if _same_file(out_path, Path(inp)):
            raise UsageError(f"refusing to overwrite input {inp} with output {out_path}")
    _check_target(out_path, overwrite)
    return out_path


def file_digest(path: str | os.PathLike) -> str:
    """16 hex digits of the SHA-256 of a file's content."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def fsync_dir(path: str | os.PathLike) -> None:
    """Best-effort fsync of a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished temp file onto target; without overwrite, never clobber a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if target exists: a no-clobber publish without a race
    except FileExistsError:
        raise UsageError(f"output {target} exists", hint="overwrite") from None
    except OSError:  # filesystem without hard links: check, then rename
        if target.exists():
            raise UsageError(f"output {target} exists", hint="overwrite") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; the caller writes it by name, it becomes `path` on success.

    For libraries that open files themselves (h5py). The caller must have closed the file when the
    block ends. The temp file already exists (empty) when yielded. On any exception it is removed
    and `path` is left as it was.
    """
    target = Path(path)
    _check_target(target, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) replace the file with a 0600 one of
        # their own: give the result the permissions a plain open() would
        os.chmod(tmp, _default_file_mode())
        _fsync_file(tmp)
        _publish(tmp, target, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True,
                 encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on success it replaces `path` atomically.

    mode: "wb" (binary, default) or "w" (text, `encoding`, "\\n" newlines untranslated).
    overwrite=False raises UsageError when `path` exists (checked before writing and again,
    race-free where hard links work, when publishing). On any exception inside the block the temp
    file is deleted and the existing target, if any, keeps its old content.
    """
    if mode not in _TEXT_MODES | _BINARY_MODES:
        raise UsageError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        if mode in _TEXT_MODES:
            f = open(tmp, mode, encoding=encoding, newline="")
        else:
            f = open(tmp, mode)
        with f:
            yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_write(path, "wb", overwrite=overwrite) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (newlines written as given); returns the path."""
    with atomic_write(path, "w", overwrite=overwrite, encoding=encoding) as f:
        f.write(text)
    return Path(path)
