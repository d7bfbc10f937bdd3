"""Merging several results files (parts of one run, or whole files) into one: `sketchkit h5 merge`."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sketchkit.errors import InputError, UsageError
from sketchkit.files import atomic_path, check_free_space, check_output_path
from sketchkit.io.h5check import open_h5, read_array, read_int_attr
from sketchkit.io.hdf5 import _check_format, _group_names, _read_h5_sketch, decode_text
from sketchkit.io.hdf5_columnar import (_RESERVED_ATTRS, _TEXT_COLUMNS, ResultsWriter, _ColumnarReader, is_columnar,
                                        iter_columnar)


_PER_ROW = ("order", "canvas", "transform", "threshold", "flags", "num_strokes", "num_labels", "model", "scoring",
            "pixel_labels", "stroke_ids", "raster", "top_class", "top_score")
_PER_STROKE = ("stroke_points", "stroke_widths", "gt_labels", "instance_ids", "stroke_labels", "stroke_confidence",
               "stroke_top")
_PER_LABEL = ("labels", "scores", "score_range")


def merge_results_h5(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                     block: int = 64) -> Path:
    """Join results files into one, atomically; returns `out`.

    Columnar (format 3) files give a columnar file. When every input carries the same `job`
    attribute (the shards and parts of one run), rows are put back in their run order (the `order`
    column: the run's input position), so the shards of a 2-process run merge into the file one
    process writes; otherwise the files are concatenated in the order given. Format 2 files give a
    format 2 file, their sketch groups in the same order (`unit` group attribute, else as given).
    Class names, models and scoring rules are re-indexed into the merged tables. Memory holds
    `block` rows. Refuses mixing the formats, different score storage or map sizes, an output that
    is one of the inputs, and an existing output without `overwrite`.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no results files to merge")
    check_output_path(out, inputs, overwrite)
    files = []
    try:
        for path in inputs:
            files.append(open_h5(path))
            _check_format(files[-1], path)
            _check_all_rows(files[-1], path)  # every input whole, before the output is started
        kinds = {is_columnar(h5) for h5 in files}
        if len(kinds) > 1:
            raise UsageError("cannot merge columnar (format 3) and per-sketch-group (format 2) results files; "
                             "convert them to one format first")
        if kinds.pop():
            return _merge_columnar(files, inputs, Path(out), overwrite, block)
        return _merge_groups(files, inputs, Path(out), overwrite)
    finally:
        for h5 in files:
            h5.close()


def _check_all_rows(h5, path: Path) -> None:
    """Read every sketch of an open results file through the checks of io/h5check.py, keeping none."""
    if is_columnar(h5):
        for _ in iter_columnar(h5, path):
            pass
    elif "sketches" in h5:
        for name in _group_names(h5["sketches"], path):
            _read_h5_sketch(h5["sketches"][name], path)


def _merge_columnar(files, paths: list[Path], out: Path, overwrite: bool, block: int) -> Path:
    readers = [_ColumnarReader(h5, path) for h5, path in zip(files, paths)]
    modes = {r.scores for r in readers if r.count}
    sizes = {r.size for r in readers if r.count}
    if len(modes) > 1:
        raise UsageError(f"the files keep scores differently ({', '.join(sorted(modes))}); merge files of one kind")
    if len(sizes) > 1:
        raise UsageError(f"the files hold maps of different sizes ({', '.join(map(str, sorted(sizes)))} px)")
    top_k = max([int(h5.attrs.get("top_k", 0)) for h5 in files] + [1])
    jobs = {decode_text(h5.attrs["job"]) if "job" in h5.attrs else None for h5 in files}
    # the merged order: (part, row) pairs
    keys = []
    for part, reader in enumerate(readers):
        rows = np.arange(reader.count, dtype=np.int64)
        order = (read_array(reader.g, "order", reader.path, kind="int", ndim=2).astype(np.int64) if reader.count
                 else np.zeros((0, 2), np.int64))
        keys.append(np.column_stack([order, np.full(reader.count, part), rows]))
    table = np.concatenate(keys) if keys else np.zeros((0, 4), np.int64)
    if len(jobs) == 1 and None not in jobs:
        table = table[np.lexsort((table[:, 3], table[:, 2], table[:, 1], table[:, 0]))]
    attrs = {k: files[0].attrs[k] for k in files[0].attrs if k not in _RESERVED_ATTRS}
    writer = ResultsWriter(out, scores=modes.pop() if modes else "none", attrs=attrs, overwrite=overwrite)
    try:
        writer._top_k = top_k
        writer._size = sizes.pop() if sizes else None
        lookups = [{"classes": np.array([writer._classes.index(n) for n in r.classes] + [-1], dtype=np.int64),
                    "models": np.array([writer._models.index(n) for n in r.models] or [0], dtype=np.int64),
                    "scorings": np.array([writer._scorings.index(n) for n in r.scorings] or [0], dtype=np.int64)}
                   if r.count else {} for r in readers]
        for start in range(0, len(table), block):
            chunk = table[start:start + block]
            writer.append_columns(_merged_block(readers, lookups, chunk, top_k), len(chunk))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _merged_block(readers, lookups, chunk: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """The columns of the rows `chunk` names ((unit, index, part, row) each), in that order."""
    pieces: dict[str, list] = {}
    for part, row in chunk[:, 2:]:
        pieces.setdefault(int(part), []).append(int(row))
    loaded = {}
    for part, rows in pieces.items():
        reader, lookup = readers[part], lookups[part]
        g = reader.g
        lo, hi = min(rows), max(rows) + 1
        s0, s1 = reader.stroke_start[lo], reader.stroke_start[hi]
        l0, l1 = reader.label_start[lo], reader.label_start[hi]
        p0, p1 = reader.point_start_of_stroke[s0], reader.point_start_of_stroke[s1]
        data = {name: g[name][lo:hi] for name in _PER_ROW if name in g}
        data.update({name: g[name][s0:s1] for name in _PER_STROKE if name in g})
        data.update({name: g[name][l0:l1] for name in _PER_LABEL if name in g})
        data["points"] = g["points"][p0:p1]
        for c in _TEXT_COLUMNS:
            ends = reader.text_start[c]
            data[f"{c}_text"] = (g[f"{c}_text"][ends[lo]:ends[hi]], ends[lo:hi + 1] - ends[lo])
        data["model"] = lookup["models"][data["model"]]
        data["scoring"] = lookup["scorings"][data["scoring"]]
        data["gt_labels"] = lookup["classes"][data["gt_labels"]]  # -1 picks the trailing -1
        data["labels"] = lookup["classes"][data["labels"]]
        top = data["stroke_top"]
        if top.shape[1] < top_k:
            data["stroke_top"] = np.pad(top, ((0, 0), (0, top_k - top.shape[1])), constant_values=-1)
        loaded[part] = (lo, s0, l0, p0, data)
    out: dict[str, list] = {}
    for part, row in chunk[:, 2:]:
        reader = readers[part]
        lo, s0, l0, p0, data = loaded[int(part)]
        i = int(row) - lo
        a, b = reader.stroke_start[row] - s0, reader.stroke_start[row + 1] - s0
        la, lb = reader.label_start[row] - l0, reader.label_start[row + 1] - l0
        pa = reader.point_start_of_stroke[reader.stroke_start[row]] - p0
        pb = reader.point_start_of_stroke[reader.stroke_start[row + 1]] - p0
        for name, values in data.items():
            if name.endswith("_text"):
                text, ends = values
                out.setdefault(name, []).append(text[ends[i]:ends[i + 1]])
                out.setdefault(name.replace("_text", "_length"), []).append(np.array([ends[i + 1] - ends[i]]))
            elif name in _PER_ROW:
                out.setdefault(name, []).append(values[i:i + 1])
            elif name in _PER_STROKE:
                out.setdefault(name, []).append(values[a:b])
            elif name in _PER_LABEL:
                out.setdefault(name, []).append(values[la:lb])
            else:  # points
                out.setdefault(name, []).append(values[pa:pb])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _merge_groups(files, paths: list[Path], out: Path, overwrite: bool) -> Path:
    """Format 2 files: copy every sketch group, renumbered, into one file (in `unit` order when every group
    has that attribute, else as given)."""
    import h5py

    entries = []
    for part, h5 in enumerate(files):
        groups = h5["sketches"] if "sketches" in h5 else {}
        try:
            names = sorted(groups, key=int)
        except ValueError:
            raise InputError("malformed results file: /sketches holds a non-numeric group name", paths[part]) from None
        for position, name in enumerate(names):
            unit = None if "unit" not in groups[name].attrs else read_int_attr(groups[name], "unit", paths[part], 0, 2**62)
            entries.append((unit, part, position, name))
    if entries and all(e[0] is not None for e in entries):
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
    models = list(dict.fromkeys(m for h5 in files for m in decode_text(h5.attrs.get("model", "")).split("; ") if m))
    check_free_space(out.parent, sum(p.stat().st_size for p in paths))
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as target:
            target.attrs.update({k: files[0].attrs[k] for k in files[0].attrs})
            target.attrs["model"] = "; ".join(models)
            target.attrs["num_sketches"] = len(entries)
            target.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            sketches = target.create_group("sketches")
            for index, (_, part, _, name) in enumerate(entries):
                sketches.copy(files[part]["sketches"][name], f"{index:06d}")
    return out
