"""The reference architecture: what the official code runs at inference, for imported checkpoints.

AhmedBourouis/Scene-Sketch-Segmentation at af751b1 (`models/our_model.py` 274-462, `models/ca.py`),
as `test.py` calls it (`encode_image(..., layers=[12], mode="test")`):

1. `SketchCLIP` (open_clip CLIP): prompts inserted after the class token before `ln_pre`
   ([CLS, P prompts, patches]), blocks 1-6 standard, blocks 7-12 the v-v dual path (the v-v path
   starts from block 7's input and has no MLP and no norm of its own).
2. After the last block, the reference's cross-attention (`ReferenceCrossAttention`, ca.py's
   `encoder.layer2.0` with its `text_projection`) on each path, same weights.
3. The v-v path's class token replaced by the original path's (our_model.py 456).
4. `ln_post` and `proj` on all tokens: (B, 1 + P + grid^2, E) visual features.

The cross-attention's key is the class's text feature repeated once per image token, so every row of
its scores is one value repeated: the softmax is uniform (exactly 1/N) whatever the query, and every
token receives the mean of the value projections. The output therefore does not depend on the text
or the class (test.py's T class copies are bitwise identical), and the model computes it once per
image (`ReferenceCrossAttention.forward`); `forward_literal` runs the reference's own arithmetic
with a text vector, for tests. The query and key projections and `text_projection` thus never
change the result; they are still carried (an import is lossless), and so are their values.

Sizes come from the weights: the vision tower's from the base state dict (heads = width // 64, the
reference's rule), the prompt count from the checkpoint, the cross-attention's width and feed-forward
width from its tensors. Its head count is ca.py's constant 8, which the output does not depend on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import openclip_seam as seam
from .encoder import BackboneConfig, SketchCLIP

CA_HEADS = 8  # models/ca.py 153: Cross_Attention(h=8, ...)
CA_EPS = 1e-6  # models/ca.py 20: its LayerNorm's eps, added to the (unbiased) std
DUAL_BLOCKS = 6  # our_model.py 402/414: surgery on the last 6 blocks
REFERENCE_BLOCKS = 12  # test.py 71 layers=[12]: the cross-attention runs after block 12


class CaLayerNorm(nn.Module):
    """ca.py's LayerNorm: a * (x - mean) / (std + eps) + b, std UNBIASED (torch.std's default), eps 1e-6."""

    def __init__(self, features: int, eps: float = CA_EPS):
        super().__init__()
        self.a = nn.Parameter(torch.ones(features))
        self.b = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a * (x - mean) / (std + self.eps) + self.b


class _Linears(nn.Module):
    """ca.py MultiHeadedAttention's parameters: linears 0-3 = query, key, value, output projections."""

    def __init__(self, width: int):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(4))


class _FeedForward(nn.Module):
    """ca.py PositionwiseFeedForward: w_2(relu(w_1(x))) (dropout is off at inference)."""

    def __init__(self, width: int, d_ff: int):
        super().__init__()
        self.w_1 = nn.Linear(width, d_ff)
        self.w_2 = nn.Linear(d_ff, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.relu(self.w_1(x)))


class _AddNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = CaLayerNorm(width)


class ReferenceCrossAttention(nn.Module):
    """ca.py `Cross_Attention` as test.py runs it: `text_projection` plus `encoder.layer2[0]`.

    Parameter names are the checkpoint's below `visual.transformer.ca.encoder.layer2.0.` (and
    `text_projection.*` below `visual.transformer.ca.`), so an import is a prefix change.
    Layer (post-norm): y = norm_0(x + attn(q=x, k=text, v=x)); out = norm_1(y + ff(y)).
    """

    def __init__(self, width: int, embed_dim: int, d_ff: int, heads: int = CA_HEADS):
        super().__init__()
        if width % heads:
            raise ValueError(f"cross-attention width {width} is not divisible by its {heads} heads")
        self.heads = heads
        self.text_projection = nn.Linear(embed_dim, width)
        self.self_attn = _Linears(width)
        self.feed_forward = _FeedForward(width, d_ff)
        self.sublayer = nn.ModuleList(_AddNorm(width) for _ in range(2))

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        y = self.sublayer[0].norm(x + attended)
        return self.sublayer[1].norm(y + self.feed_forward(y))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, W) -> (B, N, W), for any text: the uniform softmax gives every token the mean
        of the value projections, then the output projection."""
        linears = self.self_attn.linears
        mean_value = linears[2](tokens).mean(dim=1, keepdim=True)  # (B, 1, W)
        return self._finish(tokens, linears[3](mean_value).expand_as(tokens))

    def forward_literal(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The reference's arithmetic: tokens (B, N, W), text (B, E) one text feature per image, used
        as every key row (our_model.py 322). Returns (B, N, W), equal to `forward(tokens)`."""
        batch, count, width = tokens.shape
        d_k = width // self.heads
        linears = self.self_attn.linears
        key_in = self.text_projection(text.to(tokens.dtype)).unsqueeze(1).expand(batch, count, width)

        def split(x):  # (B, N, W) -> (B, H, N, d_k)
            return x.view(batch, -1, self.heads, d_k).transpose(1, 2)

        q, k, v = split(linears[0](tokens)), split(linears[1](key_in)), split(linears[2](tokens))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(d_k)
        attended = torch.matmul(F.softmax(scores, dim=-1), v).transpose(1, 2).contiguous().view(batch, -1, width)
        return self._finish(tokens, linears[3](attended))


