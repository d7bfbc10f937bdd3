"""Weakly supervised two-level training of SketchCLIP (method.md "Level I" and "Level II").

    report = train(TrainConfig(data="fscoco/", out="runs/exp1"))

Per optimizer step, on a global batch of sketch + caption pairs:

- Level I (holistic): anchor = the sketch's normalised scene token, positive = its caption's
  text embedding, negative = the hardest (closest to the anchor) caption of the batch whose text
  differs from the positive's. Triplet hinge max(0, d(a, p) - d(a, n) + margin) with d the cosine
  distance 1 - cos (or L1, as the reference code) on L2-normalised embeddings.
- Level II (category): every caption yields up to 3 categories; each category's CCT is the text
  embedding of "A sketch of a {c}."; its cosine-similarity map over the dual-path patches
  (14 x 14) is upsampled bicubically to 224 px, min-max normalised, and cuts the category's ink
  out of the sketch with the learnable soft threshold (`SketchCLIP.isolate`). The isolated
  sketches go through the encoder again, once, tapping blocks 7, 10 and 12; the cross-attention
  at each tap turns (CCT, tokens) into a VCT. Triplet hinge at each tap with anchor VCT,
  positive its CCT, negative the hardest other category of the batch (never the same name);
  the category loss of a pair is the mean over its taps.
- Total = holistic_weight * mean over sketches + category_weight * mean over (sketch, category)
  pairs. Only LayerNorms, prompts, cross-attention and theta train.

Gradient paths: the re-encode keeps the graph from the isolated images back to theta (the
threshold learns through the soft cut) and, unless `detach_maps`, back through the similarity
maps into the first pass, so LayerNorms and prompts get gradient through both passes.

Batches and processes: `batch_size` is the global batch of one optimizer step. Its sketches are
split into world_size x accumulate contiguous micro-batches. Negatives are text embeddings
(frozen), so every process encodes the texts of the whole global batch and mines the hardest
negative among all of them; each micro-batch adds its hinge terms divided by the global counts,
and gradients are summed over micro-batches and processes (one all_reduce per step over the small
trainable set, like DDP's bucketed all_reduce with no_sync during accumulation). One process,
accumulation and torchrun therefore compute the same step, up to float summation order.

Run folder (`out`): last.safetensors / best.safetensors adapters (+ .json sidecars),
train_state.safetensors (resumable: trainable parameters, AdamW moments, scheduler, RNG states,
epoch / step counters; JSON metadata, no pickle), config.json, metrics.jsonl, curves.png. Only
rank 0 writes and validates; the folder must be visible to every process.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, UsageError, WeightsError
from .files import atomic_path, atomic_write_text
from .trainconfig import TrainConfig, resume_conflicts

STATE_KEY = "sketchkit_train_state"
STATE_VERSION = 1
IMAGE_SIZE = 224
STATE_FILE = "train_state.safetensors"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
CONFIG_FILE = "config.json"

EventHandler = Callable[[str, dict], None]


# ==================================================================================== losses


def embedding_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Pairwise distances of L2-normalised embeddings: a (A, E), b (B, E) -> (A, B) float.

    cosine: 1 - a.b ; l1: sum |a - b| (the reference code's choice).
    """
    if kind == "cosine":
        return 1.0 - a @ b.T
    if kind == "l1":
        return (a[:, None, :] - b[None, :, :]).abs().sum(-1)
    raise UsageError(f"unknown distance {kind!r}; use cosine or l1")


def paired_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Row-wise distances: a, b (A, E) -> (A,), the diagonal of `embedding_distance`."""
    if kind == "cosine":
        return 1.0 - (a * b).sum(-1)
    if kind == "l1":
        return (a - b).abs().sum(-1)
    raise UsageError(f"unknown distance {kind!r}; use cosine or l1")


def hardest_negatives(distances: torch.Tensor, anchor_keys: torch.Tensor, candidate_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the closest candidate whose key differs from the anchor's.

    distances (A, C); anchor_keys (A,) and candidate_keys (C,) int64 (same key = same text).
    Returns (index (A,) int64, valid (A,) bool); valid is False where every candidate shares the
    anchor's key (no negative exists; the index is then meaningless).
    """
    same = anchor_keys[:, None] == candidate_keys[None, :]
    masked = distances.detach().masked_fill(same, float("inf"))
    return masked.argmin(dim=1), (~same).any(dim=1)


