"""The two triplet losses (method.md "Level I" and "Level II") and the text side they compare against.

- Level I (holistic): anchor = the sketch's normalised scene token, positive = its caption's
  text embedding, negative = the hardest (closest to the anchor) caption of the batch whose text
  differs from the positive's. Triplet hinge max(0, d(a, p) - d(a, n) + margin) with d the cosine
  distance 1 - cos (or L1, as the reference code) on L2-normalised embeddings.
- Level II (category): each category's CCT is the text embedding of "A sketch of a {c}."; its
  cosine-similarity map over the dual-path patches is upsampled bicubically to the input size,
  min-max normalised (`model.similarity`, the maps inference scores with), and cuts the
  category's ink out of the sketch with the learnable soft threshold (`SketchCLIP.isolate`: binary
  ink x soft cut by default). The isolated sketches go through the encoder again, once, tapping
  blocks 7, 10 and 12; the cross-attention at each tap turns (CCT, tokens) into a VCT. Triplet
  hinge at each tap with anchor VCT, positive its CCT, negative the hardest other category of the
  batch (never the same name); a pair's category loss is the sum over its taps (the reference's;
  `tap_reduction="mean"` takes the mean).

Gradient paths: the re-encode keeps the graph from the isolated images back to theta (the
threshold learns through the soft cut) and, unless `detach_maps`, back through the similarity
maps into the first pass, so LayerNorms and prompts get gradient through both passes.

Hinge terms are returned as sums per micro-batch; the caller divides them by the global counts of
`BatchTargets`, so every split of a global batch into micro-batches gives the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import TrainItem


def embedding_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Pairwise distances of L2-normalised embeddings: a (A, E), b (B, E) -> (A, B) float.

    cosine: 1 - a.b ; l1: sum |a - b| (the reference code's choice).
    """
    if kind == "cosine":
        return 1.0 - a @ b.T
    if kind == "l1":
        return (a[:, None, :] - b[None, :, :]).abs().sum(-1)
    raise ValueError(f"unknown distance {kind!r}; use cosine or l1")


def paired_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Row-wise distances: a, b (A, E) -> (A,), the diagonal of `embedding_distance`."""
    if kind == "cosine":
        return 1.0 - (a * b).sum(-1)
    if kind == "l1":
        return (a - b).abs().sum(-1)
    raise ValueError(f"unknown distance {kind!r}; use cosine or l1")


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
    from ..labels import prompt_for

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
    """images (b, S, S) float32 grey (1 = paper) on the model's device -> LossSums.

    One encoder pass for the sketches; one more for all isolated (sketch, category) images.
    """
    from ..model.encoder import images_to_tensor

    with autocast():
        out = model.forward_features(images_to_tensor(images), dual=cfg.vv, prompts=True)
    zero = torch.zeros((), device=images.device)
    holistic = holistic_sum(out, items, targets, cfg) if cfg.holistic and targets.holistic_count else zero
    has_pairs = cfg.category_level and targets.category_count and any(item.categories for item in items)
    category = category_sum(model, out, images, items, targets, cfg, autocast) if has_pairs else zero
    return LossSums(holistic, category)


def holistic_sum(out, items: Sequence[TrainItem], targets: BatchTargets, cfg: TrainConfig) -> torch.Tensor:
    """Level I: summed hinge terms of the micro-batch's scene tokens against the batch's captions."""
    device = out.scene.device
    key_of = {c: i for i, c in enumerate(targets.captions)}
    keys = torch.tensor([key_of[item.caption] for item in items], device=device)
    anchor = F.normalize(out.scene.float(), dim=-1)
    terms, _ = triplet_terms(
        anchor, targets.caption_emb[keys], keys, targets.caption_emb, torch.arange(len(targets.captions), device=device),
        margin=cfg.margin, distance=cfg.distance,
    )
    return terms.sum()


def category_sum(model, out, images: torch.Tensor, items: Sequence[TrainItem], targets: BatchTargets, cfg: TrainConfig,
                 autocast) -> torch.Tensor:
    """Level II: summed hinge terms of every (sketch, category) pair, each pair summed (or averaged) over its taps."""
    device = images.device
    pairs = [(i, c) for i, item in enumerate(items) for c in item.categories]
    key_of = {n: i for i, n in enumerate(targets.names)}
    sketch_index = torch.tensor([i for i, _ in pairs], device=device)
    keys = torch.tensor([key_of[c] for _, c in pairs], device=device)
    cct = targets.name_emb[keys]  # (K, E)
    anchors = category_anchors(model, out, 1.0 - images[:, None], sketch_index, cct, cfg, autocast)
    name_keys = torch.arange(len(targets.names), device=device)
    per_tap = torch.stack([
        triplet_terms(a, cct, keys, targets.name_emb, name_keys, margin=cfg.margin, distance=cfg.distance)[0]
        for a in anchors.values()
    ])  # (taps, K)
    per_pair = per_tap.sum(0) if cfg.tap_reduction == "sum" else per_tap.mean(0)
    return per_pair.sum()


def category_anchors(model, out, ink: torch.Tensor, sketch_index: torch.Tensor, cct: torch.Tensor, cfg: TrainConfig, autocast) -> dict:
    """Level II anchors for K (sketch, category) pairs.

    out: the first pass (patches (b, P, E)); ink (b, 1, H, W) with ink = 1; sketch_index (K,)
    int64 into the batch; cct (K, E) normalised category prompts. Returns {tap: (K, E)} normalised
    VCTs, or {"scene": (K, E)} of the isolated sketches when cross-attention is off.
    """
    from ..model.encoder import images_to_tensor
    from ..model.similarity import minmax_normalise, patch_similarity, upsample

    patches = F.normalize(out.patches.float(), dim=-1)[sketch_index]  # (K, P, E)
    sim = patch_similarity(patches, cct[:, None, :])[:, 0]  # (K, P) cosine similarity per patch, as inference
    maps = minmax_normalise(upsample(sim, out.grid, ink.shape[-2:]))[:, None]  # (K, 1, H, W) in [0, 1]
    if cfg.detach_maps:
        maps = maps.detach()
    isolated = model.isolate(ink[sketch_index], maps, sharpness=cfg.sharpness, isolation=cfg.isolation,
                             hard=not cfg.learn_threshold)
    taps = tuple(cfg.taps) if cfg.cross_attention else ()
    with autocast():
        second = model.forward_features(images_to_tensor(isolated[:, 0]), dual=cfg.vv, prompts=True, taps=taps)
        tokens = model.category_tokens(second.taps, cct) if cfg.cross_attention else {"scene": second.scene}
    return {t: F.normalize(v.float(), dim=-1) for t, v in tokens.items()}
