"""Training data: which sketches train and validate, their captions and categories, and the batch order.

    split = load_data(config)                     # DataSplit: train items, validation sketches
    batches = epoch_batches(len(split.train), config.global_batch, config.seed, epoch)
    shares = micro_batches(len(batch), world, accumulate, rank)
    images = load_images(items, model.input_size) # (B, S, S) grey rasters, 1 = paper

A training item is a file, the caption it trains with (`caption_for_training`) and the categories
the caption yields under the run's label policy (`LabelPolicy.from_caption`, the policy `segment`
uses). Sketches are read once to find captions and read again per batch, not kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UsageError
from .config import TrainConfig


@dataclass(frozen=True)
class TrainItem:
    """One training sketch: its file, caption and the categories found in the caption."""

    path: str
    caption: str
    categories: tuple[str, ...]


@dataclass
class DataSplit:
    train: list[TrainItem]
    val_sketches: list  # labelled Sketch objects for mIoU validation (rank 0 only)
    val_items: list[TrainItem]  # captioned held-out sketches for loss validation when no labels exist
    description: str  # where the validation sketches come from, in words
    skipped: list[str] = field(default_factory=list)


def _has_partitions(path: Path) -> bool:
    return path.is_dir() and (path / "data_partitions.json").is_file()


def instance_names(sketch) -> list[str]:
    """One name per labelled instance (per stroke when instance ids are unknown), in stroke order."""
    labels = sketch.labels or ()
    if sketch.instance_ids is None:
        return [name for name in labels if name is not None]
    seen: dict[int, str] = {}
    for name, instance in zip(labels, np.asarray(sketch.instance_ids).tolist()):
        if name is not None and instance >= 0 and instance not in seen:
            seen[instance] = name
    return list(seen.values())


def caption_for_training(sketch, captions_from_labels: bool) -> str | None:
    """The caption a sketch trains with, or None.

    A caption written by a person (FS-COCO text, a caption .txt) is always used. A caption made
    from the sketch's own instance names (what the FrISS reader provides) is used only with
    `captions_from_labels`, which also builds one for labelled sketches that have none.
    """
    from ..io import caption_from_names  # the function the readers build FrISS captions with

    from_names = caption_from_names(instance_names(sketch)) if sketch.has_labels else None
    caption = sketch.caption.strip() if sketch.caption and sketch.caption.strip() else None
    if caption is not None and caption != from_names:
        return caption
    return from_names if captions_from_labels else None


def label_policy(cfg: TrainConfig):
    """The categories of a caption: `segment`'s caption policy with the run's vocabulary and max_categories."""
    from ..inference.policy import LabelPolicy
    from ..labels import load_vocabulary

    vocabulary = load_vocabulary(cfg.vocab) if cfg.vocab else None
    return LabelPolicy.from_caption(vocabulary=vocabulary, max_labels=cfg.max_categories)


def _read_items(files: Sequence[Path], cfg: TrainConfig, policy, *, training: bool) -> tuple[list[TrainItem], list, list[str]]:
    """Read sketches once -> (captioned TrainItems, the labelled Sketch objects when not `training`,
    notes on skipped files)."""
    from ..data import iter_sketches

    items, labelled, skipped, uncaptioned, could_use_labels = [], [], [], [], 0
    for path, sketch in iter_sketches(files):
        if isinstance(sketch, Exception):
            skipped.append(f"{sketch} (skipped)")
            continue
        if not training and sketch.has_labels:
            labelled.append(sketch)
        caption = caption_for_training(sketch, cfg.captions_from_labels)
        if caption is None:
            uncaptioned.append(str(path))
            could_use_labels += sketch.has_labels
            continue
        items.append(TrainItem(str(path), caption, tuple(policy.labels_for_caption(caption))))
    if training and uncaptioned:
        if not items:
            raise UsageError(f"the training sketches have no captions (e.g. {uncaptioned[0]}): put a caption .txt beside each file",
                             hint="captions" if could_use_labels else None)
        skipped.append(f"{len(uncaptioned)} training sketches without a caption skipped (e.g. {uncaptioned[0]})")
    return items, labelled, skipped


def _split_files(cfg: TrainConfig) -> tuple[list[Path], list[Path], str]:
    """(training files, validation files, where the validation files come from)."""
    from ..data import find_sketches

    data = Path(cfg.data)
    if not data.exists():
        raise UsageError(f"training data not found: {data}")
    if cfg.val_data:
        val_path = Path(cfg.val_data)
        if not val_path.exists():
            raise UsageError(f"validation data not found: {val_path}")
        train_files = list(find_sketches(data, split="train" if _has_partitions(data) else None))
        val_files = list(find_sketches(val_path, split="val" if _has_partitions(val_path) else None))
        return train_files, val_files, f"the validation data {val_path}"
    if _has_partitions(data):
        return list(find_sketches(data, split="train")), list(find_sketches(data, split="val")), f"the 'val' split of {data}"
    files = list(find_sketches(data))
    order = np.random.default_rng(cfg.seed).permutation(len(files))
    count = int(round(cfg.val_fraction * len(files))) if len(files) > 1 else 0
    count = max(count, 1) if cfg.val_fraction > 0 and len(files) > 1 else count
    val_files = [files[i] for i in sorted(order[:count])]
    train_files = [files[i] for i in sorted(order[count:])]
    return train_files, val_files, f"{count} sketches held out of {data} (val_fraction {cfg.val_fraction}, seed {cfg.seed})"


def load_data(cfg: TrainConfig, *, with_validation: bool = True) -> DataSplit:
    """Training items and validation sketches.

    Validation comes from `val_data` (its `val` split when it has a data_partitions.json), else
    from the `val` split of `data` when `data` is a dataset root with data_partitions.json (then
    training uses its `train` split), else from `val_fraction` of `data` held out by `seed`.
    Labelled validation sketches are scored by mIoU; without stroke labels, captioned held-out
    sketches give a validation loss instead.
    """
    train_files, val_files, description = _split_files(cfg)
    train_files = train_files[: cfg.limit] if cfg.limit else train_files
    val_files = val_files[: cfg.val_limit] if cfg.val_limit else val_files
    if not train_files:
        raise UsageError(f"no training sketches found in {cfg.data}")
    policy = label_policy(cfg)
    train, _, skipped = _read_items(train_files, cfg, policy, training=True)
    if not train:
        raise UsageError(f"no readable training sketches in {cfg.data}")
    val_sketches, val_items = [], []
    if with_validation and val_files:
        val_items, val_sketches, more = _read_items(val_files, cfg, policy, training=False)
        skipped += more
    return DataSplit(train, val_sketches, val_items, description, skipped)


def load_images(items: Sequence[TrainItem], size: int) -> np.ndarray:
    """(B, size, size) float32 grey rasters (1 = paper) of the items' sketches, read again from disk."""
    from ..io import read_sketch
    from ..raster import rasterize

    return np.stack([rasterize(read_sketch(item.path, sidecar=False), size).image for item in items]).astype(np.float32)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sketch order of one epoch; the same on every process and after a resume."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def epoch_batches(count: int, global_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's global batches: positions into the training items, `global_batch` at a time."""
    order = epoch_order(count, seed, epoch)
    return [order[i : i + global_batch] for i in range(0, count, global_batch)]


def micro_batches(batch_len: int, world: int, accumulate: int, rank: int) -> list[np.ndarray]:
    """This process's `accumulate` contiguous shares of a global batch of `batch_len` positions."""
    shares = np.array_split(np.arange(batch_len), world * accumulate)
    return shares[rank * accumulate : (rank + 1) * accumulate]