def triplet_terms(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    anchor_keys: torch.Tensor,
    candidates: torch.Tensor,
    candidate_keys: torch.Tensor,
    *,
    margin: float,
    distance: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor hinge max(0, d(a, p) - d(a, n) + margin) with n the hardest valid candidate.

    anchor, positive (A, E) and candidates (C, E) L2-normalised; keys as in `hardest_negatives`.
    Returns (terms (A,) float, 0 where no negative exists; valid (A,) bool).
    """
    dist_all = embedding_distance(anchor, candidates, distance)  # (A, C)
    index, valid = hardest_negatives(dist_all, anchor_keys, candidate_keys)
    d_neg = dist_all.gather(1, index[:, None])[:, 0]
    d_pos = paired_distance(anchor, positive, distance)
    terms = F.relu(d_pos - d_neg + margin)
    return torch.where(valid, terms, torch.zeros_like(terms)), valid


def hard_isolate(ink: torch.Tensor, maps: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The "no threshold" ablation: hard cut, no gradient to theta. Shapes as SketchCLIP.isolate."""
    keep = (maps >= threshold).to(maps.dtype)
    return 1.0 - ink * maps * keep


# ====================================================================================== data


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
    description: str
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
    from .io import caption_from_names  # the function the readers build FrISS captions with

    from_names = caption_from_names(instance_names(sketch)) if sketch.has_labels else None
    caption = sketch.caption.strip() if sketch.caption and sketch.caption.strip() else None
    if caption is not None and caption != from_names:
        return caption
    return from_names if captions_from_labels else None


def _read_items(files: Sequence[Path], cfg: TrainConfig, vocabulary, *, training: bool) -> tuple[list[TrainItem], list, list[str]]:
    """Read sketches once -> (captioned TrainItems, the labelled Sketch objects when not `training`,
    notes on skipped files). Training sketches are read again per batch, not kept in memory."""
    from .data import iter_sketches
    from .labels import labels_from_caption

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
        categories = tuple(labels_from_caption(caption, vocabulary, max_labels=cfg.max_categories))
        items.append(TrainItem(str(path), caption, categories))
    if training and uncaptioned:
        hint = " or pass --captions-from-labels to build captions from their stroke labels (FrISS instance names)" if could_use_labels else ""
        if not items:
            raise UsageError(f"the training sketches have no captions (e.g. {uncaptioned[0]}): put a caption .txt beside each file{hint}")
        skipped.append(f"{len(uncaptioned)} training sketches without a caption skipped (e.g. {uncaptioned[0]})")
    return items, labelled, skipped


def load_data(cfg: TrainConfig, *, with_validation: bool = True) -> DataSplit:
    """Training items and validation sketches.

    Validation comes from `val_data` (its `val` split when it has a data_partitions.json), else
    from the `val` split of `data` when `data` is a dataset root with data_partitions.json (then
    training uses its `train` split), else from `val_fraction` of `data` held out by `seed`.
    Labelled validation sketches are scored by mIoU; without stroke labels, captioned held-out
    sketches give a validation loss instead.
    """
    from .data import find_sketches
    from .labels import load_vocabulary

    data = Path(cfg.data)
    if not data.exists():
        raise UsageError(f"training data not found: {data}")
    vocabulary = load_vocabulary(cfg.vocabulary) if cfg.vocabulary else None
    if cfg.val_data:
        val_path = Path(cfg.val_data)
        if not val_path.exists():
            raise UsageError(f"validation data not found: {val_path}")
        train_files = list(find_sketches(data, split="train" if _has_partitions(data) else None))
        val_files = list(find_sketches(val_path, split="val" if _has_partitions(val_path) else None))
        description = f"--val-data {val_path}"
    elif _has_partitions(data):
        train_files = list(find_sketches(data, split="train"))
        val_files = list(find_sketches(data, split="val"))
        description = f"the 'val' split of {data}"
    else:
        files = list(find_sketches(data))
        order = np.random.default_rng(cfg.seed).permutation(len(files))
        count = int(round(cfg.val_fraction * len(files))) if len(files) > 1 else 0
        count = max(count, 1) if cfg.val_fraction > 0 and len(files) > 1 else count
        val_files = [files[i] for i in sorted(order[:count])]
        train_files = [files[i] for i in sorted(order[count:])]
        description = f"{count} sketches held out of {data} (val_fraction {cfg.val_fraction}, seed {cfg.seed})"
    train_files = train_files[: cfg.limit] if cfg.limit else train_files
    val_files = val_files[: cfg.val_limit] if cfg.val_limit else val_files
    if not train_files:
        raise UsageError(f"no training sketches found in {data}")
    train, _, skipped = _read_items(train_files, cfg, vocabulary, training=True)
    if not train:
        raise UsageError(f"no readable training sketches in {data}")
    val_sketches, val_items = [], []
    if with_validation and val_files:
        val_items, val_sketches, more = _read_items(val_files, cfg, vocabulary, training=False)
        skipped += more
    return DataSplit(train, val_sketches, val_items, description, skipped)


def load_images(items: Sequence[TrainItem]) -> np.ndarray:
    """(B, 224, 224) float32 grey rasters (1 = paper) of the items' sketches, read again from disk."""
    from .io import read_sketch
    from .raster import rasterize

    return np.stack([rasterize(read_sketch(item.path), IMAGE_SIZE).image for item in items]).astype(np.float32)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sketch order of one epoch; the same on every process and after a resume."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = epoch_order(count, seed, epoch)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def micro_batches(batch_len: int, world: int, accumulate: int, rank: int) -> list[np.ndarray]:
    """This process's `accumulate` contiguous shares of a global batch of `batch_len` positions."""
    shares = np.array_split(np.arange(batch_len), world * accumulate)
    return shares[rank * accumulate : (rank + 1) * accumulate]


# ============================================================================ text embeddings


class TextBank:
    """Cache of frozen-text-tower embeddings, (E,) float32 L2-normalised per text, on the model's device.

    `precompute` encodes every text of the run once, sorted, in fixed chunks: a matrix product's
    rounding can depend on how many rows it holds, so encoding texts as batches happen to need
    them would make a resumed run (or another process) differ from an uninterrupted one in the
    last bits.
    """

    def __init__(self, model, chunk: int = 256):
        self.model = model
        self.chunk = chunk
        self.cache: dict[str, torch.Tensor] = {}

    def precompute(self, texts) -> None:
        self._encode(sorted(set(texts) - set(self.cache)))

    def _encode(self, texts: list[str]) -> None:
        with torch.no_grad():
            for start in range(0, len(texts), self.chunk):
                part = texts[start : start + self.chunk]
                self.cache.update(zip(part, self.model.encode_text(part).float()))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        self._encode([t for t in dict.fromkeys(texts) if t not in self.cache])
        return torch.stack([self.cache[t] for t in texts])


@dataclass
class BatchTargets:
    """Text side of one global batch, identical on every process.

    captions / names: distinct caption texts and category names; *_emb (N, E) their embeddings.
    holistic_count / category_count: global number of anchors with a valid negative (the loss
    normalisers: every anchor is valid when its batch has at least two distinct texts).
    """

    captions: list[str]
    caption_emb: torch.Tensor
    names: list[str]
    name_emb: torch.Tensor
    holistic_count: int
    category_count: int


def batch_targets(items: Sequence[TrainItem], bank: TextBank, *, use_categories: bool) -> BatchTargets:
    from .labels import prompt_for

    captions = list(dict.fromkeys(item.caption for item in items))
    names = list(dict.fromkeys(c for item in items for c in item.categories)) if use_categories else []
    pairs = sum(len(item.categories) for item in items) if use_categories else 0
    return BatchTargets(
        captions=captions,
        caption_emb=bank(captions),
        names=names,
        name_emb=bank([prompt_for(n) for n in names]) if names else bank(captions)[:0],
        holistic_count=len(items) if len(captions) > 1 else 0,
        category_count=pairs if len(names) > 1 else 0,
    )


# ==================================================================================== losses on the model


@dataclass
class LossSums:
    """Sums of hinge terms of one micro-batch (to be divided by the global counts)."""

    holistic: torch.Tensor
    category: torch.Tensor


def micro_batch_losses(model, images: torch.Tensor, items: Sequence[TrainItem], targets: BatchTargets, cfg: TrainConfig, autocast) -> LossSums:
    """images (b, 224, 224) float32 grey (1 = paper) on the model's device -> LossSums.

    One encoder pass for the sketches; one more for all isolated (sketch, category) images.
    """
    from .model.encoder import images_to_tensor

    device = images.device
    zero = torch.zeros((), device=device)
    with autocast():
        out = model.forward_features(images_to_tensor(images), dual=cfg.dual, prompts=True)
    holistic = zero
    if cfg.holistic and targets.holistic_count:
        key_of = {c: i for i, c in enumerate(targets.captions)}
        keys = torch.tensor([key_of[item.caption] for item in items], device=device)
        anchor = F.normalize(out.scene.float(), dim=-1)
        terms, _ = triplet_terms(
            anchor, targets.caption_emb[keys], keys, targets.caption_emb, torch.arange(len(targets.captions), device=device),
            margin=cfg.margin, distance=cfg.distance,
        )
        holistic = terms.sum()
    category = zero
    pairs = [(i, c) for i, item in enumerate(items) for c in item.categories] if cfg.category else []
    if pairs and targets.category_count:
        key_of = {n: i for i, n in enumerate(targets.names)}
        sketch_index = torch.tensor([i for i, _ in pairs], device=device)
        keys = torch.tensor([key_of[c] for _, c in pairs], device=device)
        cct = targets.name_emb[keys]  # (K, E)
        anchors = category_anchors(model, out, 1.0 - images[:, None], sketch_index, cct, cfg, autocast)
        name_keys = torch.arange(len(targets.names), device=device)
        per_tap = [
            triplet_terms(a, cct, keys, targets.name_emb, name_keys, margin=cfg.margin, distance=cfg.distance)[0]
            for a in anchors.values()
        ]
        category = torch.stack(per_tap).mean(0).sum()
    return LossSums(holistic, category)


def category_anchors(model, out, ink: torch.Tensor, sketch_index: torch.Tensor, cct: torch.Tensor, cfg: TrainConfig, autocast) -> dict:
    """Level II anchors for K (sketch, category) pairs.

    out: the first pass (patches (b, P, E)); ink (b, 1, H, W) with ink = 1; sketch_index (K,)
    int64 into the batch; cct (K, E) normalised category prompts. Returns {tap: (K, E)} normalised
    VCTs, or {"scene": (K, E)} of the isolated sketches when cross-attention is off.
    """
    from .model.encoder import images_to_tensor

    from .model.similarity import minmax_normalise, patch_similarity, upsample

    patches = F.normalize(out.patches.float(), dim=-1)[sketch_index]  # (K, P, E)
    sim = patch_similarity(patches, cct[:, None, :])[:, 0]  # (K, P) cosine similarity per patch, as inference
    maps = minmax_normalise(upsample(sim, out.grid, ink.shape[-2:]))[:, None]  # (K, 1, H, W) in [0, 1]
    if cfg.detach_maps:
        maps = maps.detach()
    ink = ink[sketch_index]
    if cfg.learn_threshold:
        isolated = model.isolate(ink, maps, sharpness=cfg.sharpness)
    else:
        isolated = hard_isolate(ink, maps, model.threshold().detach())
    taps = tuple(cfg.taps) if cfg.cross_attention else ()
    with autocast():
        second = model.forward_features(images_to_tensor(isolated[:, 0]), dual=cfg.dual, prompts=True, taps=taps)
        tokens = model.category_tokens(second.taps, cct) if cfg.cross_attention else {"scene": second.scene}
    return {t: F.normalize(v.float(), dim=-1) for t, v in tokens.items()}


# ============================================================================= distributed


@dataclass
class Distributed:
    """Process layout from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); 1 process otherwise."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.created_group = False


def init_distributed(device: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    from .inference.methods import resolve_device

    resolved = resolve_device(device)
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    if world <= 1:
        return Distributed(device=resolved)
    import torch.distributed as dist

    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo", timeout=timedelta(hours=1))
        created = True
    return Distributed(rank, world, local_rank, resolved, created)


def reduce_gradients(params: Sequence[torch.nn.Parameter], loss_sums: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """Sum gradients (and the (2,) loss sums) over processes with one all_reduce.

    A parameter without a gradient on every process keeps grad None (AdamW then skips it, as in
    a single process). Returns the summed loss sums.
    """
    if dist_info.world == 1:
        return loss_sums
    import torch.distributed as dist

    device = loss_sums.device
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    flat = torch.cat(parts + [flags, loss_sums.float()])
    dist.all_reduce(flat)
    offset = 0
    used = flat[sum(p.numel() for p in params) : -loss_sums.numel()].tolist()  # processes that had a gradient
    for param, flag in zip(params, used):
        chunk = flat[offset : offset + param.numel()]
        offset += param.numel()
        param.grad = chunk.view_as(param).to(param.dtype).clone() if flag > 0 else None
    return flat[-loss_sums.numel() :]


# ============================================================================ training state


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rng_states() -> dict:
    """torch (CPU, CUDA), numpy and python RNG states as JSON-able values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
        "cuda": [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_states(states: dict) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(states["torch"]))
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensor(s) for s in states["cuda"]])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW state_dict -> (tensors "optim.<param id>.<key>", JSON part: param groups + scalar state)."""
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_train_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """One safetensors file: tensors + JSON metadata (no pickle); written new, fsynced, renamed."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={STATE_KEY: json.dumps(meta)})
    return path


