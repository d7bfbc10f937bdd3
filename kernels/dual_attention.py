"""Fused dual-path attention: the original path softmax(q k^T s) v and the v-v path softmax(v v^T s) v in one launch.

The v-v path of CLIP Surgery (method.md, "Dual path") attends from the value projection to itself and shares that
value projection with the original path. One Triton program handles BLOCK_M query rows of one (batch, head): it
loads its rows of q and of v once, then walks the key/value tiles; each V tile is read once and serves as the key
of the v-v path and as the value of both paths. Each path keeps its own online softmax (running max and sum, exp2
with log2(e) folded into the scale) and an fp32 accumulator, flash-attention style.

This file holds, as style.md asks for every kernel: the kernel, the launcher that checks its inputs before
launching (`dual_attention_triton`, `vv_attention_triton`), the plain-PyTorch reference the eager path also uses
(`dual_attention_ref`, `vv_attention_ref`), torch custom ops with fake and autograd registrations
(`dual_attention`, `vv_attention`). Its benchmark is a section of `sketchkit bench` (sketchkit/bench/attention.py:
fused vs eager vs one and two SDPA calls at the encoder's shape), which `__main__` runs:

    python kernels/dual_attention.py      # = sketchkit bench --sections attention (the fused column needs CUDA)

Errors: the launchers raise ValueError, before launching anything, for inputs the kernel cannot take (shape,
dtype, device, head dim, sizes past 32-bit offsets), and RuntimeError when triton is not installed. Choosing an
implementation the user can act on (SKETCHKIT_VV_IMPL) is sketchkit.model.attention's job.

Backward: there is no Triton backward. The custom ops' backward recomputes the attention probabilities from the
saved q, k, v in fp32 with the reference math and applies the textbook softmax-attention gradient (one (N, N)
matrix per head and path): exact math in fp32, traceable by torch.compile; memory O(B H N^2), which is small at N ~ 200.

Layout: every tensor is (B, H, N, D) = (batch, head, token, head dim), any strides (e.g. views of a packed
(B, N, 3, H, D) qkv projection). Outputs have the input dtype and are (B, H, N, D) views of (B, N, H, D) memory,
so `out.transpose(1, 2).reshape(B, N, H * D)` before the output projection is free.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # the references and the error paths below still work without triton
    triton = None
    tl = None
    InterpretedFunction = None

TRITON_AVAILABLE = triton is not None
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LOG2E = 1.4426950408889634
MAX_GRID_Y = 65535  # CUDA limit on the second grid axis, which enumerates (batch, head)
# Tiles under TRITON_INTERPRET=1: large enough for few numpy calls; N=200 still spans 4 query blocks x 7 key tiles.
INTERPRETER_BLOCK_M, INTERPRETER_BLOCK_N = 64, 32


# ----------------------------------------------------------------------------------------------------------------
# Reference (plain PyTorch): the spec, and the eager path of sketchkit.model.attention
# ----------------------------------------------------------------------------------------------------------------


def _softmax_attention(query: Tensor, key: Tensor, value: Tensor, scale: float) -> Tensor:
    """softmax(query key^T * scale) value with the softmax in fp32; matmuls in the input dtype. (..., N, D)."""
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., N, N)
    probs = scores.float().softmax(dim=-1).to(value.dtype)
    return probs @ value


def default_scale(head_dim: int, scale: float | None = None) -> float:
    """The softmax scale: `scale` when given, else head_dim ** -0.5."""
    return float(head_dim) ** -0.5 if scale is None else float(scale)


def dual_attention_ref(
    q: Tensor, k: Tensor, v: Tensor, scale: float | None = None, *, upcast: bool = False
) -> tuple[Tensor, Tensor]:
    """Both paths in plain PyTorch. q, k, v: (B, H, N, D), same dtype.

    Returns (out_orig, out_vv), each (B, H, N, D): softmax(q k^T * scale) v and softmax(v v^T * scale) v, with
    scale = D ** -0.5 by default. Matmuls run in the input dtype and the softmax in fp32; with upcast=True all of it
    runs in fp32 and the outputs are fp32 (the accuracy reference for the kernel tests). Differentiable.
    """
    scale = default_scale(q.shape[-1], scale)
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    return _softmax_attention(q, k, v, scale), _softmax_attention(v, v, v, scale)


def vv_attention_ref(v: Tensor, scale: float | None = None, *, upcast: bool = False) -> Tensor:
    """The v-v path alone, softmax(v v^T * scale) v, (B, H, N, D); same conventions as `dual_attention_ref`."""
    scale = default_scale(v.shape[-1], scale)
    if upcast:
        v = v.float()
    return _softmax_attention(v, v, v, scale)


# ----------------------------------------------------------------------------------------------------------------
# Triton kernel
# ----------------------------------------------------------------------------------------------------------------


def _jit(fn):
    return triton.jit(fn) if TRITON_AVAILABLE else fn


@_jit
def _online_softmax_tile(acc, row_sum, row_max, rows, keys, values, col_ok, qk_scale, DOT_PRECISION: tl.constexpr):
    """One key/value tile of one path: fold softmax(rows keys^T) values into the running (acc, sum, max).

    rows (BLOCK_M, D), keys and values (BLOCK_N, D); qk_scale includes log2(e), so exp2 gives the softmax weights.
    """
    scores = tl.dot(rows, tl.trans(keys), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N) fp32
    scores = tl.where(col_ok[None, :], scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, 1))  # finite: every tile has at least one valid column
    correction = tl.math.exp2(row_max - new_max)
    weights = tl.math.exp2(scores - new_max[:, None])
    row_sum = row_sum * correction + tl.sum(weights, 1)
    acc = tl.dot(weights.to(values.dtype), values, acc * correction[:, None], input_precision=DOT_PRECISION)
    return acc, row_sum, new_max


@_jit
def _tile_ptrs(base, rows, offs_d, stride_n, stride_d):
    """Pointers to a (len(rows), D) tile of one (batch, head) slice starting at `base`."""
    return base + rows[:, None] * stride_n + offs_d[None, :] * stride_d


@_jit
def _dual_attention_fwd(
    Q, K, V, Out, OutVV,  # (B, H, N, D) each, any strides; Q, K, Out unused when WITH_QK is False
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_wb, stride_wh, stride_wn, stride_wd,
    H, N, qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    WITH_QK: tl.constexpr,  # False: the v-v path only
    DOT_PRECISION: tl.constexpr,  # "ieee": fp32 dots without tf32 (fp16/bf16 operands are unaffected)
):
    block_m = tl.program_id(0)
    batch_head = tl.program_id(1)
    batch = batch_head // H
    head = batch_head % H
    offs_m = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N

    q_base = Q + batch * stride_qb + head * stride_qh
    k_base = K + batch * stride_kb + head * stride_kh
    v_base = V + batch * stride_vb + head * stride_vh
    # This program's query rows, loaded once: rows of v for the v-v path, of q for the original one. Padding is 0.
    v_rows = tl.load(_tile_ptrs(v_base, offs_m, offs_d, stride_vn, stride_vd), mask=row_ok[:, None], other=0.0)
    q_rows = v_rows
    if WITH_QK:
        q_rows = tl.load(_tile_ptrs(q_base, offs_m, offs_d, stride_qn, stride_qd), mask=row_ok[:, None], other=0.0)

    max_vv = tl.full([BLOCK_M], float("-inf"), tl.float32)
    sum_vv = tl.zeros([BLOCK_M], tl.float32)
    acc_vv = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    max_qk = tl.full([BLOCK_M], float("-inf"), tl.float32)
    sum_qk = tl.zeros([BLOCK_M], tl.float32)
    acc_qk = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    for start_n in range(0, N, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < N
        # One V tile: key of the v-v path, value of both paths.
        v_tile = tl.load(_tile_ptrs(v_base, cols, offs_d, stride_vn, stride_vd), mask=col_ok[:, None], other=0.0)
        acc_vv, sum_vv, max_vv = _online_softmax_tile(
            acc_vv, sum_vv, max_vv, v_rows, v_tile, v_tile, col_ok, qk_scale, DOT_PRECISION
        )
        if WITH_QK:
            k_tile = tl.load(_tile_ptrs(k_base, cols, offs_d, stride_kn, stride_kd), mask=col_ok[:, None], other=0.0)
            acc_qk, sum_qk, max_qk = _online_softmax_tile(
                acc_qk, sum_qk, max_qk, q_rows, k_tile, v_tile, col_ok, qk_scale, DOT_PRECISION
            )

    out_vv = (acc_vv / sum_vv[:, None]).to(OutVV.dtype.element_ty)
    w_base = OutVV + batch * stride_wb + head * stride_wh
    tl.store(_tile_ptrs(w_base, offs_m, offs_d, stride_wn, stride_wd), out_vv, mask=row_ok[:, None])
    if WITH_QK:
        out_qk = (acc_qk / sum_qk[:, None]).to(Out.dtype.element_ty)
        o_base = Out + batch * stride_ob + head * stride_oh
        tl.store(_tile_ptrs(o_base, offs_m, offs_d, stride_on, stride_od), out_qk, mask=row_ok[:, None])


def _gpu_configs() -> list:
    # num_stages=2 throughout: sm_90 builds with 2 and 3 stages came out identical (this loop is not pipelined).
    return [
        triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=2)
        for block_m in (64, 128)
        for block_n in (32, 64)
        for warps in (4, 8)
    ]


def _prune_configs(configs: list, named_args: dict, **kwargs) -> list:
    """Keep the configs worth timing for this call.

    fp32 runs IEEE dots on CUDA cores (a parity path, not the fast one): one small tile, since the larger ones take
    up to 20 s each to compile. Otherwise drop query blocks far longer than the sequence, and 4-warp programs with
    two 128 x 128 fp32 accumulators (256 registers per thread for those alone: they would spill).
    """
    args = {**named_args, **kwargs}
    if args["V"].dtype == torch.float32:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=8, num_stages=2)]
    seq_len, head_dim = args["N"], args["HEAD_DIM"]
    largest_useful = max(64, triton.next_power_of_2(seq_len))
    kept = [
        c for c in configs
        if c.kwargs["BLOCK_M"] <= largest_useful
        and not (c.kwargs["BLOCK_M"] * head_dim >= 128 * 128 and c.num_warps == 4)
    ]
    return kept or configs[:1]


if TRITON_AVAILABLE:
    _dual_attention_fwd_tuned = triton.autotune(
        _gpu_configs(), key=["N", "HEAD_DIM", "WITH_QK"], prune_configs_by={"early_config_prune": _prune_configs}
    )(_dual_attention_fwd)
    KERNEL_INTERPRETED = isinstance(_dual_attention_fwd, InterpretedFunction)
else:
    _dual_attention_fwd_tuned = None
    KERNEL_INTERPRETED = False


# ----------------------------------------------------------------------------------------------------------------
# Launcher
# ----------------------------------------------------------------------------------------------------------------


def _check_inputs(*tensors: Tensor) -> None:
    """Raise ValueError, before any launch, for what the kernel cannot take (RuntimeError without triton).
    Uses metadata only (fake-tensor safe)."""
    if not TRITON_AVAILABLE:
        raise RuntimeError("the fused attention kernel needs the `triton` package; install it or use impl='sdpa'")
    first = tensors[0]
    for t in tensors:
        if t.dim() != 4:
            raise ValueError(
                f"fused attention expects (batch, heads, tokens, head_dim) tensors, got shape {tuple(t.shape)}"
            )
        if t.shape != first.shape:
            raise ValueError(f"q, k and v must have the same shape, got {[tuple(x.shape) for x in tensors]}")
        if t.dtype != first.dtype or t.device != first.device:
            found = [(x.dtype, str(x.device)) for x in tensors]
            raise ValueError(f"q, k and v must share dtype and device, got {found}")
    if first.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"fused attention supports float32, float16 and bfloat16, got {first.dtype}")
    head_dim = first.shape[-1]
    if head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"fused attention supports head dims {SUPPORTED_HEAD_DIMS}, got {head_dim}; use impl='sdpa'")
    if KERNEL_INTERPRETED and first.dtype == torch.bfloat16:
        raise ValueError("the Triton interpreter cannot do bf16 dots; use float32/float16 under TRITON_INTERPRET=1")
    if first.device.type != "cuda" and not KERNEL_INTERPRETED:
        raise ValueError(
            f"the Triton kernel runs on CUDA tensors, got a {first.device.type} tensor; use impl='sdpa' on CPU "
            "(TRITON_INTERPRET=1 before importing sketchkit runs the kernel in the slow interpreter, for tests)"
        )
    batch, heads = first.shape[:2]
    if batch * heads > MAX_GRID_Y:
        raise ValueError(f"fused attention handles at most {MAX_GRID_Y} (batch x heads) pairs, got {batch * heads}")
    for t in tensors:
        last_offset = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
        if last_offset >= 2**31:
            raise ValueError(
                f"fused attention indexes with 32-bit offsets; a tensor spanning {last_offset + 1} elements is too large"
            )


def _new_output(like: Tensor) -> Tensor:
    """An uninitialised (B, H, N, D) tensor in (B, N, H, D) memory (free transpose back to tokens-major)."""
    batch, heads, seq_len, head_dim = like.shape
    return like.new_empty((batch, seq_len, heads, head_dim)).transpose(1, 2)


def _launch(q: Tensor, k: Tensor, v: Tensor, out: Tensor, out_vv: Tensor, scale: float, with_qk: bool) -> None:
    batch, heads, seq_len, head_dim = v.shape
    if batch * heads * seq_len == 0:
        return
    args = (
        q, k, v, out, out_vv,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *out_vv.stride(),
        heads, seq_len, scale * LOG2E,
    )
    constants = dict(HEAD_DIM=head_dim, WITH_QK=with_qk, DOT_PRECISION="ieee")
    if KERNEL_INTERPRETED:
        grid = (triton.cdiv(seq_len, INTERPRETER_BLOCK_M), batch * heads)
        _dual_attention_fwd[grid](*args, BLOCK_M=INTERPRETER_BLOCK_M, BLOCK_N=INTERPRETER_BLOCK_N, **constants)
    else:
        def grid(meta):
            return (triton.cdiv(seq_len, meta["BLOCK_M"]), batch * heads)

        with torch.cuda.device(v.device):
            _dual_attention_fwd_tuned[grid](*args, **constants)


def dual_attention_triton(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Both paths with the fused kernel (no autograd; use `dual_attention` for that).

    q, k, v: (B, H, N, D), one dtype (fp32/fp16/bf16), one device (CUDA; CPU only under TRITON_INTERPRET=1),
    D in SUPPORTED_HEAD_DIMS, any N >= 0, any strides. Returns (out_orig, out_vv) in the input dtype, (B, H, N, D).
    Raises ValueError for anything else, before launching.
    """
    _check_inputs(q, k, v)
    out, out_vv = _new_output(v), _new_output(v)
    _launch(q, k, v, out, out_vv, default_scale(v.shape[-1], scale), with_qk=True)
    return out, out_vv


