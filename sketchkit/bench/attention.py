"""Section 1, attention: the dual path alone at the encoder's own shape.

Four candidates per batch size, each a forward of (B, H, N, D) views of a packed (B, N, 3, H, D) projection, as the
encoder passes them: the fused Triton kernel (`dual_attention_triton`, CUDA only), the eager dual path
(`dual_attention_ref`), two SDPA calls (the sdpa impl), and one SDPA call (the original path alone: the cost of a
block without the v-v path, the unit of the ratios). This is the benchmark of `kernels/dual_attention.py`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .report import AttentionRow
from .timing import ratio, triton_timeable

NO_FUSED = "fused kernel: n/a without a CUDA GPU (the Triton interpreter is never timed)"


def packed_qkv(batch: int, tokens: int, heads: int, head_dim: int, device: torch.device, dtype: torch.dtype):
    """q, k, v: (B, H, N, D) views of one random (B, N, 3, H, D) tensor (seeded by the batch size)."""
    generator = torch.Generator(device=device).manual_seed(batch)
    qkv = torch.randn(batch, tokens, 3, heads, head_dim, device=device, dtype=dtype, generator=generator)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def candidates(q, k, v, *, fused: bool) -> dict[str, Callable[[], object]]:
    """The timed calls by column name; "fused" only where the kernel can be timed."""
    from ..kernels.dual_attention import dual_attention_ref, dual_attention_triton

    calls: dict[str, Callable[[], object]] = {}
    if fused:
        calls["fused"] = lambda: dual_attention_triton(q, k, v)
    calls["eager"] = lambda: dual_attention_ref(q, k, v)
    calls["2x SDPA"] = lambda: (F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(v, v, v))
    calls["1x SDPA"] = lambda: F.scaled_dot_product_attention(q, k, v)
    return calls


def fused_error(q, k, v) -> float:
    """Largest |fused - fp32 reference| over both outputs."""
    from ..kernels.dual_attention import dual_attention_ref, dual_attention_triton

    reference = dual_attention_ref(q, k, v, upcast=True)
    return max((out.float() - ref).abs().max().item() for out, ref in zip(dual_attention_triton(q, k, v), reference))


def bench_attention(batches: Sequence[int], heads: int, tokens: int, head_dim: int, device: torch.device,
                    dtype: torch.dtype, timer: Callable[[Callable[[], object]], float]) -> list[AttentionRow]:
    """Median ms of each candidate per batch size, and the ratios to one SDPA call. `timer` gives seconds."""
    fused = triton_timeable(device)
    rows = []
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with on_device, torch.no_grad():
        for batch in batches:
            q, k, v = packed_qkv(batch, tokens, heads, head_dim, device, dtype)
            ms = {name: timer(call) * 1e3 for name, call in candidates(q, k, v, fused=fused).items()}
            fused_ms, eager, two, one = ms.get("fused"), ms["eager"], ms["2x SDPA"], ms["1x SDPA"]
            rows.append(AttentionRow(
                batch=batch, heads=heads, tokens=tokens, head_dim=head_dim, dtype=str(dtype).replace("torch.", ""),
                fused_ms=fused_ms, eager_ms=eager, sdpa2_ms=two, sdpa1_ms=one,
                fused_max_error=fused_error(q, k, v) if fused else None,
                eager_vs_sdpa1=eager / one, sdpa2_vs_sdpa1=two / one, fused_vs_sdpa1=ratio(fused_ms, one),
                eager_vs_fused=ratio(eager, fused_ms), note="" if fused else NO_FUSED,
            ))
    return rows
