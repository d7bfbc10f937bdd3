"""torch.compile for the image encoder, and the allocator setting that keeps CPU inference free of page faults.

    model = compile_encoder(create_encoder("ViT-B-16"))   # same object, forward_features now compiled
    model.forward_features(images)                         # first call per shape compiles, later calls reuse

What is compiled: `SketchCLIP.forward_features` (patch embedding, prompts, the block stack with the v-v dual path,
ln_post + proj) as one graph: `fullgraph=True` turns any graph break into an error instead of a silent slow path.
The fused kernel is the custom op `sketchkit::dual_attention`, which inductor calls as an opaque kernel, and the
sdpa/eager implementations are plain aten ops, so every `SKETCHKIT_VV_IMPL` choice traces without breaks. The text
tower is left alone: it runs once per label and is cached by the segmenters.

Shapes: `dynamic=False` specialises the graph to each input shape; each new (batch size, dual, prompts, taps)
combination compiles once (seconds for the tiny model, about a minute for ViT-B/16 on a 2-core CPU) and then reuses
its graph. A run whose last batch is smaller pays one extra compile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import sys
from typing import Callable

import torch

from ..errors import UsageError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Inductor caches one graph per guard set on the forward_features code object; benchmarks sweep several batch sizes
# and implementations, so allow more than torch's default of 8 before it falls back to eager.
RECOMPILE_LIMIT = 64


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_compiler(device: torch.device, backend: str) -> None:
    """Inductor on CPU writes and builds C++; fail early and readably when no compiler is installed."""
    if backend != "inductor" or device.type != "cpu":
        return
    candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
    if not any(c and shutil.which(c) for c in candidates):
        raise UsageError("torch.compile on CPU needs a C++ compiler (g++ or clang++, or $CXX); install one or run "
                         "without compiling", hint="compile")


def compiled_forward(
    model: torch.nn.Module,
    *,
    mode: str | None = None,
    dynamic: bool | None = False,
    fullgraph: bool = True,
    backend: str = "inductor",
) -> Callable:
    """A compiled version of `model.forward_features` (same signature and EncoderOutput), leaving `model` untouched.

    mode: None/"default", "reduce-overhead" (CUDA graphs), "max-autotune", "max-autotune-no-cudagraphs".
    Raises UsageError for an unknown mode or a CPU machine without a C++ compiler.
    """
    if mode is not None and mode not in COMPILE_MODES:
        raise UsageError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    _check_compiler(_model_device(model), backend)
    # inductor's C++ build warns "No CUDA runtime is found" on CPU-only machines: noise for our users
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    dynamo_config = torch._dynamo.config
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    forward = type(model).forward_features.__get__(model)  # the class's method, even when already compiled
    return torch.compile(forward, mode=None if mode == "default" else mode, dynamic=dynamic, fullgraph=fullgraph,
                         backend=backend)


def compile_encoder(
    model: torch.nn.Module,
    *,
    mode: str | None = None,
    dynamic: bool | None = False,
    fullgraph: bool = True,
    backend: str = "inductor",
) -> torch.nn.Module:
    """Compile `model.forward_features` in place and return `model` (a SketchCLIP; weights and API unchanged).

    Idempotent: an already compiled model is returned as is. Outputs equal the eager ones within float rounding
    (inductor fuses and reorders elementwise work). Options as in `compiled_forward`.
    """
    if is_compiled(model):
        return model
    model.forward_features = compiled_forward(model, mode=mode, dynamic=dynamic, fullgraph=fullgraph, backend=backend)
    return model


def is_compiled(model: torch.nn.Module) -> bool:
    """True when `compile_encoder` has replaced this model's forward_features."""
    return "forward_features" in vars(model)


# ---- allocator ---------------------------------------------------------------------------------------------------

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20  # activations of ViT-B/16 up to batch 64 (MLP hidden: 157 MB) stay on the heap
TRIM_THRESHOLD_BYTES = 512 << 20  # freed heap memory kept for the next call instead of returned to the kernel


def tune_malloc() -> bool:
    """Keep large CPU tensors on the glibc heap and stop returning freed memory to the kernel after every call.

    By default glibc serves blocks above a (dynamic, at most 32 MB) threshold with fresh mmaps and trims the heap
    top after frees, so every encoder call page-faults its activations in again: at batch 8 on ViT-B/16 about
    230,000 minor faults per call, ~10% of the call. Raising M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (the same as
    MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ in the environment) removes them, at the cost of the process
    keeping up to TRIM_THRESHOLD_BYTES of freed memory. Call once at start-up, before the model runs.

    Returns True when applied; False (and does nothing) off glibc Linux or when the user set MALLOC_* variables.
    """
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
