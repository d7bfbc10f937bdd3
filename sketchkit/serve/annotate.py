"""Folder mode (`sketchkit serve --annotate DIR`) and the stroke-3 annotation document.

    folder = AnnotationFolder("drawings/")
    folder.items[3].name, folder.progress()        # "scene.svg", (12, 240)
    sketch = folder.read(3)                        # the input, as read_sketch reads it
    folder.save(3, ["house", "house", None, ...])  # drawings/scene.labels.json, atomically

Sketches are addressed by their index in the folder's listing, made once at start by
`sketchkit.data.find_sketches` (recursive, sorted, hidden files skipped), so no request names a path.
Files ending in `.labels.json` are annotations, never inputs. A sketch's annotation sits beside it
as `NAME.labels.json`, NAME the input's stem; when two inputs of one folder share a stem
(`scene.svg`, `scene.png`), both use their full names (`scene.svg.labels.json`) instead.

The annotation is a FrISS/CBSC stroke-3 scene (`stroke3_document`), so `read_sketch` reads it back
with its labels and an annotated folder goes straight into `sketchkit eval` or `train`. Writes go
through `sketchkit.files` (temporary file, fsync, rename): a kill leaves the old file or the new
one, never half of one. Temporary files a kill left behind are removed when the folder is opened.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

import sketchkit
from ..errors import InputError, UsageError
from ..files import atomic_write_text, check_output_path
from ..types import BACKGROUND, Sketch

LABELS_SUFFIX = ".labels.json"
DECIMALS = 6
"""Decimals of the coordinates written (the SVG writer's precision)."""


def stroke3_document(sketch: Sketch, stroke_labels: Sequence[str | None], *, labels: Sequence[str] = (),
                     extra: dict | None = None) -> dict:
    """A FrISS/CBSC scene with `stroke_labels` (one per stroke) as its ground truth.

    Each run of consecutive strokes with one label becomes an instance (`object_divisions`,
    `gt_class_names`). Strokes labelled None or "background" are written outside every instance
    (unlabelled, as FrISS has them); the format only allows that before the first or after the
    last instance, so when such strokes sit between labelled ones they are moved after the
    labelled strokes. `source_strokes` gives, for each written stroke, its index in `sketch`.
    Rows are [dx, dy, pen_lift] with the first row absolute; `img_w`/`img_h` are the canvas.
    `labels` (the label list in use) and `extra` are recorded as extra keys, which readers ignore.
    """
    if len(stroke_labels) != sketch.num_strokes:
        raise UsageError(f"stroke_labels has {len(stroke_labels)} entries for {sketch.num_strokes} strokes")
    names = [_label_or_none(n) for n in stroke_labels]
    labelled = [i for i, n in enumerate(names) if n is not None]
    unlabelled = [i for i, n in enumerate(names) if n is None]
    if labelled and any(labelled[0] < i < labelled[-1] for i in unlabelled):
        order = labelled + unlabelled  # unlabelled strokes inside the labelled range move after it
    else:
        order = list(range(sketch.num_strokes))
    rows = _stroke3_rows([sketch.strokes[i] for i in order])
    doc = {
        "img_id": Path(sketch.source).stem if sketch.source else "sketch",
        "img_w": _plain(sketch.width),
        "img_h": _plain(sketch.height),
        "scene_strokes": rows,
        "object_divisions": _divisions(order, names),
        "gt_class_names": _classes(order, names),
        "source_strokes": order,
        "labels": list(dict.fromkeys(n for n in labels if n)),
        "sketchkit_version": sketchkit.__version__,
    }
    if sketch.caption:
        doc["caption"] = sketch.caption
    doc.update(extra or {})
    return doc


def _runs(order: list[int], names: list[str | None]) -> list[tuple[int, int, str]]:
    """(start, end, name) of each run of equally labelled strokes, in written positions."""
    runs: list[tuple[int, int, str]] = []
    for position, i in enumerate(order):
        name = names[i]
        if name is None:
            continue
        if runs and runs[-1][1] == position and runs[-1][2] == name:
            runs[-1] = (runs[-1][0], position + 1, name)
        else:
            runs.append((position, position + 1, name))
    return runs


def _divisions(order, names) -> list[int]:
    runs = _runs(order, names)
    return [start for start, _, _ in runs] + [runs[-1][1]] if runs else [0]


def _classes(order, names) -> list[str]:
    return [name for _, _, name in _runs(order, names)]


def _label_or_none(name: object) -> str | None:
    """A stroke's label as written: None for no label, blank text and "background"."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise UsageError(f"a stroke label must be text or null, got {type(name).__name__}")
    name = " ".join(name.split())
    return None if not name or name == BACKGROUND else name


def _plain(value: float) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _stroke3_rows(strokes: Sequence[np.ndarray]) -> list[list[int | float]]:
    """[dx, dy, pen_lift] rows: the first row absolute, pen_lift 1 on the last point of each stroke.

    Points are rounded to DECIMALS first and the differences of rounded points are exact decimals, so
    the reader's running sum gives back the rounded points (within float64 summation error)."""
    points = np.round(np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]), DECIMALS)
    deltas = np.round(np.diff(points, axis=0, prepend=np.zeros((1, 2))), DECIMALS)
    lifts = np.zeros(len(points), dtype=np.int64)
    lifts[np.cumsum([len(s) for s in strokes]) - 1] = 1
    return [[_plain(dx), _plain(dy), int(lift)] for (dx, dy), lift in zip(deltas.tolist(), lifts.tolist())]