def read_train_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})[STATE_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, json.JSONDecodeError):
        raise InputError("not a sketchkit training state (no metadata)", path) from None
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read training state ({type(exc).__name__}: {exc})", path) from None
    if meta.get("version") != STATE_VERSION:
        raise InputError(f"training state version {meta.get('version')} is not {STATE_VERSION}", path)
    return tensors, meta


# ================================================================================== the run


@dataclass
class TrainReport:
    """What a finished (or max_steps-stopped) run produced; paths are in the run folder."""

    out: Path
    steps: int
    epochs_completed: int
    best_metric: str | None
    best_value: float | None
    best_path: Path
    last_path: Path
    state_path: Path
    metrics_path: Path
    plot_path: Path
    threshold: list[float]
    validations: list[dict]
    seconds: float
    steps_per_second: float
    train_count: int
    val_count: int
    notes: list[str] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the trained SketchCLIP (this process's copy)


def _lr_factor(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "cosine":
            span = max(total_steps - cfg.warmup_steps, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(step - cfg.warmup_steps, span) / span))
        return 1.0

    return factor


class _Run:
    """One training run; `train()` is its public face."""

    def __init__(self, cfg: TrainConfig, dist_info: Distributed, on_event: EventHandler | None):
        self.cfg = cfg
        self.dist = dist_info
        self.device = dist_info.device
        self.emit = (on_event if dist_info.is_main else None) or (lambda kind, info: None)
        self.out = Path(cfg.out)
        self.notes: list[str] = []
        self.history: list[dict] = []
        self.validations: list[dict] = []
        self.best_value: float | None = None
        self.best_metric: str | None = None
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.validated_step = -1
        self.segmenter = None  # validation model, built at the first validation
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")

    # ---- setup ----------------------------------------------------------------------------
    def note(self, message: str) -> None:
        self.notes.append(message)
        self.emit("note", {"message": message})

    def autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare_folder(self) -> dict | None:
        """Check the run folder; returns the saved state's metadata+tensors on resume."""
        state_path = self.out / STATE_FILE
        if self.cfg.resume:
            if not state_path.is_file():
                raise UsageError(f"nothing to resume: {state_path} does not exist")
            return dict(zip(("tensors", "meta"), read_train_state(state_path)))
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out} is a file; give a folder for the run")
        if state_path.exists() and not self.cfg.overwrite:
            raise UsageError(f"{self.out} already holds a training run: pass --resume to continue it or --overwrite to start over")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.cfg.overwrite:  # a fresh start must not mix with the old run's files
                for name in (STATE_FILE, METRICS_FILE, PLOT_FILE, LAST_FILE, BEST_FILE, "last.json", "best.json"):
                    (self.out / name).unlink(missing_ok=True)
        self.dist.barrier()
        return None

    def build_model(self):
        from .model.factory import create_encoder

        cfg = self.cfg
        model = create_encoder(cfg.backbone, weights=cfg.weights, device=self.device)
        if cfg.num_prompts is not None:
            model.set_num_prompts(cfg.num_prompts)
            model.to(self.device)
        model.freeze_for_finetuning()
        if not cfg.learn_threshold:
            model.theta.requires_grad_(False)
        if cfg.category and cfg.cross_attention:
            unknown = sorted(set(cfg.taps) - set(model.config.taps))
            if unknown:
                raise UsageError(f"taps {unknown} have no cross-attention in backbone {cfg.backbone} (it has {list(model.config.taps)})")
        self.model = model.train()
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.param_names = names
        params = dict(model.named_parameters())
        self.params = [params[n] for n in names]
        weights = [params[n] for n in names if n != "theta"]
        groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "weights"}]
        if "theta" in names:
            groups.append({"params": [params["theta"]], "lr": cfg.theta_lr, "weight_decay": 0.0, "name": "threshold"})
        self.optimizer = torch.optim.AdamW(groups)
        self.bank = TextBank(model)
        texts = [item.caption for item in self.split.train]
        if cfg.category:
            from .labels import prompt_for

            texts += [prompt_for(c) for item in self.split.train for c in item.categories]
        self.bank.precompute(texts)  # training texts only: the same on every process

    def build_schedule(self, steps_per_epoch: int) -> None:
        total = self.cfg.epochs * steps_per_epoch
        factor = _lr_factor(self.cfg, total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [factor] * len(self.optimizer.param_groups))

    # ---- state ----------------------------------------------------------------------------
    def state_meta(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"param.{n}": p.detach().float().cpu() for n, p in zip(self.param_names, self.params)}
        optim_tensors, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        meta = {
            "version": STATE_VERSION,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "data_order_seed": self.cfg.seed,
            "best": {"metric": self.best_metric, "value": self.best_value},
            "validated_step": self.validated_step,
            "param_names": self.param_names,
            "optimizer": optim_meta,
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(),
            "model": {"backbone": self.model.config.name, "fingerprint": self.model.fingerprint, "num_prompts": int(self.model.prompts.shape[0])},
            "threshold": float(self.model.threshold().detach()),
        }
        return tensors, meta

    def restore(self, saved: dict) -> None:
        tensors, meta = saved["tensors"], saved["meta"]
        path = self.out / STATE_FILE
        conflicts = resume_conflicts(meta["config"], self.cfg)
        if conflicts:
            detail = ", ".join(f"{k}={meta['config'][k]!r}" for k in conflicts)
            raise UsageError(f"--resume must continue with the interrupted run's settings; it had {detail}")
        if meta["model"]["fingerprint"] != self.model.fingerprint:
            raise WeightsError(f"{path} was trained on other backbone weights (fingerprint {meta['model']['fingerprint']}, these are {self.model.fingerprint})")
        if meta["param_names"] != self.param_names:
            raise InputError("training state holds another set of trainable parameters", path)
        with torch.no_grad():
            for name, param in zip(self.param_names, self.params):
                param.copy_(tensors[f"param.{name}"].to(param.device, param.dtype))
        self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
        self.scheduler.load_state_dict(meta["scheduler"])
        set_rng_states(meta["rng"])
        self.epoch, self.step_in_epoch, self.global_step = meta["epoch"], meta["step_in_epoch"], meta["global_step"]
        self.best_metric, self.best_value = meta["best"]["metric"], meta["best"]["value"]
        self.validated_step = meta.get("validated_step", -1)
        # records written after the checkpoint (by the interrupted process) are dropped: they will be made again
        self.history = [
            r for r in read_metrics(self.out / METRICS_FILE)
            if r.get("step", 0) <= (self.validated_step if r.get("kind") == "validation" else self.global_step)
        ]
        self.validations = [r for r in self.history if r.get("kind") == "validation"]
        if self.dist.is_main:
            atomic_write_text(self.out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in self.history))
        self.dist.barrier()

    def save(self, *, final: bool = False) -> None:
        """last adapter, training state (every call) and the plot; rank 0 only."""
        if not self.dist.is_main:
            return
        from .model.adapter import save_adapter

        save_adapter(self.model, self.out / LAST_FILE, extra=self.adapter_extra())
        tensors, meta = self.state_meta()
        save_train_state(self.out / STATE_FILE, tensors, meta)
        if final or self.step_in_epoch == 0:
            write_plot(self.history, self.out / PLOT_FILE)
        self.emit("saved", {"step": self.global_step, "path": str(self.out / STATE_FILE)})

    def adapter_extra(self) -> dict:
        return {
            "training": self.cfg.to_dict(),
            "metrics": self.validations[-1] if self.validations else {},
            "epoch": self.epoch,
            "step": self.global_step,
            "num_prompts": int(self.model.prompts.shape[0]),
        }

    def log(self, record: dict) -> None:
        self.history.append(record)
        if self.dist.is_main:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    # ---- steps ----------------------------------------------------------------------------
    def train_step(self, items: Sequence[TrainItem]) -> dict:
        cfg = self.cfg
        targets = batch_targets(items, self.bank, use_categories=cfg.category)
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(2, device=self.device)
        for share in micro_batches(len(items), self.dist.world, cfg.accumulate, self.dist.rank):
            if not len(share):
                continue
            part = [items[i] for i in share]
            images = torch.from_numpy(load_images(part)).to(self.device)
            losses = micro_batch_losses(self.model, images, part, targets, cfg, self.autocast)
            loss = (
                cfg.holistic_weight * losses.holistic / max(targets.holistic_count, 1)
                + cfg.category_weight * losses.category / max(targets.category_count, 1)
            )
            if loss.requires_grad:
                loss.backward()
            sums += torch.stack([losses.holistic.detach(), losses.category.detach()]).float()
        sums = reduce_gradients(self.params, sums, self.dist)
        self.optimizer.step()
        self.scheduler.step()
        holistic = float(sums[0]) / max(targets.holistic_count, 1)
        category = float(sums[1]) / max(targets.category_count, 1)
        return {
            "loss": cfg.holistic_weight * holistic + cfg.category_weight * category,
            "holistic": holistic if cfg.holistic else None,
            "category": category if cfg.category else None,
            "pairs": targets.category_count,
        }

    @torch.no_grad()
    def validation_loss(self, items: Sequence[TrainItem]) -> float:
        """Mean total loss over held-out captioned sketches (used when they have no stroke labels)."""
        total, batches = 0.0, 0
        for start in range(0, len(items), self.cfg.batch_size):
            batch = items[start : start + self.cfg.batch_size]
            targets = batch_targets(batch, self.bank, use_categories=self.cfg.category)
            images = torch.from_numpy(load_images(batch)).to(self.device)
            losses = micro_batch_losses(self.model, images, batch, targets, self.cfg, self.autocast)
            total += float(self.cfg.holistic_weight * losses.holistic / max(targets.holistic_count, 1))
            total += float(self.cfg.category_weight * losses.category / max(targets.category_count, 1))
            batches += 1
        return total / max(batches, 1)

    def validate(self) -> dict | None:
        """Rank 0: per-sketch mIoU on labelled validation sketches (else validation loss)."""
        self.validated_step = self.global_step
        if not self.dist.is_main or not (self.split.val_sketches or self.split.val_items):
            return None
        from .evaluation import evaluate
        from .inference.methods import sketchkit_segmenter

        self.model.eval()
        started = time.perf_counter()
        record: dict[str, Any] = {"kind": "validation", "epoch": self.epoch, "step": self.global_step}
        if self.split.val_sketches:
            self.emit("validation_start", {"count": len(self.split.val_sketches)})
            if self.segmenter is None:
                self.segmenter = sketchkit_segmenter(self.model, self.device, dual=self.cfg.dual)
            report = evaluate(
                self.split.val_sketches, [self.segmenter], eval_size=self.cfg.val_eval_size,
                batch_size=self.cfg.val_batch_size, on_step=lambda name, n: self.emit("validation_step", {"advance": n}),
            )
            scores = report.to_dict()["results"][self.segmenter.name]
            per_sketch = scores["per_sketch"]
            record.update(metric="val_miou", value=per_sketch["miou"], acc_p=per_sketch.get("acc_p"), acc_s=per_sketch.get("acc_s"),
                          sketches=len(self.split.val_sketches), eval_size=self.cfg.val_eval_size)
            better = self.best_value is None or (record["value"] is not None and record["value"] > self.best_value)
        else:
            record.update(metric="val_loss", value=self.validation_loss(self.split.val_items), sketches=len(self.split.val_items))
            better = self.best_value is None or record["value"] < self.best_value
        self.model.train()
        record.update(threshold=float(self.model.threshold().detach()), seconds=round(time.perf_counter() - started, 3), best=bool(better))
        if better:
            from .model.adapter import save_adapter

            self.best_metric, self.best_value = record["metric"], record["value"]
            self.validations.append(record)
            save_adapter(self.model, self.out / BEST_FILE, extra={**self.adapter_extra(), "selected_by": record["metric"]})
        else:
            self.validations.append(record)
        self.log(record)
        self.emit("validation", record)
        return record

    # ---- main loop ------------------------------------------------------------------------
    def run(self) -> TrainReport:
        cfg = self.cfg
        started = time.perf_counter()
        saved = self.prepare_folder()
        seed_everything(cfg.seed)
        self.split = load_data(cfg, with_validation=self.dist.is_main)
        for note in self.split.skipped[:20]:
            self.emit("note", {"message": note})
        self.build_model()
        if not self.split.val_sketches and self.split.val_items:
            self.note("the validation sketches have no stroke labels: the best checkpoint is chosen by validation loss, "
                              "not mIoU (pass --val-data with labelled sketches, e.g. FrISS)")
        items = self.split.train
        batches_per_epoch = math.ceil(len(items) / cfg.batch_size)
        self.build_schedule(batches_per_epoch)
        if saved is not None:
            self.restore(saved)
        elif self.dist.is_main:
            atomic_write_text(self.out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
        total = cfg.epochs * batches_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * batches_per_epoch)
        with_categories = sum(1 for item in items if item.categories)
        self.emit("setup", {
            "model": f"{self.model.config.name} ({self.model.weights_source})", "train": len(items), "with_categories": with_categories,
            "val": len(self.split.val_sketches) or len(self.split.val_items), "val_source": self.split.description,
            "steps_per_epoch": batches_per_epoch, "total_steps": total, "epochs": cfg.epochs, "start_step": self.global_step,
            "start_epoch": self.epoch, "world": self.dist.world, "device": str(self.device), "amp": self.amp,
            "trainable": sum(p.numel() for p in self.params), "resumed": saved is not None,
        })
        first_step, timed = self.global_step, 0.0
        stopped = False
        while self.epoch < cfg.epochs and not stopped:
            batches = epoch_batches(len(items), cfg.batch_size, cfg.seed, self.epoch)
            self.emit("epoch_start", {"epoch": self.epoch, "steps": len(batches), "done": self.step_in_epoch})
            for index in range(self.step_in_epoch, len(batches)):
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    stopped = True
                    break
                tick, lr = time.perf_counter(), self.optimizer.param_groups[0]["lr"]
                stats = self.train_step([items[i] for i in batches[index]])
                elapsed = time.perf_counter() - tick
                timed += elapsed
                self.global_step += 1
                self.step_in_epoch = index + 1
                record = {
                    "kind": "step", "epoch": self.epoch, "step": self.global_step, **stats,
                    "threshold": float(self.model.threshold().detach()),
                    "lr": lr, "sketches_per_s": len(batches[index]) / max(elapsed, 1e-9),
                }
                if self.global_step % cfg.log_every == 0:
                    self.log(record)
                self.emit("step", record)
                if cfg.save_every and self.global_step % cfg.save_every == 0:
                    self.save()
            if stopped:
                break
            self.validate()
            self.epoch += 1
            self.step_in_epoch = 0
            self.save()
            self.emit("epoch_end", {"epoch": self.epoch, "threshold": float(self.model.threshold().detach())})
        if self.validated_step != self.global_step:
            self.validate()
        self.save(final=True)
        self.dist.barrier()
        steps_done = self.global_step - first_step
        if self.best_value is None and self.dist.is_main:
            from .model.adapter import save_adapter

            save_adapter(self.model, self.out / BEST_FILE, extra={**self.adapter_extra(), "selected_by": "last (no validation data)"})
            self.note("no validation sketches: best.safetensors is the last state (pass --val-data for mIoU selection)")
        return TrainReport(
            out=self.out, steps=self.global_step, epochs_completed=self.epoch, best_metric=self.best_metric,
            best_value=self.best_value, best_path=self.out / BEST_FILE, last_path=self.out / LAST_FILE,
            state_path=self.out / STATE_FILE, metrics_path=self.out / METRICS_FILE, plot_path=self.out / PLOT_FILE,
            threshold=[r["threshold"] for r in self.history if r.get("kind") == "step"], validations=list(self.validations),
            seconds=time.perf_counter() - started, steps_per_second=steps_done / timed if timed else 0.0,
            train_count=len(items), val_count=len(self.split.val_sketches) or len(self.split.val_items), notes=self.notes,
            model=self.model,
        )


