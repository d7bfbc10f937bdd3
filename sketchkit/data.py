"""Find sketch files in folders and dataset splits, and read many of them report-and-skip style.

    files = find_sketches("../shared/data/friss", split="test", limit=50)
    for path, item in iter_sketches(files):
        if isinstance(item, InputError): print(f"skipped: {item}")
        else: use(item)

Folders: every file with a suffix in `SUPPORTED_SUFFIXES` (any case), recursively unless told
otherwise, sorted by relative path so runs are deterministic (`iter_folder_files` streams them
from the walk: a folder of 100,000 files is never listed whole). Hidden files and folders
(".name") and dataset metadata files (`data_partitions.json`, `friss_to_qd_mappings.json`) are
skipped; links to folders are not followed.

Splits: a folder holding `data_partitions.json` ({"train": [names], "val": [...], "test": [...]})
lists its sketches per split. FrISS names map to `<split>/<name>.json`; a name may also carry its
own suffix or sub-path, and is looked up under `<split>/` first, then beside the partition file.
The order is the partition file's order. A name leading outside the dataset folder is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from sketchkit.errors import InputError, UsageError
from sketchkit.io import SUPPORTED_SUFFIXES, read_sketch
from sketchkit.io.jsontext import load_json
from sketchkit.io.limits import read_bytes_limited
from sketchkit.types import Sketch

PARTITIONS_FILE = "data_partitions.json"
METADATA_FILES = frozenset({PARTITIONS_FILE, "friss_to_qd_mappings.json"})
"""JSON files of dataset folders that are not sketches."""


def iter_folder_files(folder: str | os.PathLike, recursive: bool = True, *,
                      exclude: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Supported sketch files under `folder`, in the order of their path relative to it (compared part
    by part), yielded as the walk finds them: memory holds one folder's listing per level, never the
    whole tree. Symbolic links to files are yielded under their own name; links to folders are not
    entered (no loops, and no file reached twice through another name). Sub-folders in `exclude`
    (e.g. an output folder inside the inputs) are not entered."""
    folder = Path(folder)
    exclude = tuple(os.path.normpath(os.path.abspath(e)) for e in exclude)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(((e.name, e) for e in scan), key=lambda item: item[0])
    except OSError as exc:
        raise InputError(f"cannot list the folder: {exc.strerror or exc}", folder) from None
    for name, entry in entries:
        if name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive and os.path.normpath(os.path.abspath(folder / name)) not in exclude:
                    yield from iter_folder_files(folder / name, recursive, exclude=exclude)
                continue
            is_file = entry.is_file()  # follows a link to a file
        except OSError:
            continue
        if is_file and name not in METADATA_FILES and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
            yield folder / name


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    """Supported sketch files under `folder`, sorted by their path relative to it."""
    return list(iter_folder_files(folder, recursive))


def load_partitions(folder: str | os.PathLike) -> dict[str, list[str]]:
    """The split -> names table of `folder/data_partitions.json`; InputError when it is missing
    or is not an object of string lists."""
    partition_path = Path(folder) / PARTITIONS_FILE
    if not partition_path.is_file():
        raise InputError(f"no {PARTITIONS_FILE} in this folder, so it has no train/val/test splits "
                         "(leave out the split to use every sketch in it)", folder)
    data = read_bytes_limited(partition_path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not valid JSON (UnicodeDecodeError)", partition_path) from None
    table = load_json(text, partition_path)
    if not isinstance(table, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names) for names in table.values()):
        raise InputError('expected an object of lists of names: {"train": [...], "val": [...], "test": [...]}',
                         partition_path)
    return table


def _resolve(folder: Path, split: str, name: str) -> Path | None:
    """The file a partition name refers to, or None when none exists. A name that leads out of the
    dataset folder (`../x`, an absolute path) is refused: a partition file only lists its own sketches."""
    inside = os.path.normpath(os.path.abspath(folder))
    bases = (folder / split, folder)
    candidates = []
    for base in bases:
        if Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
            candidates.append(base / name)
        candidates.extend(base / f"{name}{suffix}" for suffix in SUPPORTED_SUFFIXES)
    for candidate in candidates:
        lexical = os.path.normpath(os.path.abspath(candidate))
        if os.path.commonpath([inside, lexical]) != inside or lexical == inside:
            raise InputError(f"{PARTITIONS_FILE} names {name!r} (split {split!r}), which lies outside the dataset "
                             "folder", folder)
    return next((c for c in candidates if c.is_file()), None)


def _split_files(folder: Path, split: str) -> list[Path]:
    table = load_partitions(folder)
    if split not in table:
        raise InputError(f"split {split!r} is not in {PARTITIONS_FILE}; it has {', '.join(map(repr, table)) or 'none'}",
                         folder)
    files, missing = [], []
    for name in table[split]:
        resolved = _resolve(folder, split, name)
        (files if resolved is not None else missing).append(resolved if resolved is not None else name)
    if missing:
        raise InputError(f"{len(missing)} of the {len(table[split])} sketches of split {split!r} are missing, "
                         f"e.g. {missing[0]!r} (looked for {split}/{missing[0]}.json)", folder)
    return files


def find_sketches(path: str | os.PathLike, *, split: str | None = None, limit: int | None = None,
                  recursive: bool = True) -> list[Path]:
    """Sketch files at `path`, in a deterministic order.

    A file -> [file] (whatever its suffix; reading it decides). A folder -> its supported files
    sorted by relative path (`recursive=False`: only its own files), or with `split` the files
    `data_partitions.json` lists for that split, in its order. `limit` keeps the first N.
    InputError when `path` does not exist, the partition file or the split is missing, or listed
    files are absent; UsageError for a negative limit or a split given for a single file.
    """
    path = Path(path)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit must be a non-negative whole number, got {limit!r}")
    if not path.exists():
        raise InputError("not found", path)
    if path.is_dir():
        files = _split_files(path, split) if split is not None else _folder_files(path, recursive)
    else:
        if split is not None:
            raise UsageError(f"a split ({split!r}) needs a dataset folder with {PARTITIONS_FILE}, not the file {path}")
        files = [path]
    return files if limit is None else files[:limit]


def iter_sketches(paths: Iterable[str | os.PathLike], *, caption: str | None = None, sidecar: bool = True
                  ) -> Iterator[tuple[Path, Sketch | InputError]]:
    """Read each file in order and yield (path, Sketch), or (path, InputError) for a file that
    cannot be read, so batch commands can report it and go on. Other errors propagate.
    `sidecar=False`: caption side files are not read (callers that use no captions)."""
    for item in paths:
        path = Path(item)
        try:
            yield path, read_sketch(path, caption=caption, sidecar=sidecar)
        except InputError as exc:
            yield path, exc