@dataclass(frozen=True)
class ReferenceSizes:
    """Sizes of a reference model, all read from weights (see the module docstring).

    vision_*: the CLIP vision tower (heads = width // 64); text_*: the text tower; embed_dim: joint
    space E; num_prompts: prompt tokens P; ca_width / ca_heads / ca_d_ff: the cross-attention.
    """

    vision_width: int
    vision_layers: int
    vision_heads: int
    patch: int
    image_size: int
    embed_dim: int
    context_length: int
    vocab_size: int
    text_width: int
    text_heads: int
    text_layers: int
    num_prompts: int
    ca_width: int
    ca_heads: int
    ca_d_ff: int

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch
        return side, side

    @property
    def tokens(self) -> int:
        """N = 1 + P + grid^2 tokens per image (200 for ViT-B/16 with 3 prompts)."""
        return 1 + self.num_prompts + self.grid[0] * self.grid[1]

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ReferenceModel(nn.Module):
    """The reference's inference network (module docstring). Eval mode, float32 unless moved.

    encoder:         SketchCLIP (open_clip CLIP + prompts + v-v dual path in the last 6 blocks).
    cross_attention: ReferenceCrossAttention, applied after block 12 to both paths.
    """

    def __init__(self, clip: nn.Module, sizes: ReferenceSizes, *, backbone: str = "reference", vv_impl: str | None = None):
        super().__init__()
        if sizes.vision_layers != REFERENCE_BLOCKS:
            raise ValueError(f"the reference runs its cross-attention after block {REFERENCE_BLOCKS} of a "
                             f"{REFERENCE_BLOCKS}-block tower; this one has {sizes.vision_layers}")
        # clip_model only names SketchCLIP's own tokenizer (OpenAI's BPE); the reference's text path is encode_text_raw
        config = BackboneConfig(name=backbone, clip_model="ViT-B-16-quickgelu", pretrained=None,
                                num_prompts=sizes.num_prompts, dual_blocks=DUAL_BLOCKS, taps=(),
                                description="reference architecture (imported checkpoint)")
        with torch.random.fork_rng(devices=[]):
            self.encoder = SketchCLIP(clip, config, vv_impl=vv_impl)
        self.cross_attention = ReferenceCrossAttention(sizes.ca_width, sizes.embed_dim, sizes.ca_d_ff, sizes.ca_heads)
        self.sizes = sizes
        self.weights_source = "random weights"
        self.fingerprint = ""
        self.eval()

    @property
    def config(self) -> BackboneConfig:
        """The backbone config of the encoder (its `name` is the backbone the checkpoint was imported onto)."""
        return self.encoder.config

    @property
    def patch_start(self) -> int:
        """Index of the first patch token (1 + P)."""
        return 1 + self.sizes.num_prompts

    @property
    def grid(self) -> tuple[int, int]:
        return self.sizes.grid

    @property
    def input_size(self) -> int:
        return self.sizes.image_size

    @property
    def device(self) -> torch.device:
        return self.encoder.prompts.device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, 224, 224) CLIP-normalised -> (B, N, E) visual features, tokens [CLS, prompts,
        patches]: test.py's `encode_image(...)[0, c]` for every class copy c (they are all equal)."""
        out = self.encoder.forward_tokens(images.to(self.device, self.encoder.prompts.dtype), dual=True, prompts=True)
        original = self.cross_attention(out.tokens)  # (B, N, W)
        vv = self.cross_attention(out.tokens_vv)
        vv = torch.cat([original[:, :1], vv[:, 1:]], dim=1)  # our_model.py 456: CLS from the original path
        return self.encoder.project(vv)

    def encode_text_raw(self, texts: list[str]) -> torch.Tensor:
        """texts -> (n, E) text embeddings as `encode_text` returns them (not normalised)."""
        tokens = seam.openai_tokenizer(self.sizes.context_length)(texts).to(self.device)
        return seam.encode_text_prefix(self.encoder.clip, tokens).float()


def reference_sizes(base_sizes: dict, *, num_prompts: int, ca_width: int, ca_d_ff: int, ca_heads: int = CA_HEADS) -> ReferenceSizes:
    """ReferenceSizes from `openclip_seam.openai_state_sizes(base)` and the checkpoint's prompt and
    cross-attention shapes."""
    return ReferenceSizes(**base_sizes, num_prompts=num_prompts, ca_width=ca_width, ca_heads=ca_heads, ca_d_ff=ca_d_ff)
