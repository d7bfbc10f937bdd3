"""Triton kernels, one file per kernel, each with its plain-PyTorch reference; their speed is measured by
`sketchkit bench` (each file's `__main__` runs its section).

Importable without triton: the references still work and TRITON_AVAILABLE is False. Errors are a programmer's:
launchers raise ValueError for inputs a kernel cannot take (shape, dtype, device, strides, head size) and
RuntimeError when triton is missing; they never raise sketchkit's user-facing errors (sketchkit.errors), which are
for choices a user makes (sketchkit.model.attention turns an impossible SKETCHKIT_VV_IMPL into one).

Note that the name `dual_attention` here is the function; the module is `sketchkit.kernels.dual_attention` in
`from ... import`.
"""

from .dual_attention import (
    TRITON_AVAILABLE,
    dual_attention,
    dual_attention_ref,
    dual_attention_triton,
    vv_attention,
    vv_attention_ref,
    vv_attention_triton,
)

__all__ = [
    "TRITON_AVAILABLE",
    "dual_attention",
    "dual_attention_ref",
    "dual_attention_triton",
    "vv_attention",
    "vv_attention_ref",
    "vv_attention_triton",
]
