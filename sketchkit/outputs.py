"""Where `sketchkit segment` writes: output formats, names and the walk over the inputs.

Each input's outputs are `out/<its folder relative to the inputs' common folder>/<base>.<fmt>` (drawing
`name` of a multi-drawing file: `<base>/<name>.<fmt>`). `base` is the file's stem; when two inputs of
one folder share a stem (scene.svg, scene.json) each keeps its full name, and a name still taken by
another input's outputs (or a sub-folder) gets `~2`, `~3`, ... (`unique_bases`). Paths are not
resolved: a symbolic link is named by the link, not by its target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .errors import UsageError
from .files import check_output_path, fit_name, temp_prefix

FORMAT_SUFFIX = {"svg": ".svg", "h5": ".h5", "png": ".png", "json": ".json", "masks": ".masks"}
"""Per-input outputs: one file (a folder for masks) per input and format."""
RUN_OUTPUTS = {"csv": "segmentation.csv", "coco": "segmentation.coco.json"}
"""Run-level outputs: one file for the whole run, in the output folder."""
MULTI_DRAWING_SUFFIXES = (".ndjson", ".json")
"""Suffixes of files that may hold several drawings (QuickDraw); others hold one sketch."""


def parse_formats(spec: str) -> list[str]:
    formats = [f.strip().lower() for f in spec.split(",") if f.strip()]
    known = {**FORMAT_SUFFIX, **RUN_OUTPUTS}
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise UsageError(f"unknown output format(s) {', '.join(bad) or spec!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(formats))


def run_output_paths(out: Path, formats: Sequence[str], single_input: bool) -> dict[str, Path]:
    """Format -> file of the run-level outputs: in `out`, or beside it when `out` names one input's file."""
    folder = out.parent if single_input and out.suffix.lower() in FORMAT_SUFFIX.values() else out
    return {f: folder / RUN_OUTPUTS[f] for f in formats if f in RUN_OUTPUTS}