def vv_attention_triton(v: Tensor, scale: float | None = None) -> Tensor:
    """The v-v path alone with the same kernel (the q-k path compiled out); same conventions as above."""
    _check_inputs(v)
    out_vv = _new_output(v)
    _launch(v, v, v, v, out_vv, default_scale(v.shape[-1], scale), with_qk=False)
    return out_vv


# ----------------------------------------------------------------------------------------------------------------
# Custom ops: autograd (fp32 recompute, see the module docstring) and torch.compile (fake kernels)
# ----------------------------------------------------------------------------------------------------------------


def _attention_grads(query: Tensor, key: Tensor, value: Tensor, grad_out: Tensor, scale: float):
    """Gradients of softmax(query key^T scale) value w.r.t. (query, key, value), all in fp32. (B, H, N, D) each."""
    query, key, value, grad_out = query.float(), key.float(), value.float(), grad_out.float()
    probs = ((query @ key.transpose(-2, -1)) * scale).softmax(dim=-1)  # (B, H, N, N)
    grad_value = probs.transpose(-2, -1) @ grad_out
    grad_probs = grad_out @ value.transpose(-2, -1)
    grad_scores = probs * (grad_probs - (grad_probs * probs).sum(dim=-1, keepdim=True)) * scale
    return grad_scores @ key, grad_scores.transpose(-2, -1) @ query, grad_value