def train(config: TrainConfig, on_event: EventHandler | None = None) -> TrainReport:
    """Train an adapter as configured; see the module docstring. Under torchrun every process calls
    this; only rank 0 validates, writes files and calls `on_event(kind, info)`."""
    config = config.validated()
    dist_info = init_distributed(config.device)
    try:
        return _Run(config, dist_info, on_event).run()
    finally:
        dist_info.close()


def read_run_config(out: str | Path) -> dict:
    """The config a run in `out` was started with (for `--resume` without repeating every flag)."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"nothing to resume: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise InputError("run config is not valid JSON", path) from None


# ============================================================================ logs and plot


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl file (a torn last line from a killed run is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_plot(history: Sequence[dict], path: Path) -> Path:
    """PNG of losses per step, threshold per step and validation metric per validation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r for r in history if r.get("kind") == "step"]
    vals = [r for r in history if r.get("kind") == "validation" and r.get("value") is not None]
    figure = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    loss_ax, theta_ax, val_ax = figure.subplots(1, 3)
    x = [r["step"] for r in steps]
    for key in ("loss", "holistic", "category"):
        ys = [r.get(key) for r in steps]
        if any(y is not None for y in ys):
            loss_ax.plot(x, [np.nan if y is None else y for y in ys], label=key, linewidth=1)
    loss_ax.set(title="training loss", xlabel="step")
    loss_ax.legend(loc="upper right", fontsize=8)
    theta_ax.plot(x, [r["threshold"] for r in steps], color="tab:purple", linewidth=1)
    theta_ax.set(title="threshold 0.4 + 0.5 sigmoid(theta)", xlabel="step")
    if vals:
        val_ax.plot([r["step"] for r in vals], [r["value"] for r in vals], marker="o", color="tab:green")
    titles = {"val_miou": "validation mIoU (per-sketch mean)", "val_loss": "validation loss"}
    val_ax.set(title=titles.get(vals[-1]["metric"], vals[-1]["metric"]) if vals else "validation (none)", xlabel="step")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