def output_files(base: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """The per-input outputs of one drawing: `<base>.<fmt>`, or `<base>/<name>.<fmt>` for drawing `name`
    of a file that holds several (QuickDraw), named by key id or index."""
    stem = base / name if name else base
    return [stem.parent / (stem.name + FORMAT_SUFFIX[f]) for f in formats if f in FORMAT_SUFFIX]


def _output_names(base: str, multi: bool) -> set[str]:
    names = {base + suffix for suffix in FORMAT_SUFFIX.values()}
    return names | {base} if multi else names


def unique_bases(names: Sequence[str], reserved: Sequence[str] = ()) -> dict[str, str]:
    """File name -> output base for the inputs `names` of one folder, each base's outputs distinct from
    every other's and from `reserved` (sub-folder names, whose outputs share the output folder).

    The stem when no other input of the folder has it (scene.svg -> scene), else the full name
    (scene.svg, scene.json), then `name~2`, `name~3`, ... while taken; a name too long for the
    filesystem is cut and given a hash (`fit_name`). Decided in sorted name order, so the same folder
    always gives the same names."""
    distinct = sorted(set(names))
    stems = Counter(Path(n).stem for n in distinct)
    taken = set(reserved)
    out = {}
    for name in distinct:
        stem = Path(name).stem
        multi = Path(name).suffix.lower() in MULTI_DRAWING_SUFFIXES
        candidates = [fit_name(c) for c in ([stem] if stems[stem] == 1 and stem else []) + [name]]
        chosen, k = None, 2
        while chosen is None:
            for candidate in candidates:
                if not _output_names(candidate, multi) & taken:
                    chosen = candidate
                    break
            candidates = [fit_name(f"{name}~{k}")]
            k += 1
        taken |= _output_names(chosen, multi)
        out[name] = chosen
    return out


@dataclass(frozen=True)
class InputFile:
    """One input file: `path` as given or found (links not resolved) and `base`, its outputs' path
    without a suffix."""

    path: Path
    base: Path


class InputWalk:
    """The job's input files, streamed in a stable order: the arguments in order, each folder walked in
    sorted order. `root` is the inputs' common folder (the folder arguments themselves, the files'
    folders), whose layout the output folder repeats. `single`: one file argument and an `out` with a
    known suffix, written exactly."""

    def __init__(self, arguments: Sequence[Path], out: Path):
        self.arguments = [Path(a) for a in arguments]
        self.out = Path(out)
        for argument in self.arguments:
            try:
                os.stat(argument)
            except OSError as exc:  # missing, a link loop, a name too long
                from .errors import InputError, as_sketchkit_error

                raise as_sketchkit_error(exc, argument) or InputError("not found", argument) from None
        self.single = (len(self.arguments) == 1 and not self.arguments[0].is_dir()
                       and self.out.suffix.lower() in FORMAT_SUFFIX.values())
        if not self.single and self.out.exists() and not self.out.is_dir():
            raise UsageError(f"output folder {self.out} exists and is not a folder")
        folders = [a if a.is_dir() else a.parent for a in self.arguments]
        absolute = [os.path.abspath(f) for f in folders]
        self.root = Path(os.path.commonpath(absolute)) if absolute else Path.cwd()
        self._out_abs = os.path.abspath(self.out)
        files_by_folder: dict[str, list[str]] = {}
        reserved: dict[str, set[str]] = {}
        for argument, folder in zip(self.arguments, absolute):
            if argument.is_dir():
                relative = Path(os.path.relpath(folder, self.root))
                if relative.parts:
                    parent = os.path.normpath(os.path.join(self.root, *relative.parts[:-1]))
                    reserved.setdefault(parent, set()).add(relative.parts[-1])
            else:
                files_by_folder.setdefault(folder, []).append(argument.name)
        self._argument_bases = {folder: unique_bases(names, reserved.get(folder, ()))
                                for folder, names in files_by_folder.items()}
        self._folder_cache: dict[str, dict[str, str]] = {}

    def base_of_argument(self, path: Path) -> Path:
        folder = os.path.abspath(path.parent)
        if self.single:
            return self.out.with_suffix("")
        return self._out_folder(folder) / self._argument_bases[folder][path.name]

    def _out_folder(self, folder: str) -> Path:
        relative = os.path.relpath(folder, self.root)
        return self.out if relative == "." else self.out / relative

    def _folder_bases(self, folder: str) -> dict[str, str]:
        from .data import iter_folder_files

        found = self._folder_cache.get(folder)
        if found is None:
            names = [p.name for p in iter_folder_files(folder, recursive=False)]
            with os.scandir(folder) as scan:
                subfolders = [e.name for e in scan if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
            reserved = set(subfolders)
            if os.path.normpath(os.path.abspath(self._out_folder(folder))) == os.path.normpath(folder):
                reserved |= set(os.listdir(folder))  # outputs beside their inputs: never onto another file there
            if len(self._folder_cache) > 64:
                self._folder_cache.clear()
            found = self._folder_cache[folder] = unique_bases(names, sorted(reserved))
        return found

    def __iter__(self) -> Iterator[InputFile]:
        from .data import iter_folder_files

        for argument in self.arguments:
            if not argument.is_dir():
                yield InputFile(argument, self.base_of_argument(argument))
                continue
            for path in iter_folder_files(argument, exclude=(self._out_abs,)):
                folder = os.path.abspath(path.parent)
                yield InputFile(path, self._out_folder(folder) / self._folder_bases(folder)[path.name])

    def count(self) -> int:
        """Input files (not drawings), by walking the folders once more."""
        from .data import iter_folder_files

        return sum(1 if not a.is_dir() else sum(1 for _ in iter_folder_files(a, exclude=(self._out_abs,)))
                   for a in self.arguments)


def exact_outputs(out: Path, formats: Sequence[str]) -> list[Path]:
    """One input written to `out` exactly, its other formats beside it with their own suffixes."""
    others = [p for p in output_files(out.with_suffix(""), "", formats) if p != out]
    return [out] + others if any(FORMAT_SUFFIX[f] == out.suffix.lower() for f in formats) else others


def remove_temp_files(outputs: Sequence[Path]) -> None:
    """The temporary files a killed writer left beside outputs whose claim we now hold (sketchkit.files
    names them `.<name>.tmp-<8 random characters>`)."""
    for target in outputs:
        for leftover in target.parent.glob(glob.escape(temp_prefix(target)) + "*"):
            try:
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
            except OSError:
                pass


def remove_outputs(outputs: Sequence[Path]) -> None:
    """Remove what a failed write of one output set (held under our claim) left: its files and temp files."""
    for target in outputs:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                target.unlink()
    remove_temp_files(outputs)


def check_targets(outputs: Sequence[Path], source: Path) -> None:
    """Each output's folder exists; no output is the file being read (or a non-folder where masks go)."""
    for target in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == FORMAT_SUFFIX["masks"]:
            if target.exists() and not target.is_dir():
                raise UsageError(f"output {target} exists and is not a folder")
            continue
        check_output_path(target, [source], overwrite=True)
