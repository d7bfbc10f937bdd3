"""Triton kernels, one file per kernel, each with its plain-PyTorch reference and a benchmark under __main__.

Importable without triton: the references still work and TRITON_AVAILABLE is False. Note that the name
`dual_attention` here is the function; the module is `sketchkit.kernels.dual_attention` in `from ... import`.
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
