"""Per-label masks of a result: PNG files (`--format masks`) and COCO-style RLE (`--format coco`).

Masks are drawn at the sketch's own frame, not the model's square raster: a bitmap's image size, else
the canvas scaled so that its longest side is between MASK_MIN and MASK_MAX pixels (FrISS 1100 x 770
stays 1100 x 770; a viewBox 0 0 1 1 drawing becomes 256 x 256). Strokes are drawn with their own
widths where the sketch has them (at least 1 px), else `sketchkit.raster.default_line_width`.

    write_masks(result, "out/scene.masks")   # <label>.png (255 = the label's ink), index.png, labels.txt
    coco_annotations(result, image_id=1)      # {"image": {...}, "annotations": [...]} with RLE per label

index.png: 0 = no ink, k = the k-th name of labels.txt (8-bit, or 16-bit with more than 255 labels).
COCO: one image per sketch, one annotation per predicted label present (category ids are 1-based
positions in the run's category list), `segmentation` as compressed RLE (pycocotools), `area`, `bbox`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from sketchkit.files import atomic_write_bytes, atomic_write_text
from sketchkit.raster import render_stroke_ids
from sketchkit.types import SegmentResult, Transform

MASK_MIN = 256
MASK_MAX = 2048


def mask_frame(result: SegmentResult) -> tuple[Transform, int, int]:
    """(transform canvas -> mask pixels, height, width) of the sketch's own frame (module docstring)."""
    sketch = result.sketch
    if sketch.image is not None:
        height, width = sketch.image.shape
        scale = 1.0
    else:
        longest = max(sketch.width, sketch.height)
        scale = min(max(longest, MASK_MIN), MASK_MAX) / longest
        width, height = max(1, round(sketch.width * scale)), max(1, round(sketch.height * scale))
    return Transform(scale, 0.0, 0.0, max(width, height)), height, width


def label_map(result: SegmentResult) -> tuple[np.ndarray, list[str]]:
    """((H, W) int32 class index per pixel, -1 = no ink or unlabelled stroke; the class names)."""
    transform, height, width = mask_frame(result)
    ids = render_stroke_ids(result.sketch, transform, use_source_widths=result.sketch.stroke_widths is not None)
    ids = ids[:height, :width]
    labels = np.append(np.asarray(result.votes.labels, dtype=np.int32), -1)
    return np.where(ids >= 0, labels[np.where(ids >= 0, ids, -1)], -1), list(result.labels)


def _safe_name(name: str) -> str:
    """A file name for a label: letters, digits, '-', '_' and '.', nothing that leaves the folder."""
    cleaned = re.sub(r"[^\w.-]+", "_", name).strip("._") or "label"
    return cleaned[:80]


def write_masks(result: SegmentResult, folder: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """One 8-bit PNG per label (255 = that label's ink), index.png and labels.txt in `folder` (created)."""
    from PIL import Image

    from sketchkit.render import png_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes, names = label_map(result)
    used: set[str] = set()
    for c, name in enumerate(names):
        stem = _safe_name(name)
        while stem in used or stem in ("index", "labels"):
            stem += "_"
        used.add(stem)
        mask = np.where(classes == c, 255, 0).astype(np.uint8)
        atomic_write_bytes(folder / f"{stem}.png", png_bytes(Image.fromarray(mask, "L")), overwrite=overwrite)
    index = classes + 1
    image = Image.fromarray(index.astype(np.uint8), "L") if len(names) < 256 else \
        Image.fromarray(index.astype(np.uint16), "I;16")
    atomic_write_bytes(folder / "index.png", png_bytes(image), overwrite=overwrite)
    atomic_write_text(folder / "labels.txt", "".join(n.replace("\n", " ") + "\n" for n in names), overwrite=overwrite)
    return folder


def coco_annotations(result: SegmentResult, image_id: int, categories: dict[str, int], first_id: int = 1) -> dict:
    """COCO image record + one RLE annotation per predicted label with ink; `categories` maps names to
    category ids (new names are added to it)."""
    from pycocotools import mask as rle

    classes, names = label_map(result)
    height, width = classes.shape
    image = {"id": image_id, "file_name": result.sketch.source or f"sketch-{image_id}", "width": width,
             "height": height}
    annotations = []
    for c, name in enumerate(names):
        mask = np.asfortranarray((classes == c).astype(np.uint8))
        if not mask.any():
            continue
        encoded = rle.encode(mask)
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id,
            "category_id": categories.setdefault(name, len(categories) + 1),
            "segmentation": {"size": [height, width], "counts": encoded["counts"].decode("ascii")},
            "area": int(rle.area(encoded)), "bbox": [float(v) for v in rle.toBbox(encoded)], "iscrowd": 0,
        })
    return {"image": image, "annotations": annotations}