# ------------------------------------------------------------------------------------------- folder


class UnknownSketch(UsageError):
    """An index outside the folder's listing (HTTP 404)."""


@dataclass(frozen=True)
class Item:
    """One sketch of the folder: its listing index, input path, name relative to the folder, annotation path."""

    index: int
    path: Path
    name: str
    labels_path: Path


class AnnotationFolder:
    """The sketches of one folder and their annotations (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        from ..data import find_sketches

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UsageError(f"{self.folder} is not a folder")
        files = [f for f in find_sketches(self.folder) if not f.name.lower().endswith(LABELS_SUFFIX)]
        if not files:
            raise UsageError(f"no sketch files in {self.folder}")
        stems: dict[tuple[Path, str], int] = {}
        for f in files:
            stems[(f.parent, f.stem.lower())] = stems.get((f.parent, f.stem.lower()), 0) + 1
        self.items = [
            Item(i, f, f.relative_to(self.folder).as_posix(),
                 f.with_name((f.stem if stems[(f.parent, f.stem.lower())] == 1 else f.name) + LABELS_SUFFIX))
            for i, f in enumerate(files)
        ]
        self.removed_temporaries = self._remove_temporaries()

    def __len__(self) -> int:
        return len(self.items)

    def item(self, index: object) -> Item:
        """The item at `index`; UnknownSketch for anything but a whole number within the listing."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.items):
            raise UnknownSketch(f"no sketch number {index!r} in this folder (it has {len(self.items)}, "
                                f"numbered from 0)")
        return self.items[index]

    def done(self, index: int) -> bool:
        return self.item(index).labels_path.is_file()

    def progress(self) -> tuple[int, int]:
        """(sketches with an annotation, sketches)."""
        return sum(item.labels_path.is_file() for item in self.items), len(self.items)

    def next_index(self, after: int = -1) -> int | None:
        """The first sketch after `after` without an annotation, wrapping around; None when all are done."""
        count = len(self.items)
        for step in range(1, count + 1):
            index = (after + step) % count
            if not self.items[index].labels_path.is_file():
                return index
        return None

    def read(self, index: int) -> Sketch:
        from ..io import read_sketch

        return read_sketch(self.item(index).path)

    def saved_labels(self, index: int, num_strokes: int) -> list[str | None] | None:
        """The saved label of each input stroke (in the input's order), or None when there is no
        annotation. InputError when the annotation is unreadable or does not fit the input's strokes."""
        from ..io import read_sketch

        path = self.item(index).labels_path
        if not path.is_file():
            return None
        saved = read_sketch(path)
        doc = json.loads(path.read_text(encoding="utf-8"))
        order = doc.get("source_strokes", list(range(saved.num_strokes)))
        if (saved.num_strokes != num_strokes or not isinstance(order, list)
                or sorted(o for o in order if isinstance(o, int) and not isinstance(o, bool)) != list(range(num_strokes))):
            raise InputError(f"the annotation has {saved.num_strokes} strokes but the sketch has {num_strokes}; "
                             "it was made for another version of the file", path)
        labels: list[str | None] = [None] * num_strokes
        for position, source in enumerate(order):
            labels[source] = saved.labels[position] if saved.labels is not None else None
        return labels

    def save(self, index: int, sketch: Sketch, stroke_labels: Sequence[str | None], *, labels: Sequence[str] = (),
             model: str | None = None) -> Path:
        """Write the annotation of sketch `index` atomically beside its input; returns its path."""
        item = self.item(index)
        check_output_path(item.labels_path, [item.path], overwrite=True)
        doc = stroke3_document(sketch, stroke_labels, labels=labels,
                               extra={"source": item.path.name, "annotated_from": model})
        return atomic_write_text(item.labels_path, json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n")

    def _remove_temporaries(self) -> list[Path]:
        """Delete the temporary files (`.NAME.labels.json.tmp-*`) a killed save left beside the inputs."""
        removed = []
        for folder in sorted({item.path.parent for item in self.items}):
            for candidate in folder.glob(f".*{LABELS_SUFFIX}.tmp-*"):
                if candidate.is_file() and not candidate.is_symlink():
                    candidate.unlink(missing_ok=True)
                    removed.append(candidate)
        return removed
