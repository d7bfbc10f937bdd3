"""Section 2, encoder: images/s of `forward_features` (dual path + prompts, the segmenters' call) per batch size,
eager and torch.compile'd, each with the SDPA dual path and with the fused kernel; achieved GFLOP/s from the
analytic `encoder_flops` as a share of the matmul ceiling measured in the same run; peak memory per row.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch

from .report import Ceiling, EncoderRow
from .timing import PeakMemory, triton_timeable

VIT_B16_GFLOP = 35.1  # published cost of one 224 px image through plain ViT-B/16 (no dual path, no prompts)
ENCODER_VARIANTS = (("eager", "sdpa"), ("compiled", "sdpa"), ("eager", "triton"), ("compiled", "triton"))
NO_GPU = "n/a: no CUDA GPU"  # the Triton interpreter is never timed


def encoder_flops(model, *, dual: bool = True, prompts: bool = True) -> int:
    """FLOPs (2 per multiply-add) of one image through `model.forward_features(dual=, prompts=)`.

    Counts the matmuls, as the 35.1 GFLOP figure of ViT-B/16 does: patch embedding, per block the qkv projection,
    q k^T and (probabilities) v, output projection and MLP; per dual block also v v^T, its (probabilities) v and
    the second output projection; ln_post + proj of the class and patch tokens. Norms, softmax and GELU are left out.
    Sizes come from `model.layout` (the open_clip seam's `VisionLayout`).
    """
    lay = model.layout
    width, patches = lay.width, lay.grid[0] * lay.grid[1]
    tokens = 1 + patches + (model.prompts.shape[0] if prompts else 0)
    dual_blocks = model.config.dual_blocks if dual else 0
    total = 2 * patches * lay.channels * lay.patch * lay.patch * width  # patch embedding
    attention = 2 * 2 * tokens * tokens * width  # scores and weighted values, all heads
    projection = 2 * tokens * width * width
    block = 3 * projection + attention + projection + 2 * 2 * tokens * width * lay.mlp_width
    total += lay.blocks * block + dual_blocks * (attention + projection)
    total += 2 * (1 + patches) * width * lay.embed_dim  # ln_post + proj
    return total


def with_impl(model, impl: str):
    """A shallow copy of a SketchCLIP sharing every weight, whose dual path uses `impl`."""
    view = copy.copy(model)
    view.vv_impl = impl
    view.__dict__.pop("forward_features", None)  # drop a compiled forward_features of the original
    return view


def bench_encoder(encoder, batches: Sequence[int], device: torch.device, dtype: torch.dtype, *, timer: Callable,
                  memory: PeakMemory, ceiling: Ceiling | None, compile: bool = True, compile_mode: str | None = None,
                  compile_backend: str = "inductor", on_progress: Callable[[str], None] | None = None) -> list[EncoderRow]:
    """One row per (variant, impl) of ENCODER_VARIANTS and batch size; rows that cannot be timed here say why."""
    from ..model.compile import compiled_forward

    rows = []
    for variant, impl in ENCODER_VARIANTS:
        if impl == "triton" and not triton_timeable(device):
            rows += [EncoderRow(variant, impl, b, *([None] * 7), note=NO_GPU) for b in batches]
            continue
        if variant == "compiled" and not compile:
            rows += [EncoderRow(variant, impl, b, *([None] * 7), note="not measured (compile off)") for b in batches]
            continue
        model = with_impl(encoder, impl)
        forward = model.forward_features
        if variant == "compiled":
            forward = compiled_forward(model, mode=compile_mode, backend=compile_backend)
        traced_only = variant == "compiled" and compile_backend != "inductor"
        note = "trace only (aot_eager backend), not a speed figure" if traced_only else ""
        for batch in batches:
            if on_progress:
                on_progress(f"encoder: {variant} + {impl}, batch {batch}")
            rows.append(_encoder_row(forward, encoder, variant, impl, batch, device, dtype, timer=timer,
                                     memory=memory, ceiling=ceiling, note=note))
    return rows


def _encoder_row(forward, encoder, variant: str, impl: str, batch: int, device: torch.device, dtype: torch.dtype, *,
                 timer: Callable, memory: PeakMemory, ceiling: Ceiling | None, note: str) -> EncoderRow:
    """Time `forward` on one batch of random images (a compiled variant's first call is its compile time)."""
    generator = torch.Generator(device=device).manual_seed(batch)
    lay = encoder.layout
    images = torch.randn(batch, lay.channels, lay.image_size, lay.image_size, device=device, generator=generator)
    autocast = dtype != torch.float32

    def call():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
            return forward(images)

    memory.reset()
    compile_s = None
    if variant == "compiled":
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_s = time.perf_counter() - start
    seconds = timer(call)
    achieved = encoder_flops(encoder) * batch / seconds / 1e9
    return EncoderRow(
        variant=variant, impl=impl, batch=batch, seconds=seconds, images_per_s=batch / seconds,
        seconds_per_image=seconds / batch, gflops=achieved,
        ceiling_fraction=achieved / ceiling.gflops if ceiling else None, peak_memory_mb=memory.megabytes(),
        compile_s=compile_s, note=note,
    )
