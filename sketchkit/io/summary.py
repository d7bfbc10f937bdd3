"""Run-level outputs of `segment`: one CSV and one COCO JSON for the whole run, streamed to disk.

    with RunSummary(csv_path="out/segmentation.csv", coco_path="out/segmentation.coco.json") as summary:
        for result in results:
            summary.add(result)          # rows and annotations go to temporary files as they come
    # both files appear atomically when the block ends without an error, and not at all otherwise

CSV (`csv_per="stroke"`): file, stroke, label, confidence, top (labels by vote, ";"-joined),
num_points, gt_label, instance, source_id, model, scoring, threshold. `csv_per="sketch"`: file,
strokes, labelled, labels ("name (count)", ";"-joined), model, scoring, threshold.
COCO: {"images", "annotations", "categories"} as `sketchkit.io.masks.coco_annotations` makes them.

Several processes (`segment` under torchrun): each writes its share to a part file
(`RunSummary(..., part=rank)`: `.<csv or coco name>.parts/r<rank>.jsonl` beside the outputs, one line per
sketch with its place in the run), and rank 0 joins the parts in run order (`merge_summary_parts`) into
the files one process writes: the same rows, image, annotation and category numbers.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import json
import os
from pathlib import Path

import numpy as np

from sketchkit.errors import UsageError
from sketchkit.files import atomic_path
from sketchkit.io.jsontext import load_json
from sketchkit.results import label_counts
from sketchkit.types import SegmentResult

CSV_PER = ("stroke", "sketch")
STROKE_COLUMNS = ("file", "stroke", "label", "confidence", "top", "num_points", "gt_label", "instance", "source_id",
                  "model", "scoring", "threshold")
SKETCH_COLUMNS = ("file", "strokes", "labelled", "labels", "model", "scoring", "threshold")


class RunSummary:
    """Collects the run-level outputs; a context manager that publishes them atomically on success.
    `part` (a rank): write this process's share to a part file instead (see the module docstring)."""

    def __init__(self, *, csv_path: str | os.PathLike | None = None, coco_path: str | os.PathLike | None = None,
                 csv_per: str = "stroke", overwrite: bool = True, part: int | None = None):
        if csv_per not in CSV_PER:
            raise UsageError(f"the CSV summary is per stroke or per sketch, not {csv_per!r}")
        self.csv_per = csv_per
        self._stack = contextlib.ExitStack()
        self._csv = self._coco_parts = self._part = None
        self._categories: dict[str, int] = {}
        self._images = self._annotations = 0
        self._want_csv, self._want_coco = csv_path is not None, coco_path is not None
        if part is not None:
            if self._want_csv or self._want_coco:
                folder = summary_parts(csv_path if csv_path is not None else coco_path)
                folder.mkdir(parents=True, exist_ok=True)
                tmp = self._stack.enter_context(atomic_path(folder / f"r{part:05d}.jsonl", overwrite=True))
                self._part = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
            return
        if csv_path is not None:
            tmp = self._stack.enter_context(atomic_path(csv_path, overwrite=overwrite))
            handle = self._stack.enter_context(open(tmp, "w", encoding="utf-8", newline="", errors="backslashreplace"))
            self._csv = csv.writer(handle)
            self._csv.writerow(STROKE_COLUMNS if csv_per == "stroke" else SKETCH_COLUMNS)
        if coco_path is not None:
            self._coco_tmp = self._stack.enter_context(atomic_path(coco_path, overwrite=overwrite))
            images = self._stack.enter_context(_scratch(Path(coco_path).parent))
            annotations = self._stack.enter_context(_scratch(Path(coco_path).parent))
            self._coco_parts = (images, annotations)

    def __enter__(self) -> "RunSummary":
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None and self._coco_parts is not None:
            self._assemble_coco()
        return self._stack.__exit__(kind, value, traceback)

    def add(self, result: SegmentResult, order: tuple[int, int] = (0, 0)) -> None:
        """One sketch's rows and COCO record; `order`: its place in the run (what the parts are joined by)."""
        rows = None
        if self._want_csv:
            rows = stroke_rows(result) if self.csv_per == "stroke" else [sketch_row(result)]
        record = None
        if self._want_coco:
            from sketchkit.io.masks import coco_annotations

            local: dict[str, int] = {}
            record = coco_annotations(result, 0, local)
            names = {i: n for n, i in local.items()}
            for annotation in record["annotations"]:  # categories by name until the run numbers them
                annotation["category_id"] = names[annotation["category_id"]]
        if self._part is not None:
            self._part.write(json.dumps({"order": list(order), "csv": rows, "coco": record}) + "\n")
        else:
            self._add(rows, record)

    def _add(self, rows: list | None, record: dict | None) -> None:
        if self._csv is not None and rows is not None:
            self._csv.writerows(rows)
        if self._coco_parts is not None and record is not None:
            self._images += 1
            record["image"]["id"] = self._images
            if record["image"]["file_name"] == "sketch-0":
                record["image"]["file_name"] = f"sketch-{self._images}"
            for annotation in record["annotations"]:
                self._annotations += 1
                annotation.update(id=self._annotations, image_id=self._images,
                                  category_id=self._categories.setdefault(annotation["category_id"],
                                                                          len(self._categories) + 1))
            images, annotations = self._coco_parts
            images.write(json.dumps(record["image"]) + "\n")
            annotations.writelines(json.dumps(a) + "\n" for a in record["annotations"])

    def _assemble_coco(self) -> None:
        categories = [{"id": i, "name": n} for n, i in sorted(self._categories.items(), key=lambda kv: kv[1])]
        with open(self._coco_tmp, "w", encoding="utf-8") as out:
            out.write('{"info": {"description": "sketchkit segment"}, "categories": ')
            out.write(json.dumps(categories))
            for key, part in zip(("images", "annotations"), self._coco_parts):
                part.seek(0)
                out.write(f', "{key}": [')
                out.write(",".join(line.rstrip("\n") for line in part))
                out.write("]")
            out.write("}\n")