# ======================================================================== import-checkpoint


@dataclass
class ImportReport:
    """What `import_checkpoint` took from a reference checkpoint and what it left out."""

    source: str
    out: Path
    taken: list[str]  # SketchCLIP parameter names filled from the checkpoint
    ignored: list[str]  # checkpoint keys not representable in an adapter (frozen weights, text tower, ...)
    changed_ignored: list[str]  # ignored keys whose values differ from the backbone's (the reference fine-tuned them)
    kept: list[str]  # trainable names the checkpoint lacks (kept at their initial values)

    def summary(self) -> str:
        lines = [f"took {len(self.taken)} tensors (visual LayerNorms) from {self.source}"]
        if self.ignored:
            lines.append(
                f"ignored {len(self.ignored)} tensors: an adapter holds only LayerNorms, prompts, cross-attention and theta; "
                f"the reference fine-tunes the whole visual encoder, and {len(self.changed_ignored)} of the ignored tensors "
                "differ from this backbone's weights, so the adapter approximates the reference model, it does not reproduce it"
            )
        if self.kept:
            lines.append(f"kept {len(self.kept)} trainable tensors at their initial values (not in the checkpoint): {', '.join(self.kept[:4])}{' ...' if len(self.kept) > 4 else ''}")
        return "\n".join(lines)


