"""Patch-text similarity maps: the one implementation that inference scoring and training's Level II share.

    sim = patch_similarity(patches, text)             # (C, P) cosine of L2-normalised features
    maps = upsample(sim, grid, size)                  # (C, size, size) bicubic, as the paper
    maps01 = minmax_normalise(maps)                   # each map scaled to [0, 1] by its own min and max

`feature_surgery` is CLIP Surgery's redundant-feature removal (the clip-surgery baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MINMAX_EPS = 1e-6
"""Smallest range a map is divided by when min-max normalised (a constant map becomes all 0)."""


def patch_similarity(patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """patches (..., P, E), text (..., C, E), both L2-normalised -> (..., C, P) cosine similarity."""
    return text @ patches.transpose(-1, -2)


def upsample(similarity: torch.Tensor, grid: tuple[int, int], size: int | tuple[int, int]) -> torch.Tensor:
    """(K, P) patch similarities on a `grid` (rows, cols), P = rows * cols, row-major -> (K, H, W)
    bicubically upsampled (align_corners=False) to `size`."""
    maps = similarity.reshape(similarity.shape[0], 1, *grid)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(maps, size=size, mode="bicubic", align_corners=False)[:, 0]


def minmax_normalise(maps: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """(K, ...) -> each of the K maps scaled to [0, 1] by its own min and max."""
    flat = maps.flatten(1)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    low = flat.min(dim=1).values.view(shape)
    high = flat.max(dim=1).values.view(shape)
    return (maps - low) / (high - low).clamp_min(eps)


def feature_surgery(scene: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's redundant-feature removal (Li et al.): (E,), (P, E), (C, E) -> (C, P).

    Element-wise products of patch and text features, re-weighted by the scene token's class
    probabilities so that obvious classes do not dominate; their mean over classes (the shared,
    class-agnostic response) is subtracted before the sum that makes the cosine similarity.
    """
    prob = (scene @ text.T * 2).softmax(-1)  # (C,)
    weight = prob / prob.mean()
    feats = patches[:, None, :] * (text * weight[:, None])[None]  # (P, C, E)
    return (feats - feats.mean(1, keepdim=True)).sum(-1).T