def summary_parts(path: str | os.PathLike) -> Path:
    """The folder the processes of one run write their summary parts to: hidden, beside the outputs."""
    path = Path(path)
    return path.parent / f".{path.name}.parts"


def merge_summary_parts(folder: str | os.PathLike, *, csv_path=None, coco_path=None, csv_per: str = "stroke",
                        overwrite: bool = True) -> None:
    """Join the part files in `folder` (each in run order) into the run's csv and COCO files, in run order, and
    remove them. Memory holds one line per part."""
    import shutil

    folder = Path(folder)
    parts = sorted(folder.glob("r*.jsonl"))
    handles = [open(p, encoding="utf-8") for p in parts]
    try:
        streams = [((tuple(item["order"]), index, item) for item in (load_json(line, part) for line in handle))
                   for index, (part, handle) in enumerate(zip(parts, handles))]
        with RunSummary(csv_path=csv_path, coco_path=coco_path, csv_per=csv_per, overwrite=overwrite) as summary:
            for _, _, item in heapq.merge(*streams, key=lambda entry: (entry[0], entry[1])):
                summary._add(item["csv"], item["coco"])
    finally:
        for handle in handles:
            handle.close()
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _scratch(folder: Path):
    """A temporary text file in `folder`, removed afterwards."""
    import tempfile

    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder) as handle:
        yield handle


def _threshold(result: SegmentResult) -> str:
    return "" if result.threshold is None else repr(float(result.threshold))


def stroke_rows(result: SegmentResult) -> list[list]:
    sketch = result.sketch
    rows = []
    for i, points in enumerate(sketch.strokes):
        label = int(result.votes.labels[i])
        top = ";".join(result.labels[c] for c in np.asarray(result.votes.top[i]) if c >= 0)
        rows.append([sketch.source or "", i, result.labels[label] if label >= 0 else "",
                     f"{float(result.votes.confidence[i]):.4f}", top, len(points),
                     (sketch.labels[i] or "") if sketch.labels is not None else "",
                     int(sketch.instance_ids[i]) if sketch.instance_ids is not None else "",
                     (sketch.source_ids[i] or "") if sketch.source_ids is not None else "",
                     result.model, result.scoring, _threshold(result)])
    return rows


def sketch_row(result: SegmentResult) -> list:
    counts = {n: c for n, c in label_counts(result).items() if c}
    labelled = int((np.asarray(result.votes.labels) >= 0).sum())
    return [result.sketch.source or "", result.sketch.num_strokes, labelled,
            ";".join(f"{n} ({c})" for n, c in counts.items()), result.model, result.scoring, _threshold(result)]
