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
`out_proj`, `ls_1`, `ln_2`, `mlp` with its `c_fc`, `ls_2`), `ln_post`, `proj`, and the model's `encode_text`; for the
reference mode, the text tower's `token_embedding`, `positional_embedding`, `transformer`, `attn_mask`,
`ln_final`, `text_projection` (`encode_text_prefix`) and `open_clip.model.CLIP` with its config classes.
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


def encode_text_prefix(clip: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`clip.encode_text(tokens)` (not normalised), computed on the first L = max(eot) + 1 positions only.

    With the causal mask, a position sees only earlier ones, and the argmax (end-of-text) token's
    output does not depend on the padding after it; short prompts (CLIP Surgery's templates, about
    15 tokens of 77) then cost a fraction of the full context. Equal to open_clip's encode_text up
    to float rounding (`tests/test_openclip_seam.py`); models without a causal mask or argmax
    pooling take open_clip's path."""
    mask = getattr(clip, "attn_mask", None)
    if mask is None or getattr(clip, "text_pool_type", None) != "argmax" or tokens.shape[0] == 0:
        return clip.encode_text(tokens, normalize=False)
    length = int(tokens.argmax(dim=-1).max()) + 1
    text = tokens[:, :length]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(text).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
    x = clip.ln_final(clip.transformer(x, attn_mask=mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]
    return clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection


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


def openai_state_sizes(state: dict) -> dict:
    """Sizes implied by an OpenAI-format CLIP state dict, derived as OpenAI's and the reference code's
    `build_model` do (and open_clip's `build_model_from_openai_state_dict`): vision and text heads =
    width // 64. Keys: vision_width, vision_layers, vision_heads, patch, image_size, embed_dim,
    context_length, vocab_size, text_width, text_heads, text_layers. KeyError when a key is missing."""
    vision_width = int(state["visual.conv1.weight"].shape[0])
    patch = int(state["visual.conv1.weight"].shape[-1])
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = int(state["ln_final.weight"].shape[0])
    return {
        "vision_width": vision_width,
        "vision_layers": len([k for k in state if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        "vision_heads": vision_width // 64,
        "patch": patch,
        "image_size": patch * grid,
        "embed_dim": int(state["text_projection"].shape[1]),
        "context_length": int(state["positional_embedding"].shape[0]),
        "vocab_size": int(state["token_embedding.weight"].shape[0]),
        "text_width": text_width,
        "text_heads": text_width // 64,
        "text_layers": len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
    }


def create_clip_for_sizes(sizes: dict) -> nn.Module:
    """An open_clip CLIP (QuickGELU, float32, open_clip's random init) of `openai_state_sizes` sizes:
    the network OpenAI's state dicts describe (for ViT-B/16 the same as `ViT-B-16-quickgelu`)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=sizes["vision_layers"], width=sizes["vision_width"],
                           head_width=sizes["vision_width"] // sizes["vision_heads"], patch_size=sizes["patch"],
                           image_size=sizes["image_size"])
    text = CLIPTextCfg(context_length=sizes["context_length"], vocab_size=sizes["vocab_size"], width=sizes["text_width"],
                       heads=sizes["text_heads"], layers=sizes["text_layers"])
    return CLIP(sizes["embed_dim"], vision_cfg=vision, text_cfg=text, quick_gelu=True)


def model_config(architecture: str) -> dict | None:
    """open_clip's config dict of a known architecture (sizes), or None."""
    import open_clip

    return open_clip.get_model_config(architecture)


@lru_cache(maxsize=None)
def openai_tokenizer(context_length: int = 77):
    """OpenAI CLIP's byte-pair tokenizer (open_clip's SimpleTokenizer: ftfy + whitespace clean,
    lower case, start/end tokens, zero padding to `context_length`)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


@lru_cache(maxsize=None)
def tokenizer(architecture: str):
    import open_clip

    return open_clip.get_tokenizer(architecture)


def pretrained_cfg(architecture: str, tag: str) -> dict:
    """open_clip's download record of (architecture, pretrained tag): hf_hub repo/file, url, ... ({} if none)."""
    import open_clip

    return open_clip.get_pretrained_cfg(architecture, tag) or {}


def pretrained_tags(architecture: str) -> list[str]:
    import open_clip

    return list(open_clip.list_pretrained_tags_by_model(architecture))


def version() -> str:
    from importlib.metadata import version as package_version

    return package_version("open_clip_torch")
