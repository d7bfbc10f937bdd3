"""The fused dual-path attention kernel against its PyTorch reference (style.md, habit 8).

On a machine without CUDA the kernel runs in the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1), on
CPU tensors; with a GPU everything runs natively. Accuracy rule (flash-attention's): the kernel's largest error
against a float64 reference must stay within twice the error of PyTorch's own same-dtype reference plus a small
per-dtype atol, for the outputs and for every gradient.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sketchkit.kernels import (
    TRITON_AVAILABLE,
    dual_attention,
    dual_attention_ref,
    dual_attention_triton,
    vv_attention,
    vv_attention_ref,
    vv_attention_triton,
)

kernel_module = importlib.import_module("sketchkit.kernels.dual_attention")
ON_GPU = torch.cuda.is_available() and not kernel_module.KERNEL_INTERPRETED
DEVICE = "cuda" if ON_GPU else "cpu"

pytestmark = [
    pytest.mark.skipif(not TRITON_AVAILABLE, reason="triton is not installed"),
    pytest.mark.skipif(
        not (ON_GPU or kernel_module.KERNEL_INTERPRETED),
        reason="no CUDA GPU and TRITON_INTERPRET was not set before sketchkit was imported",
    ),
]

ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
BF16 = pytest.param(
    torch.bfloat16,
    marks=pytest.mark.skipif(not ON_GPU, reason="the Triton interpreter cannot do bf16 dots"),
    id="bfloat16",
)
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float16, id="float16"), BF16]
# (B, H, N, D): N=5 is one partial tile, N=64 exact tiles, N=200 (197 + 3 prompts) several tiles plus a remainder.
SHAPES = [(1, 1, 5, 16), (2, 3, 64, 16), (1, 3, 200, 64), (2, 1, 200, 16)]


def packed_qkv(batch, heads, tokens, head_dim, dtype, seed=0) -> torch.Tensor:
    """A random packed projection (B, N, 3, H, D), as nn.MultiheadAttention's in_proj produces it."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, 3, heads, head_dim, generator=gen).to(DEVICE, dtype)


def split_heads(qkv: torch.Tensor):
    """(B, N, 3, H, D) -> q, k, v as (B, H, N, D) strided views, no copy."""
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def assert_within_torch_error(what, got, torch_same_dtype, truth, dtype):
    kernel_err = (got.double() - truth).abs().max().item()
    torch_err = (torch_same_dtype.double() - truth).abs().max().item()
    bound = 2 * torch_err + ATOL[dtype]
    assert kernel_err <= bound, f"{what}: error {kernel_err:.3g} > 2 x PyTorch's {torch_err:.3g} + {ATOL[dtype]:g}"