def _vv_grad(v: Tensor, grad_vv: Tensor, scale: float) -> Tensor:
    """d/dv of softmax(v v^T scale) v: v is query, key and value at once. fp32."""
    grad_query, grad_key, grad_value = _attention_grads(v, v, v, grad_vv, scale)
    return grad_query + grad_key + grad_value


# Registered once per process: `python -m sketchkit.kernels.dual_attention` runs this file a second time as __main__
# after the package import has registered the ops, and that copy reuses them through torch.ops.
if TRITON_AVAILABLE and not hasattr(torch.ops.sketchkit, "dual_attention"):

    @torch.library.custom_op("sketchkit::dual_attention", mutates_args=())
    def _dual_attention_op(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        return dual_attention_triton(q, k, v, scale)

    @_dual_attention_op.register_fake
    def _dual_attention_fake(q, k, v, scale):
        _check_inputs(q, k, v)
        return _new_output(v), _new_output(v)

    def _dual_attention_setup(ctx, inputs, output):
        q, k, v, scale = inputs
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale

    def _dual_attention_backward(ctx, grad_out, grad_vv):
        q, k, v = ctx.saved_tensors
        grad_q = torch.zeros_like(q, dtype=torch.float32)
        grad_k = torch.zeros_like(k, dtype=torch.float32)
        grad_v = torch.zeros_like(v, dtype=torch.float32)
        if grad_out is not None:
            grad_q, grad_k, grad_v = _attention_grads(q, k, v, grad_out, ctx.scale)
        if grad_vv is not None:
            grad_v = grad_v + _vv_grad(v, grad_vv, ctx.scale)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None

    _dual_attention_op.register_autograd(_dual_attention_backward, setup_context=_dual_attention_setup)

    @torch.library.custom_op("sketchkit::vv_attention", mutates_args=())
    def _vv_attention_op(v: Tensor, scale: float) -> Tensor:
        return vv_attention_triton(v, scale)

    @_vv_attention_op.register_fake
    def _vv_attention_fake(v, scale):
        _check_inputs(v)
        return _new_output(v)

    def _vv_attention_setup(ctx, inputs, output):
        v, scale = inputs
        ctx.save_for_backward(v)
        ctx.scale = scale

    def _vv_attention_backward(ctx, grad_vv):
        (v,) = ctx.saved_tensors
        return _vv_grad(v, grad_vv, ctx.scale).to(v.dtype), None

    _vv_attention_op.register_autograd(_vv_attention_backward, setup_context=_vv_attention_setup)


def dual_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Fused dual-path attention as the custom op `torch.ops.sketchkit.dual_attention`.

    Same contract as `dual_attention_triton`, plus autograd (fp32 recompute of the reference gradient) and
    torch.compile without graph breaks. Returns (out_orig, out_vv), (B, H, N, D), input dtype.
    """
    if not TRITON_AVAILABLE:
        _check_inputs(q, k, v)  # raises the "install triton" RuntimeError
    return torch.ops.sketchkit.dual_attention(q, k, v, default_scale(v.shape[-1], scale))


def vv_attention(v: Tensor, scale: float | None = None) -> Tensor:
    """The v-v path alone as the custom op `torch.ops.sketchkit.vv_attention`; (B, H, N, D) in and out."""
    if not TRITON_AVAILABLE:
        _check_inputs(v)
    return torch.ops.sketchkit.vv_attention(v, default_scale(v.shape[-1], scale))


if __name__ == "__main__":  # the benchmark: `sketchkit bench --sections attention` (fused vs eager vs SDPA)
    import sys

    from sketchkit.cli.app import main

    sys.exit(main(["bench", "--sections", "attention", *sys.argv[1:]]))