def _reference_keys(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Checkpoint key -> SketchCLIP parameter name ('clip.visual.*'), for the visual keys only.

    Accepts keys of a full CLIP state dict ('visual.…'), of the visual encoder alone (no prefix,
    recognised by 'conv1.weight' / 'class_embedding'), optionally under 'module.' or 'clip.'.
    """
    def strip(key: str) -> str:
        for prefix in ("module.", "clip."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        return key

    stripped = {k: strip(k) for k in state}
    if any(v.startswith("visual.") for v in stripped.values()):
        return {k: f"clip.{v}" for k, v in stripped.items() if v.startswith("visual.")}
    if any(v in ("conv1.weight", "class_embedding") for v in stripped.values()):
        return {k: f"clip.visual.{v}" for k, v in stripped.items()}
    return {}


def import_checkpoint(reference: str | Path, out: str | Path, *, backbone: str = "ViT-B-16", weights: str | None = None,
                      overwrite: bool = False) -> ImportReport:
    """Turn the reference code's full visual-encoder checkpoint (torch.save) into a sketchkit adapter.

    The file is read only with torch.load(weights_only=True) (or as safetensors). Its visual
    LayerNorm weights map onto SketchCLIP's trainable names; everything else is reported as
    ignored. Raises WeightsError when no visual LayerNorm of this backbone is found or shapes differ.
    """
    from .files import check_output_path
    from .model.adapter import save_adapter
    from .model.factory import create_encoder
    from .model.weights import read_state_dict

    out = check_output_path(out, [reference], overwrite)
    state = read_state_dict(reference)
    model = create_encoder(backbone, weights=weights, device="cpu")
    mapping = _reference_keys(state)
    if not mapping:
        raise WeightsError(f"{reference}: no visual-encoder keys found (expected 'visual.…' keys or a visual state dict with 'conv1.weight')")
    trainable = set(model.trainable_names())
    own = dict(model.named_parameters())
    backbone_state = model.state_dict()
    taken, changed = [], []
    with torch.no_grad():
        for key, name in mapping.items():
            if name in trainable:
                if tuple(state[key].shape) != tuple(own[name].shape):
                    raise WeightsError(f"{reference}: {key} has shape {tuple(state[key].shape)}, {backbone} expects {tuple(own[name].shape)}: pass the matching --backbone")
                own[name].copy_(state[key].to(own[name].dtype))
                taken.append(name)
            elif name in backbone_state and tuple(backbone_state[name].shape) == tuple(state[key].shape):
                if not torch.equal(backbone_state[name].float(), state[key].float()):
                    changed.append(key)
    if not any(".ln" in name or "ln_" in name for name in taken):
        raise WeightsError(f"{reference}: none of its keys are visual LayerNorms of {backbone} (is it a {backbone} checkpoint?)")
    taken_keys = {k for k, n in mapping.items() if n in taken}
    ignored = sorted(k for k in state if k not in taken_keys)
    report = ImportReport(str(reference), out, sorted(taken), ignored, sorted(changed), sorted(trainable - set(taken)))
    save_adapter(model, out, extra={"imported_from": str(reference), "import": {"taken": len(taken), "ignored": len(ignored), "changed_ignored": len(changed)}})
    return report
