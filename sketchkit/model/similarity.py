"""Patch-text similarity maps: the one implementation that inference scoring and training's Level II share.

    sim = patch_similarity(patches, text)             # (C, P) cosine of L2-normalised features
    maps = upsample(sim, grid, size)                  # (C, size, size) bicubic, as the paper
    maps01 = minmax_normalise(maps)                   # each map scaled to [0, 1] by its own min and max

`surgery_weights` + `feature_surgery` are CLIP Surgery's redundant-feature removal (the clip-surgery
baseline), computable a chunk of labels at a time.
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


def surgery_weights(scene: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What CLIP Surgery's redundant-feature removal needs from all C classes at once: (E,), (P, E),
    (C, E) -> the class weights (C,) and the redundant feature (P, E).

    The weights re-weight classes by the scene token's class probabilities so that obvious classes
    do not dominate; the redundant feature is the mean over classes of the weighted products of
    patch and text features (the shared, class-agnostic response), computed as the patches times
    the mean weighted text feature without building the (P, C, E) products."""
    prob = (scene @ text.T * 2).softmax(-1)  # (C,)
    weight = prob / prob.mean()
    return weight, patches * (text * weight[:, None]).mean(0)[None]


def feature_surgery(patches: torch.Tensor, text: torch.Tensor, weight: torch.Tensor, redundant: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's redundant-feature removal (Li et al.): (P, E), (K, E), (K,), (P, E) -> (K, P)
    for any K of the classes, with `weight` and `redundant` from `surgery_weights` over all of them:
    the element-wise products of patch and text features less the redundant feature, summed into
    the cosine similarity. Each class's row is the same whichever classes are computed with it."""
    feats = patches[:, None, :] * (text * weight[:, None])[None]  # (P, K, E)
    return (feats - redundant[:, None, :]).sum(-1).T
