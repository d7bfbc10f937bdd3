"""SketchCLIP: open_clip's CLIP with the paper's additions (method.md "Encoder").

- v-v dual path in the last `dual_blocks` blocks: beside the original block, a second path adds
  out_proj(softmax(V V^T / sqrt(d)) V) computed from the original path's value projection
  (shared weights, no LN2, no MLP). Patch features come from the second path, the scene token
  (VST) from the original one.
- learnable visual prompt tokens inserted after the class token and *before* `ln_pre`, as the
  reference code does (token layout [class, prompts, patches]; initialised uniform(-v, v) with
  v = sqrt(6 / (3 * patch^2 + width)), the reference's rule: 0.0625 for ViT-B/16), so trained and
  imported adapters hold prompts in one form,
- text-conditioned cross-attention at the tap blocks (training signal only),
- a learnable isolation threshold 0.4 + 0.5 * sigmoid(theta), theta starting at the reference's 0.4.

Only LayerNorms, prompts, cross-attention and theta are trainable (`freeze_for_finetuning`).
Everything that touches open_clip's module layout goes through `openclip_seam`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import openclip_seam as seam
from .attention import dual_path_attention, resolve_impl

# OpenAI CLIP image normalisation (open_clip's OPENAI_DATASET_MEAN/STD)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneConfig:
    """Sizes and layer choices of a backbone; where weights come from is resolved elsewhere."""

    name: str
    clip_model: str  # open_clip architecture name
    pretrained: str | None = None  # open_clip pretrained tag; None = random init (test backbones)
    seed: int = 0  # seed for random init (prompts, cross-attention, random backbones)
    num_prompts: int = 3  # learnable visual prompt tokens
    dual_blocks: int = 6  # the last N blocks run the v-v dual path
    taps: tuple[int, ...] = (7, 10, 12)  # 1-based blocks feeding the cross-attention
    cross_attn_heads: int = 8
    theta_init: float = 0.4  # threshold starts at 0.4 + 0.5 * sigmoid(0.4) = 0.699, the reference's
    description: str = ""


@dataclass
class TokenOutput:
    """The vision tower's final tokens before ln_post, layout [class, prompts, patches].

    tokens: (B, N, W) original path. tokens_vv: (B, N, W) v-v path, or None without the dual path.
    num_prompts: prompt tokens after the class token (patches start at 1 + num_prompts).
    taps: block number -> (B, N, W) original-path tokens after that block.
    """

    tokens: torch.Tensor
    tokens_vv: torch.Tensor | None
    num_prompts: int
    taps: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def patch_start(self) -> int:
        return 1 + self.num_prompts


@dataclass
class EncoderOutput:
    """scene: (B, E) projected scene token (original path).
    patches: (B, P, E) projected patch features (dual path when enabled), P = grid[0] * grid[1].
    taps: block number -> (B, N, W) original-path tokens after that block (N includes prompts).
    """

    scene: torch.Tensor
    patches: torch.Tensor
    grid: tuple[int, int]
    taps: dict[int, torch.Tensor] = field(default_factory=dict)


class TextCrossAttention(nn.Module):
    """Query = a category's text embedding, keys/values = one block's sketch tokens.

    The softmax runs over the N sketch tokens for each text query, so different texts attend to
    different tokens (unlike the reference code, which fed the text as every key).
    """

    def __init__(self, width: int, embed_dim: int, heads: int):
        super().__init__()
        self.q_proj = nn.Linear(embed_dim, width)
        self.ln_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """text (B, E), tokens (B, N, W) -> (B, W)."""
        query = self.q_proj(text.to(tokens.dtype)).unsqueeze(1)  # (B, 1, W)
        kv = self.ln_kv(tokens)
        return self.attn(query, kv, kv, need_weights=False)[0][:, 0]


class SketchCLIP(nn.Module):
    def __init__(self, clip: nn.Module, config: BackboneConfig, *, vv_impl: str | None = None):
        super().__init__()
        self.clip = clip
        self.config = config
        self.layout = seam.layout(clip.visual)
        self.grid = self.layout.grid
        self.prompts = nn.Parameter(self._new_prompts(config.num_prompts))
        self.cross_attn = nn.ModuleDict(
            {str(t): TextCrossAttention(self.layout.width, self.layout.embed_dim, config.cross_attn_heads) for t in config.taps}
        )
        self.theta = nn.Parameter(torch.tensor(float(config.theta_init)))
        self.vv_impl = vv_impl  # None: resolved per device at call time (env SKETCHKIT_VV_IMPL, then auto)
        self.weights_source = "random weights"
        self.random_weights = True  # create_encoder sets False once a weights file is loaded
        self.fingerprint = ""

    # ---- vision -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return self.layout.blocks

    @property
    def input_size(self) -> int:
        """Side in pixels of the images the vision tower takes (224 for ViT-B/16)."""
        return self.layout.image_size

    def _new_prompts(self, count: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (3 * self.layout.patch**2 + self.layout.width))
        return torch.empty(count, self.layout.width).uniform_(-bound, bound)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """(…, W) tokens -> (…, E) joint space via the shared ln_post + proj."""
        return seam.project(self.clip.visual, tokens)

    def forward_tokens(
        self, images: torch.Tensor, *, dual: bool = True, prompts: bool = True, taps: tuple[int, ...] = ()
    ) -> TokenOutput:
        """images (B, 3, H, W) normalised -> final tokens of both paths (see TokenOutput)."""
        visual = self.clip.visual
        x = seam.embed_tokens(visual, images)  # (B, 1 + P, W), before ln_pre
        num_prompts = self.prompts.shape[0] if prompts else 0
        if num_prompts:
            x = torch.cat([x[:, :1], self.prompts.to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        x = seam.ln_pre(visual, x)
        blocks = seam.blocks(visual)
        first_dual = len(blocks) - self.config.dual_blocks if dual else len(blocks)
        impl = resolve_impl(self.vv_impl, x.device) if dual else None
        x_vv, tapped = None, {}
        for index, block in enumerate(blocks):
            if index < first_dual:
                x = block(x)
            else:
                x, x_vv = self._dual_block(block, x, x if x_vv is None else x_vv, impl)
            if index + 1 in taps:
                tapped[index + 1] = x
        return TokenOutput(x, x_vv, num_prompts, tapped)

    def forward_features(
        self, images: torch.Tensor, *, dual: bool = True, prompts: bool = True, taps: tuple[int, ...] = ()
    ) -> EncoderOutput:
        """images (B, 3, H, W) normalised -> EncoderOutput. One pass yields every requested tap."""
        out = self.forward_tokens(images, dual=dual, prompts=prompts, taps=taps)
        features = out.tokens if out.tokens_vv is None else out.tokens_vv
        return EncoderOutput(
            scene=self.project(out.tokens[:, 0]),
            patches=self.project(features[:, out.patch_start :]),
            grid=self.grid,
            taps=out.taps,
        )

    def _dual_block(self, block: nn.Module, x: torch.Tensor, x_vv: torch.Tensor, impl: str):
        """One block of both paths from one shared qkv projection of the original path."""
        batch, tokens, width = x.shape
        heads = self.layout.heads
        qkv = seam.qkv(block, x)  # (B, N, 3W)
        q, k, v = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # (B, H, N, D)
        out, out_vv = dual_path_attention(q, k, v, impl=impl)
        x = seam.mlp_residual(block, x + seam.attention_out(block, out))
        x_vv = x_vv + seam.attention_out(block, out_vv)  # second path: attention only, residual
        return x, x_vv

    def category_tokens(self, taps: dict[int, torch.Tensor], text: torch.Tensor) -> dict[int, torch.Tensor]:
        """VCT per tap: cross-attention(text query, tap tokens) projected to the joint space, (B, E)."""
        return {t: self.project(self.cross_attn[str(t)](text, tokens)) for t, tokens in taps.items()}

    # ---- threshold ----------------------------------------------------------------------
    def threshold(self) -> torch.Tensor:
        return 0.4 + 0.5 * torch.sigmoid(self.theta)

    def isolate(self, ink: torch.Tensor, maps: torch.Tensor, *, sharpness: float = 50.0, isolation: str = "binary",
                hard: bool = False) -> torch.Tensor:
        """Keep the ink of one category per map (method.md Level II, step 3).

        ink (B, 1, H, W) in [0, 1] with ink = 1 (one minus the grey raster); maps (B, C, H, W) min-max
        normalised similarity. Returns (B, C, H, W) grey sketches (paper = 1): 1 - strength * cut.
        cut = sigmoid((map - t) * sharpness): a steep sigmoid in place of the hard cut map >= t, so
        the threshold t receives a gradient; `hard` takes the hard cut instead (t gets no gradient:
        the "no threshold" ablation). strength, by `isolation`:
        - "binary" (the reference's): binary ink, ink >= 0.5 (grey <= 0.5, the reference's
          tensor_to_binary_img), so the kept strokes stay at full strength;
        - "scaled": ink * map, which fades kept strokes where the map is low.
        """
        threshold = self.threshold()
        if hard:
            cut = (maps >= threshold.detach()).to(maps.dtype)
        else:
            cut = torch.sigmoid((maps - threshold) * sharpness)
        if isolation == "binary":
            strength = (ink >= 0.5).to(maps.dtype)
        elif isolation == "scaled":
            strength = ink * maps
        else:
            raise ValueError(f"unknown isolation {isolation!r}; use binary or scaled")
        return 1.0 - strength * cut

    # ---- text ---------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """texts -> (T, E) L2-normalised text embeddings (frozen text tower), computed on the tokens up to
        the longest prompt's end (equal to the full context up to float rounding, several times faster)."""
        device = self.prompts.device
        tokens = seam.tokenizer(self.config.clip_model)(texts).to(device)
        return F.normalize(seam.encode_text_prefix(self.clip, tokens).float(), dim=-1)

    # ---- fine-tuning --------------------------------------------------------------------
    def trainable_names(self) -> list[str]:
        """Names of the parameters the paper fine-tunes: visual LayerNorms, prompts, cross-attention, theta."""
        norm_params = {
            f"clip.visual.{module_name}.{p}".replace("..", ".")
            for module_name, module in self.clip.visual.named_modules()
            if isinstance(module, nn.LayerNorm)
            for p, _ in module.named_parameters(recurse=False)
        }
        return [
            name
            for name, _ in self.named_parameters()
            if name in norm_params or name.startswith(("prompts", "theta", "cross_attn."))
        ]

    def set_num_prompts(self, count: int) -> None:
        """Resize the prompt tokens (keeps the first ones; new ones drawn like at construction)."""
        old = self.prompts.data
        if count == old.shape[0]:
            return
        new = self._new_prompts(count).to(dtype=old.dtype, device=old.device)
        new[: min(count, old.shape[0])] = old[:count]
        self.prompts = nn.Parameter(new, requires_grad=self.prompts.requires_grad)

    def freeze_for_finetuning(self) -> "SketchCLIP":
        trainable = set(self.trainable_names())
        for name, param in self.named_parameters():
            param.requires_grad_(name in trainable)
        return self


def images_to_tensor(images, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, H, W) grey float images in [0, 1] (numpy or tensor) -> (B, 3, H, W) CLIP-normalised tensor."""
    x = torch.as_tensor(images, dtype=torch.float32, device=device)
    if x.ndim == 2:
        x = x[None]
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return ((x[:, None].expand(-1, 3, -1, -1) - mean) / std).to(dtype)