# ---- forward -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(shape, dtype):
    q, k, v = split_heads(packed_qkv(*shape, dtype))
    assert not v.is_contiguous()  # the packed-projection views go in without a copy
    out, out_vv = dual_attention_triton(q, k, v)
    truth, truth_vv = dual_attention_ref(q.double(), k.double(), v.double())
    same, same_vv = dual_attention_ref(q, k, v)

    assert out.shape == out_vv.shape == q.shape and out.dtype == out_vv.dtype == dtype
    assert_within_torch_error("out_orig", out, same, truth, dtype)
    assert_within_torch_error("out_vv", out_vv, same_vv, truth_vv, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vv_only_kernel_matches_reference(dtype):
    _, _, v = split_heads(packed_qkv(2, 3, 200, 16, dtype, seed=1))
    out_vv = vv_attention_triton(v)
    assert_within_torch_error("out_vv", out_vv, vv_attention_ref(v), vv_attention_ref(v.double()), dtype)
    assert torch.equal(out_vv, dual_attention_triton(v, v, v)[1])  # same kernel, the q-k path compiled out


def test_paths_are_distinct_and_scale_is_honoured():
    q, k, v = split_heads(packed_qkv(1, 2, 40, 16, torch.float32, seed=2))
    out, out_vv = dual_attention_triton(q, k, v)
    assert (out - out_vv).abs().max() > 0.1  # q-k and v-v attention differ on random inputs
    out_half, out_vv_half = dual_attention_triton(q, k, v, scale=0.125)
    truth, truth_vv = dual_attention_ref(q.double(), k.double(), v.double(), scale=0.125)
    assert (out_half.double() - truth).abs().max() < 1e-5 and (out_vv_half.double() - truth_vv).abs().max() < 1e-5
    assert (out_half - out).abs().max() > 1e-3  # 0.125 is not the default 16 ** -0.5 = 0.25


def test_any_strides():
    """Separate contiguous tensors, a head-dim stride != 1, and a batch broadcast with stride 0."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 50, 16, generator=gen).to(DEVICE)
    k = torch.randn(2, 3, 16, 50, generator=gen).to(DEVICE).transpose(-1, -2)  # stride_d = 50
    v = torch.randn(1, 3, 50, 16, generator=gen).to(DEVICE).expand(2, -1, -1, -1)  # stride_b = 0
    out, out_vv = dual_attention_triton(q, k, v)
    truth, truth_vv = dual_attention_ref(q.double(), k.double(), v.double())
    assert (out.double() - truth).abs().max() < 1e-5
    assert (out_vv.double() - truth_vv).abs().max() < 1e-5


def test_writes_every_output_element_and_nothing_else(monkeypatch):
    """Outputs start poisoned inside a larger buffer: every row < N must be overwritten, the rows past N untouched."""
    sentinel = 12345.0
    buffers = []

    def poisoned_output(like):
        batch, heads, tokens, head_dim = like.shape
        buffer = torch.full((batch, tokens + 5, heads, head_dim), sentinel, dtype=like.dtype, device=like.device)
        buffers.append(buffer)
        return buffer[:, :tokens].transpose(1, 2)

    monkeypatch.setattr(kernel_module, "_new_output", poisoned_output)
    q, k, v = split_heads(packed_qkv(2, 3, 70, 16, torch.float32, seed=4))
    outputs = dual_attention_triton(q, k, v)
    for output, truth, buffer in zip(outputs, dual_attention_ref(q, k, v), buffers):
        assert (output != sentinel).all()
        assert (output - truth).abs().max() < 1e-5
        assert (buffer[:, 70:] == sentinel).all()


def test_empty_and_single_token_sequences():
    q, k, v = split_heads(packed_qkv(2, 3, 0, 16, torch.float32))
    out, out_vv = dual_attention_triton(q, k, v)
    assert out.shape == out_vv.shape == (2, 3, 0, 16)
    q, k, v = split_heads(packed_qkv(2, 3, 1, 16, torch.float32))
    out, out_vv = dual_attention_triton(q, k, v)
    assert torch.allclose(out, v) and torch.allclose(out_vv, v)  # one key: the softmax is 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [torch.randn(2, 3, 8, 48)] * 3, "head dims"),
        (lambda: [torch.randn(3, 8, 16)] * 3, "(batch, heads, tokens, head_dim)"),
        (lambda: [torch.randn(1, 2, 8, 16), torch.randn(1, 2, 9, 16), torch.randn(1, 2, 8, 16)], "same shape"),
        (lambda: [torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16).half(), torch.randn(1, 2, 8, 16)], "dtype"),
        (lambda: [torch.ones(1, 2, 8, 16, dtype=torch.int32)] * 3, "float32, float16 and bfloat16"),
    ],
    ids=["head-dim-48", "3d", "shape-mismatch", "dtype-mismatch", "int32"],
)
def test_rejects_unsupported_inputs_before_launch(make, message):
    q, k, v = (t.to(DEVICE) for t in make())
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dual_attention_triton(q, k, v)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(kernel_module, "KERNEL_INTERPRETED", False)
    with pytest.raises(ValueError, match="CUDA tensors"):
        dual_attention_triton(*[torch.randn(1, 1, 4, 16)] * 3)


@pytest.mark.skipif(ON_GPU, reason="only the interpreter refuses bf16")
def test_interpreter_refuses_bf16_readably():
    with pytest.raises(ValueError, match="cannot do bf16 dots"):
        vv_attention_triton(torch.randn(1, 1, 4, 16, dtype=torch.bfloat16))


def test_autotune_pruning():
    configs = kernel_module._gpu_configs()
    prune = kernel_module._prune_configs
    fp32 = prune(configs, {"V": torch.empty(1, dtype=torch.float32), "N": 200, "HEAD_DIM": 64})
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in fp32] == [(64, 32)]
    half = torch.empty(1, dtype=torch.float16)
    short = prune(configs, {"V": half, "N": 5, "HEAD_DIM": 64})
    assert short and {c.kwargs["BLOCK_M"] for c in short} == {64}
    wide = prune(configs, {"V": half, "N": 200, "HEAD_DIM": 128})
    assert not any(c.kwargs["BLOCK_M"] == 128 and c.num_warps == 4 for c in wide)
    assert len(prune(configs, {"V": half, "N": 200, "HEAD_DIM": 64})) == len(configs)


# ---- autograd and torch.compile ---------------------------------------------------------------------------------


def _qkv_grad(attention, qkv, cotangents):
    """d(sum(out_i * cotangent_i))/d(qkv) through `attention(q, k, v)` -> (out, out_vv)."""
    qkv = qkv.detach().requires_grad_()
    outputs = attention(*split_heads(qkv))
    loss = sum((out * cot.to(out.dtype)).sum() for out, cot in zip(outputs, cotangents) if cot is not None)
    loss.backward()
    return qkv.grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_reference(dtype):
    qkv = packed_qkv(2, 2, 70, 16, dtype, seed=5)
    gen = torch.Generator().manual_seed(6)
    cotangents = [torch.randn(2, 2, 70, 16, generator=gen).to(DEVICE) for _ in range(2)]
    got = _qkv_grad(dual_attention, qkv, cotangents)
    truth = _qkv_grad(dual_attention_ref, qkv.double(), cotangents)
    same = _qkv_grad(dual_attention_ref, qkv, cotangents)
    assert got.dtype == dtype
    for index, name in enumerate(("dq", "dk", "dv")):
        assert_within_torch_error(name, got[:, :, index], same[:, :, index], truth[:, :, index], dtype)


def test_gradient_through_one_output_only():
    """Only out_vv feeds the loss: q and k get zero gradient, v the v-v path's (v is query, key and value)."""
    qkv = packed_qkv(1, 2, 40, 16, torch.float32, seed=7)
    cotangent = torch.randn(1, 2, 40, 16, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    got = _qkv_grad(dual_attention, qkv, [None, cotangent])
    truth = _qkv_grad(dual_attention_ref, qkv.double(), [None, cotangent])
    assert (got[:, :, :2] == 0).all()
    assert (got.double() - truth).abs().max() < 1e-4
    assert truth[:, :, 2].abs().max() > 0.1

    got_vv = _qkv_grad(lambda q, k, v: (vv_attention(v),), qkv, [cotangent])
    assert (got_vv.double() - truth).abs().max() < 1e-4


def test_custom_ops_pass_opcheck():
    """Schema, fake kernel, autograd registration and AOT dispatch, as torch.library checks them."""
    q, k, v = split_heads(packed_qkv(1, 2, 9, 16, torch.float32, seed=9))
    q, v = q.detach().requires_grad_(), v.detach().requires_grad_()
    torch.library.opcheck(torch.ops.sketchkit.dual_attention.default, (q, k, v, 0.25))
    torch.library.opcheck(torch.ops.sketchkit.vv_attention.default, (v, 0.25))


def test_torch_compile_fullgraph_forward_and_backward():
    """fullgraph=True fails on any graph break. On CPU the aot_eager backend: it runs the same tracing, fake kernels
    and autograd registration, while inductor would add ~16 s of C++ compile for the two ops around the custom op."""
    backend = "inductor" if ON_GPU else "aot_eager"

    def block(q, k, v):
        out, out_vv = dual_attention(q, k, v)
        return (out * 2 + out_vv).sum(), vv_attention(v).square().mean()

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend=backend)
    qkv = packed_qkv(1, 2, 33, 16, torch.float32, seed=10)
    qkv_compiled = qkv.clone().requires_grad_()
    qkv_eager = qkv.clone().requires_grad_()
    loss_compiled = sum(compiled(*split_heads(qkv_compiled)))
    loss_eager = sum(block(*split_heads(qkv_eager)))
    loss_compiled.backward()
    loss_eager.backward()
    assert torch.allclose(loss_compiled, loss_eager, rtol=1e-5, atol=1e-5)
    assert torch.allclose(qkv_compiled.grad, qkv_eager.grad, rtol=1e-4, atol=1e-5)


# ---- the GPU code path, compiled without a GPU --------------------------------------------------------------------

_COMPILE_FOR_HOPPER = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from sketchkit.kernels.dual_attention import _dual_attention_fwd as kernel

    def compile(dtype, head_dim, block_m, block_n, warps):
        signature = {}
        for name in kernel.arg_names:
            if name in ("Q", "K", "V", "Out", "OutVV"):
                signature[name] = "*" + dtype
            elif name.startswith("stride") or name in ("H", "N"):
                signature[name] = "i32"
            else:
                signature[name] = "fp32" if name == "qk_scale" else "constexpr"
        constants = {"HEAD_DIM": head_dim, "BLOCK_M": block_m, "BLOCK_N": block_n, "WITH_QK": True,
                     "DOT_PRECISION": "ieee"}
        source = ASTSource(kernel, signature, {(kernel.arg_names.index(k),): v for k, v in constants.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        return compiled.asm["ptx"]

    for dtype in ("fp16", "bf16"):
        assert "wgmma" in compile(dtype, 64, 128, 64, 8), dtype + ": no tensor-core MMA"
    assert "wgmma" not in compile("fp32", 16, 64, 32, 8), "fp32 must use IEEE dots, not tf32 tensor cores"
    print("compiled")
    """
)


@pytest.mark.skipif(ON_GPU, reason="with a GPU the kernel runs natively in the other tests")
def test_kernel_compiles_for_hopper_without_a_gpu():
    """The interpreter skips Triton's compiler; this compiles the real kernel for sm_90 (PTX and cubin via ptxas)."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "compiled" in result.stdout, result.stderr[-3000:]
