"""Atomic file writing: every file sketchkit writes goes through this module.

A file is written under a temporary name in the target's own folder (`.{name}.tmp-<8 random characters>`),
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

from sketchkit.errors import OutputError, UsageError, as_sketchkit_error

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
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13): names no file
        return False


NAME_MAX = 255
"""Longest file name (in bytes) most filesystems take."""
NAME_ROOM = 32
"""Bytes `fit_name` leaves for what is added to a base name: a suffix (.masks), a temp or claim mark."""


def fit_name(name: str, room: int = NAME_ROOM) -> str:
    """`name`, or when it would leave less than `room` bytes of the NAME_MAX a file name may have, its
    start plus `~` and 16 hex digits of its SHA-256: short enough, stable, and distinct for distinct names."""
    import hashlib

    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) + room <= NAME_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    start = raw[:NAME_MAX - room - len(digest) - 1].decode("utf-8", "ignore")  # never half a character
    return f"{start}~{digest}"


def temp_prefix(target: Path) -> str:
    """The name start of `target`'s temporary files (`.{name}.tmp-`), short enough for any target name."""
    return f".{fit_name(target.name, 24)}.tmp-"


FREE_SPACE_MARGIN = 1 << 20
"""Bytes `check_free_space` wants free beyond a write's estimated size."""


def check_free_space(folder: str | os.PathLike, needed: int) -> None:
    """OutputError when the filesystem of `folder` has less than `needed` + FREE_SPACE_MARGIN bytes free for
    this user: checked before large writes (HDF5), which must not meet a full disk half-way."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or an unusual filesystem: the write will tell
        return
    free = stats.f_bavail * stats.f_frsize
    if free < needed + FREE_SPACE_MARGIN:
        raise OutputError(f"{folder}: no space left on device (about {(needed + FREE_SPACE_MARGIN) / 2**20:.1f} MiB "
                          f"needed, {free / 2**20:.1f} MiB free)")


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


def check_outside_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                         folder: bool = False) -> None:
    """Refuse (UsageError) an output inside one of the input folders (an output there can replace an
    input sketch, or be read back as one). `folder`: `out` is an output folder (a run folder), so an
    input inside it, or the same folder, is refused too. Inputs that are files are left to
    `check_output_path`."""
    out_path = Path(out).resolve()
    for inp in inputs:
        if inp is None:
            continue
        in_path = Path(inp).resolve()
        if in_path.is_dir() and (out_path == in_path or in_path in out_path.parents):
            raise UsageError(f"output {out} is inside the input folder {inp}; write outputs outside the inputs")
        if folder and out_path in in_path.parents:
            raise UsageError(f"the input {inp} is inside the output folder {out}; write outputs outside the inputs")


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
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), dir=target.parent)
    except OSError as exc:
        mapped = as_sketchkit_error(exc, target)
        if mapped is None:
            raise
        raise mapped from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) replace the file with a 0600 one of
        # their own: give the result the permissions a plain open() would
        os.chmod(tmp, _default_file_mode())
        _fsync_file(tmp)
        _publish(tmp, target, overwrite)
    except BaseException as exc:  # Ctrl-C, SIGTERM, a full disk, a bug: the temp file goes
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if (mapped := as_sketchkit_error(exc, target)) is not None:
            raise mapped from exc
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True,
                 encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on success it replaces `path` atomically.

    mode: "wb" (binary, default) or "w" (text, `encoding`, "\\n" newlines untranslated; a lone surrogate,
    which only a file name can bring, is written as its escape, e.g. `\\udcff`).
    overwrite=False raises UsageError when `path` exists (checked before writing and again,
    race-free where hard links work, when publishing). On any exception inside the block the temp
    file is deleted and the existing target, if any, keeps its old content.
    """
    if mode not in _TEXT_MODES | _BINARY_MODES:
        raise UsageError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        if mode in _TEXT_MODES:
            f = open(tmp, mode, encoding=encoding, newline="", errors="backslashreplace")
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


# ---- output claims: which process writes an output set ------------------------------------------

CLAIM_SUFFIX = ".claim"


def claim_path(base: str | os.PathLike) -> Path:
    """The claim file of the outputs named `base` (out/scene for out/scene.svg, out/scene.h5, ...):
    `out/.scene.claim`, hidden, in the outputs' own folder."""
    base = Path(base)
    return base.parent / f".{base.name}{CLAIM_SUFFIX}"


class OutputClaim:
    """This process's exclusive right to write the outputs named `base` (see `claim_outputs`).

    `stale`: the claim file was there before, left by a writer that died (kill -9, power loss): the
    outputs it guards may be a partial set and must be redone. `release(complete=True)` removes the
    claim file once the set is whole (or nothing was written over a fresh claim); `complete=False`
    keeps it as the mark of a partial set and only lets go of the lock.
    """

    def __init__(self, path: Path, fd: int, stale: bool):
        self.path = path
        self.stale = stale
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, complete: bool = True) -> None:
        if self._fd is None:
            return
        try:
            if complete:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # while still locked: nobody can take this inode in between
        finally:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def __enter__(self) -> "OutputClaim":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.release(complete=kind is None or not self.stale)

    def __repr__(self) -> str:
        return f"OutputClaim({str(self.path)!r}, stale={self.stale}, held={self.held})"


def _try_lock(fd: int) -> bool | None:
    """True: locked; False: another live process holds it; None: this filesystem has no locks."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the claim file's existence is the lock
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: a filesystem without locks
        return None


def claim_outputs(base: str | os.PathLike) -> OutputClaim | None:
    """Claim the right to write the outputs named `base` before writing any of them; None when
    another live process holds the claim (it is writing them now: leave them alone).

    The claim is a hidden file beside the outputs (`claim_path`) created exclusively and locked
    with flock for as long as this process holds it, so a concurrent run on the same folder never
    replaces what it did not claim. The kernel drops the lock when its holder dies, so the claim
    file a killed writer leaves is taken over (`OutputClaim.stale` is then True). Where the
    filesystem has no locks, only the exclusive create protects, and a stale claim file counts as
    held until it is removed.
    """
    path = claim_path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):  # a claim released while we opened it: try again
        created = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            created = False
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
        locked = _try_lock(fd)
        if locked is False or (locked is None and not created):
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it after we opened it: that claim is over
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {_hostname()}\n".encode())
        except OSError:
            pass
        return OutputClaim(path, fd, stale=not created)
    raise OSError(f"could not claim {path}: its claim file keeps changing")


def _hostname() -> str:
    import socket

    try:
        return socket.gethostname()
    except OSError:
        return "?"
