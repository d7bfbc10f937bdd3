"""test.py's scoring (`test.py` 60-79, `models/clip.py` 260-281, `utils.py` 55-69), step by step.

Text: each class name fills CLIP Surgery's 85 templates (`SURGERY_TEMPLATES`, `template.format(name)`);
the 85 embeddings are L2-normalised, averaged, and the mean L2-normalised again (`ensemble_features`).
The same for the empty string "" is the "redundant" feature; the class text is
text - redundant, NOT re-normalised (`class_text`).

Visual features: test.py holds them as (1, T, N, E), one identical copy per class (the model's
cross-attention makes the copies identical, see `sketchkit.model.reference`), and normalises with
`x / x.norm(dim=1, keepdim=True)`: over the class-copy axis, not over the E channels. This is the
reference's quirk, and part of how its published numbers were produced: every value becomes
x / (sqrt(T) |x|) = sign(x) / sqrt(T) up to rounding (exactly +-1 for T = 1). `normalise_over_copies`
computes it faithfully by materialising the T copies.

Maps: similarity = features @ text^T; the patch tokens (after CLS and the prompts) are min-max
normalised per class over the 196 patches, reshaped row-major to 14 x 14 and upsampled with
`interpolate(mode="bilinear", align_corners=False)` to 512 x 512; each pixel takes the argmax
class (first maximum). Nothing is thresholded; no softmax or logit scale enters.

Shapes: T classes, N = 1 + P + 196 tokens, E joint width, P prompt tokens. Tensors are float32.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from sketchkit.reference.frame import SIDE

SURGERY_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.", "there is a {} in the scene.", "there is the {} in the scene.",
    "this is a {} in the scene.", "this is the {} in the scene.", "this is one {} in the scene.",
)
"""CLIP Surgery's prompt ensemble as the reference uses it (`models/clip.py` 264): 85 templates."""

REDUNDANT = ""
"""The class name whose ensemble is subtracted from every class (test.py 65)."""

TextEncoder = Callable[[list[str]], torch.Tensor]
"""texts (n) -> (n, E) raw text embeddings (`ReferenceModel.encode_text_raw`)."""


def prompts(name: str) -> list[str]:
    """The 85 prompts of one class name: `template.format(name)` per template."""
    return [template.format(name) for template in SURGERY_TEMPLATES]


def ensemble_features(encode: TextEncoder, names: Sequence[str]) -> torch.Tensor:
    """(T, E): per name, the 85 prompt embeddings L2-normalised, averaged, the mean L2-normalised."""
    features = []
    for name in names:
        embeddings = encode(prompts(name))  # (85, E)
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
        mean = embeddings.mean(dim=0)
        features.append(mean / mean.norm())
    return torch.stack(features, dim=1).t()


def class_text(encode: TextEncoder, names: Sequence[str], redundant: torch.Tensor | None = None) -> torch.Tensor:
    """(T, E) text - redundant (test.py 64-65, 74), not re-normalised.

    redundant: (1, E) ensemble of "" when already computed (it depends on the model only)."""
    if redundant is None:
        redundant = ensemble_features(encode, [REDUNDANT])
    return ensemble_features(encode, names) - redundant


def normalise_over_copies(features: torch.Tensor, copies: int) -> torch.Tensor:
    """test.py 72's quirk. features (N, E), the one visual copy; copies = T, the number of classes.

    Returns (N, E) = copy 0 of x / x.norm(dim=1) for x the (1, T, N, E) stack of T identical copies,
    i.e. sign(features) / sqrt(T) up to rounding (+-1 for T = 1; NaN where a feature is exactly 0,
    as in the reference)."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    stacked = features.unsqueeze(0).unsqueeze(0).expand(1, copies, *features.shape).contiguous()
    return (stacked / stacked.norm(dim=1, keepdim=True))[0, 0]


def patch_similarity(normalised: torch.Tensor, text: torch.Tensor, patch_start: int) -> torch.Tensor:
    """(P, T) similarity of the patch tokens: normalised (N, E) visual features, text (T, E)
    (`class_text`); patch tokens are normalised[patch_start:] (test.py 74-75)."""
    return (normalised @ text.t())[patch_start:]


def similarity_maps(patch_sim: torch.Tensor, size: int = SIDE) -> torch.Tensor:
    """(P, T) patch similarity -> (T, size, size) maps (`utils.get_similarity_map`): per class, min-max
    over the P patches, row-major sqrt(P) x sqrt(P) grid, bilinear (align_corners=False) to size."""
    sm = patch_sim.unsqueeze(0)  # (1, P, T)
    low, high = sm.min(1, keepdim=True)[0], sm.max(1, keepdim=True)[0]
    sm = (sm - low) / (high - low)
    side = int(sm.shape[1] ** 0.5)
    sm = sm.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, T, side, side), the reference's layout
    return F.interpolate(sm, (size, size), mode="bilinear")[0]


def pixel_maps(features: torch.Tensor, text: torch.Tensor, patch_start: int, size: int = SIDE) -> torch.Tensor:
    """(T, size, size) test.py's per-class maps from (N, E) raw visual features and (T, E) class text:
    quirk normalisation over T copies, patch similarity, min-max, bilinear."""
    normalised = normalise_over_copies(features, text.shape[0])
    return similarity_maps(patch_similarity(normalised, text, patch_start), size)


def argmax_labels(maps: torch.Tensor) -> torch.Tensor:
    """(T, H, W) maps -> (H, W) int64 index of the first maximum over classes (torch.argmax, as test.py)."""
    return torch.argmax(maps, dim=0)
