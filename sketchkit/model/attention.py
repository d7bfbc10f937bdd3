"""The dual-path (v-v) attention behind one switch: eager (the spec), sdpa, triton (fused kernel).

method.md, "Dual path": per head, the original path is softmax(q k^T / sqrt(d)) v and the second path is
softmax(v v^T / sqrt(d)) v, with the *same* v. Three implementations compute the same thing:

- ``eager``: explicit matmul * scale, softmax in fp32, matmul (`dual_attention_ref`, the readable reference that the
  kernel tests also use);
- ``sdpa``: two `torch.nn.functional.scaled_dot_product_attention` calls, the second one as sdpa(v, v, v);
- ``triton``: one fused Triton launch for both paths (`sketchkit.kernels.dual_attention`), CUDA only.

The choice: an explicit name, else the environment variable SKETCHKIT_VV_IMPL (eager|sdpa|triton|auto), else auto,
which picks triton for CUDA tensors when triton is importable and sdpa otherwise. Auto never picks the Triton
interpreter; an explicit "triton" on CPU works only when TRITON_INTERPRET=1 was set before sketchkit was imported
(for tests), and is a UsageError otherwise.

All tensors are (B, H, N, D) = (batch, head, token, head dim), any strides; outputs keep the input dtype.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from sketchkit.errors import UsageError
from sketchkit.kernels.dual_attention import KERNEL_INTERPRETED, TRITON_AVAILABLE, dual_attention_ref, vv_attention_ref
from sketchkit.kernels.dual_attention import dual_attention as dual_attention_fused
from sketchkit.kernels.dual_attention import vv_attention as vv_attention_fused

IMPLS = ("eager", "sdpa", "triton")
ENV_VAR = "SKETCHKIT_VV_IMPL"


def resolve_impl(name: str | None = None, device: torch.device | str | None = None) -> str:
    """The implementation to run: one of IMPLS.

    name: "eager", "sdpa", "triton", "auto" or None (then SKETCHKIT_VV_IMPL, then "auto"). device: where the tensors
    live; "auto" picks "triton" for a CUDA device (None: the machine has CUDA) when triton is importable, else "sdpa".
    Raises UsageError for an unknown name, and for "triton" where it cannot run (no triton, or a non-CUDA device
    without TRITON_INTERPRET=1).
    """
    source = "impl" if name is not None else ENV_VAR
    requested = (name if name is not None else os.environ.get(ENV_VAR) or "auto").strip().lower()
    if requested not in (*IMPLS, "auto"):
        valid = ", ".join((*IMPLS, "auto"))
        raise UsageError(f"unknown v-v attention implementation {requested!r} (from {source}); choose one of {valid}")
    on_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if requested == "auto":
        return "triton" if TRITON_AVAILABLE and on_cuda and not KERNEL_INTERPRETED else "sdpa"
    if requested == "triton":
        if not TRITON_AVAILABLE:
            raise UsageError(
                f"v-v attention 'triton' (from {source}) needs the `triton` package; install it or choose sdpa"
            )
        if not on_cuda and not KERNEL_INTERPRETED:
            raise UsageError(
                f"v-v attention 'triton' (from {source}) runs on CUDA tensors only, these are on {device or 'cpu'}; "
                "choose sdpa (or eager) on CPU"
            )
    return requested


def dual_path_attention(q: Tensor, k: Tensor, v: Tensor, *, impl: str | None = None) -> tuple[Tensor, Tensor]:
    """Both paths of a dual block: (softmax(q k^T s) v, softmax(v v^T s) v), s = D ** -0.5.

    q, k, v: (B, H, N, D), one dtype and device, any strides (e.g. views of a packed qkv projection).
    impl: see `resolve_impl`. Returns (out_orig, out_vv), each (B, H, N, D) in the input dtype. Differentiable.
    """
    impl = resolve_impl(impl, v.device)
    if impl == "eager":
        return dual_attention_ref(q, k, v)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(v, v, v)
    return dual_attention_fused(q, k, v)


def vv_attention(v: Tensor, *, impl: str | None = None) -> Tensor:
    """The v-v path alone, softmax(v v^T s) v, for models whose original path runs elsewhere (zero-shot open_clip).

    v: (B, H, N, D); impl as in `dual_path_attention`. Returns (B, H, N, D) in v's dtype. Differentiable.
    """
    impl = resolve_impl(impl, v.device)
    if impl == "eager":
        return vv_attention_ref(v)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(v, v, v)
    return vv_attention_fused(v)
