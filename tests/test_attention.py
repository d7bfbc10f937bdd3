"""The v-v attention switch: eager (the spec), sdpa and triton agree; SKETCHKIT_VV_IMPL selects; bad names fail."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from sketchkit.errors import UsageError
from sketchkit.model import attention
from sketchkit.model.attention import ENV_VAR, dual_path_attention, resolve_impl, vv_attention

TRITON_RUNS_HERE = attention.TRITON_AVAILABLE and (torch.cuda.is_available() or attention.KERNEL_INTERPRETED)
DEVICE = "cuda" if torch.cuda.is_available() and not attention.KERNEL_INTERPRETED else "cpu"
RUNNABLE_IMPLS = [
    "eager",
    "sdpa",
    pytest.param(
        "triton", marks=pytest.mark.skipif(not TRITON_RUNS_HERE, reason="no CUDA GPU and no Triton interpreter")
    ),
]


def packed_qkv(batch=2, heads=3, tokens=37, head_dim=16, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, tokens, 3, heads, head_dim, generator=gen).to(DEVICE)
    return qkv.requires_grad_(requires_grad)


def split_heads(qkv):
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, D) views


def test_hand_computed_case():
    """N=2, D=16, one head: v rows a*e0 and b*e0. Scores s * v_i.v_j with s = 1/4; the softmax is by hand."""
    v = torch.zeros(1, 1, 2, 16)
    v[0, 0, 0, 0], v[0, 0, 1, 0] = 2.0, 4.0
    q = torch.zeros_like(v)  # q = 0: uniform attention, the original path averages the v rows
    k = torch.randn(1, 1, 2, 16)
    for impl in ("eager", "sdpa"):
        out, out_vv = dual_path_attention(q, k, v, impl=impl)
        assert torch.allclose(out[0, 0, :, 0], torch.tensor([3.0, 3.0]))
        # row 0: scores (1, 2) -> weights (1, e) / (1 + e); row 1: scores (2, 4) -> weights (1, e^2) / (1 + e^2)
        e = torch.e
        expected = torch.tensor([(2 + 4 * e) / (1 + e), (2 + 4 * e**2) / (1 + e**2)])
        assert torch.allclose(out_vv[0, 0, :, 0], expected, atol=1e-6), impl


@pytest.mark.parametrize("impl", RUNNABLE_IMPLS)
def test_implementations_agree_with_the_spec(impl):
    q, k, v = split_heads(packed_qkv())
    spec, spec_vv = dual_path_attention(q, k, v, impl="eager")
    out, out_vv = dual_path_attention(q, k, v, impl=impl)
    assert out.shape == out_vv.shape == (2, 3, 37, 16)
    assert (out - spec).abs().max() < 1e-5 and (out_vv - spec_vv).abs().max() < 1e-5
    assert (vv_attention(v, impl=impl) - spec_vv).abs().max() < 1e-5
    assert (out - out_vv).abs().max() > 0.1  # the two paths really differ


@pytest.mark.parametrize("impl", RUNNABLE_IMPLS)
def test_gradients_agree_with_the_spec(impl):
    grads = {}
    for name in ("eager", impl):
        qkv = packed_qkv(batch=1, heads=2, tokens=21, seed=1, requires_grad=True)
        out, out_vv = dual_path_attention(*split_heads(qkv), impl=name)
        (out.square().sum() + 0.5 * out_vv.sum()).backward()
        grads[name] = qkv.grad
    assert (grads[impl] - grads["eager"]).abs().max() < 1e-4
    assert grads["eager"].abs().max() > 0.01


def test_env_switch_selects_the_path(monkeypatch):
    calls = []

    def spy(label, fn):
        def wrapped(*args, **kwargs):
            calls.append(label)
            return fn(*args, **kwargs)

        return wrapped

    fake_functional = types.SimpleNamespace(
        scaled_dot_product_attention=spy("sdpa", torch.nn.functional.scaled_dot_product_attention)
    )
    monkeypatch.setattr(attention, "F", fake_functional)
    monkeypatch.setattr(attention, "dual_attention_ref", spy("eager", attention.dual_attention_ref))
    monkeypatch.setattr(attention, "dual_attention_fused", spy("triton", attention.dual_attention_fused))
    q, k, v = split_heads(packed_qkv(batch=1, heads=1, tokens=8))
    for setting in ("eager", "sdpa") + (("triton",) if TRITON_RUNS_HERE else ()):
        monkeypatch.setenv(ENV_VAR, setting)
        calls.clear()
        dual_path_attention(q, k, v)
        assert calls == ([setting] * 2 if setting == "sdpa" else [setting])
    monkeypatch.setenv(ENV_VAR, "eager")
    calls.clear()
    dual_path_attention(q, k, v, impl="sdpa")  # an explicit name beats the environment
    assert calls == ["sdpa", "sdpa"]


def test_resolve_impl_reads_name_then_env_then_auto(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_impl(None, "cpu") == "sdpa"  # auto on CPU
    assert resolve_impl(" EAGER ", "cpu") == "eager"
    monkeypatch.setenv(ENV_VAR, "eager")
    assert resolve_impl(None, "cpu") == "eager"
    assert resolve_impl("sdpa", "cpu") == "sdpa"
    monkeypatch.setenv(ENV_VAR, "auto")
    assert resolve_impl(None, "cpu") == "sdpa"
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_impl(None, "cpu") == "sdpa"


def test_auto_picks_triton_for_cuda_tensors_only(monkeypatch):
    monkeypatch.setattr(attention, "TRITON_AVAILABLE", True)
    monkeypatch.setattr(attention, "KERNEL_INTERPRETED", False)
    assert resolve_impl("auto", "cuda:0") == "triton"
    assert resolve_impl("auto", torch.device("cpu")) == "sdpa"
    monkeypatch.setattr(attention, "KERNEL_INTERPRETED", True)
    assert resolve_impl("auto", "cuda:0") == "sdpa"  # never the interpreter by default
    monkeypatch.setattr(attention, "KERNEL_INTERPRETED", False)
    monkeypatch.setattr(attention, "TRITON_AVAILABLE", False)
    assert resolve_impl("auto", "cuda:0") == "sdpa"


@pytest.mark.parametrize("name", ["flash", "Triton2", "cuda"])
def test_unknown_names_raise_usage_error(monkeypatch, name):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(UsageError, match="choose one of eager, sdpa, triton, auto") as explicit:
        resolve_impl(name)
    assert "from impl" in str(explicit.value)
    monkeypatch.setenv(ENV_VAR, name)
    with pytest.raises(UsageError, match=ENV_VAR):
        dual_path_attention(*split_heads(packed_qkv(batch=1, heads=1, tokens=4)))


def test_triton_where_it_cannot_run_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(attention, "TRITON_AVAILABLE", True)
    monkeypatch.setattr(attention, "KERNEL_INTERPRETED", False)
    with pytest.raises(UsageError, match="CUDA tensors only"):
        resolve_impl("triton", "cpu")
    assert resolve_impl("triton", "cuda") == "triton"
    monkeypatch.setattr(attention, "KERNEL_INTERPRETED", True)
    assert resolve_impl("triton", "cpu") == "triton"  # explicitly asked for, under TRITON_INTERPRET=1 (tests)
    monkeypatch.setattr(attention, "TRITON_AVAILABLE", False)
    with pytest.raises(UsageError, match="needs the `triton` package"):
        resolve_impl("triton", "cuda")


_WITHOUT_TRITON = """
import sys
sys.modules["triton"] = None  # any `import triton` now raises ImportError
import torch
from sketchkit.errors import UsageError
from sketchkit.kernels import TRITON_AVAILABLE
from sketchkit.model.attention import dual_path_attention, resolve_impl
assert not TRITON_AVAILABLE
q, k, v = torch.randn(3, 1, 2, 10, 16).unbind(0)
spec = dual_path_attention(q, k, v, impl="eager")
for impl in ("sdpa", None):
    assert all((a - b).abs().max() < 1e-5 for a, b in zip(dual_path_attention(q, k, v, impl=impl), spec))
assert resolve_impl("auto", "cuda") == "sdpa"
try:
    resolve_impl("triton", "cuda")
except UsageError as error:
    assert "needs the `triton` package" in str(error)
else:
    raise AssertionError("triton without triton did not fail")
from sketchkit.kernels import dual_attention
try:
    dual_attention(q, k, v)  # calling the kernel itself: a programmer's error, not a UsageError
except RuntimeError as error:
    assert "needs the `triton` package" in str(error) and not isinstance(error, UsageError)
else:
    raise AssertionError("the kernel without triton did not fail")
print("ok")
"""


def test_works_without_triton_installed():
    """sketchkit.kernels imports without triton; eager and sdpa run; asking for triton says what to install (a
    UsageError when the user asks for it, a RuntimeError when code calls the kernel)."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TRITON], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
