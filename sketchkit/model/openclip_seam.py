"""Every use of open_clip beyond its public factory, in one place.

sketchkit runs open_clip's CLIP vision tower block by block (the v-v dual path needs each block's
value projection) and inserts prompt tokens before `ln_pre`. That reaches into module layout that
open_clip may change between releases, so it happens only here, pinned to the versions tested
(`TESTED_VERSIONS`, the bound in pyproject.toml). `tests/test_openclip_seam.py` checks, on the
installed release, that running the tower through this seam equals open_clip's own forward: a
release that moves these internals fails that test loudly instead of giving wrong features.

Parts used (checkpoint names, which open_clip keeps stable for weight loading):
`visual.conv1`, `class_embedding`, `positional_embedding`, `ln_pre`, `transformer.resblocks[i]`
(`ln_1`, `attn` as nn.MultiheadAttention with a packed `in_proj_weight`/`in_proj_bias` and
`out_proj`, `ls_1`, `ln_2`, `mlp` with its `c_fc`, `ls_2`), `ln_post`, `proj`, and the model's `encode_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

TESTED_VERSIONS = ">=3.0,<3.4"


@dataclass(frozen=True)
class VisionLayout:
    """Sizes of an open_clip ViT vision tower, read from its modules (never written elsewhere).

    image_size: input side in pixels; patch: patch side; grid: (rows, cols) of patches;
    width: token width W; heads: attention heads; blocks: transformer blocks; embed_dim: joint space E;
    channels: image channels the patch embedding takes; mlp_width: hidden width of each block's MLP.
    """

    image_size: int
    patch: int
    grid: tuple[int, int]
    width: int
    heads: int
    blocks: int
    embed_dim: int
    channels: int
    mlp_width: int


def layout(visual: nn.Module) -> VisionLayout:
    grid = tuple(int(g) for g in visual.grid_size)
    patch = int(visual.conv1.kernel_size[0])
    first = visual.transformer.resblocks[0]
    return VisionLayout(
        image_size=patch * grid[0], patch=patch, grid=grid, width=int(visual.conv1.out_channels),
        heads=int(first.attn.num_heads), blocks=len(visual.transformer.resblocks), embed_dim=int(visual.output_dim),
        channels=int(visual.conv1.in_channels), mlp_width=int(first.mlp.c_fc.out_features),
    )


def blocks(visual: nn.Module) -> list[nn.Module]:
    return list(visual.transformer.resblocks)


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) normalised -> (B, 1 + P, W): class token then patch tokens, positional
    embedding added, *before* `ln_pre` (prompt tokens may be inserted before the norm)."""
    x = visual.conv1(images)  # (B, W, gh, gw)
    x = x.flatten(2).transpose(1, 2)  # (B, P, W)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)


def ln_pre(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return visual.ln_pre(tokens)


def project(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(…, W) tokens -> (…, E) joint space through the shared ln_post + proj."""
    return visual.ln_post(tokens) @ visual.proj


def qkv(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's packed q, k, v projection of ln_1(x): (B, N, W) -> (B, N, 3W)."""
    attn = block.attn
    return F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)


def attention_out(block: nn.Module, heads_out: torch.Tensor) -> torch.Tensor:
    """(B, H, N, D) per-head attention output -> (B, N, W) through the block's output projection
    and layer scale: the residual update of the attention half of the block."""
    batch, heads, tokens, dim = heads_out.shape
    merged = heads_out.transpose(1, 2).reshape(batch, tokens, heads * dim)
    return block.ls_1(block.attn.out_proj(merged))


def mlp_residual(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x + ls_2(mlp(ln_2(x))): the feed-forward half of a block."""
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def attention_parameter_names(block_prefix: str) -> tuple[str, ...]:
    """State-dict names of a block's attention projections under `block_prefix` ('...resblocks.6')."""
    return tuple(f"{block_prefix}.attn.{n}" for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"))


# ---- factory -------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def register_configs(folder: str) -> None:
    """Make the architectures in `folder` (open_clip model-config JSON files) known to open_clip, once."""
    import open_clip

    open_clip.add_model_config(Path(folder))


def create_clip(architecture: str) -> nn.Module:
    """An open_clip CLIP of `architecture` with open_clip's own random init (weights loaded later)."""
    import open_clip

    return open_clip.create_model(architecture, pretrained=None)


@lru_cache(maxsize=None)
def tokenizer(architecture: str):
    import open_clip

    return open_clip.get_tokenizer(architecture)


def version() -> str:
    from importlib.metadata import version as package_version

    return package_version("open_clip_torch")
