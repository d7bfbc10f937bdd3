"""SketchCLIP on the tiny random backbone: the dual path, prompts, cross-attention, threshold,
trainable set, weights resolution and adapters."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from sketchkit.errors import WeightsError
from sketchkit.model.adapter import load_adapter, save_adapter
from sketchkit.model.factory import create_encoder


def images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 224, 224, generator=g) * 2 - 1


def hand_written_dual_block(block, x, x_vv):
    """The method.md formula per head, with explicit loops: no shared helper from sketchkit."""
    attn = block.attn
    heads, width = attn.num_heads, x.shape[-1]
    d = width // heads
    h = block.ln_1(x)
    w_q, w_k, w_v = attn.in_proj_weight.split(width)
    b_q, b_k, b_v = attn.in_proj_bias.split(width)
    q, k, v = h @ w_q.T + b_q, h @ w_k.T + b_k, h @ w_v.T + b_v
    outs, outs_vv = [], []
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        qi, ki, vi = q[..., sl], k[..., sl], v[..., sl]
        outs.append(torch.softmax(qi @ ki.transpose(-1, -2) / d**0.5, -1) @ vi)
        outs_vv.append(torch.softmax(vi @ vi.transpose(-1, -2) / d**0.5, -1) @ vi)
    out = attn.out_proj(torch.cat(outs, -1))
    out_vv = attn.out_proj(torch.cat(outs_vv, -1))
    x_new = x + out
    x_new = x_new + block.mlp(block.ln_2(x_new))
    return x_new, x_vv + out_vv


def test_dual_path_matches_hand_written_formula(tiny_encoder):
    model = tiny_encoder
    x_img = images(2)
    with torch.no_grad():
        got = model.forward_features(x_img, dual=True, prompts=True)
        visual = model.clip.visual
        patches = visual.conv1(x_img).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(2, 1, -1), patches], 1) + visual.positional_embedding
        # the reference's layout: [class, prompts, patches], prompts normalised by ln_pre with the rest
        x = visual.ln_pre(torch.cat([x[:, :1], model.prompts.expand(2, -1, -1), x[:, 1:]], 1))
        blocks = visual.transformer.resblocks
        first = len(blocks) - model.config.dual_blocks
        for blk in blocks[:first]:
            x = blk(x)
        x_vv = x
        for blk in blocks[first:]:
            x, x_vv = hand_written_dual_block(blk, x, x_vv)
        want_patches = model.project(x_vv[:, 1 + len(model.prompts):])
        want_scene = model.project(x[:, 0])
    torch.testing.assert_close(got.patches, want_patches, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.scene, want_scene, rtol=1e-4, atol=1e-5)
    assert got.patches.shape == (2, 196, model.clip.visual.output_dim)


def test_original_path_is_plain_clip(tiny_encoder):
    """Without prompts, the dual path leaves the scene token exactly as open_clip computes it."""
    x_img = images(1)
    with torch.no_grad():
        ours = tiny_encoder.forward_features(x_img, dual=True, prompts=False).scene
        theirs = tiny_encoder.clip.encode_image(x_img)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_dual_path_changes_patch_features(tiny_encoder):
    x_img = images(1)
    with torch.no_grad():
        dual = tiny_encoder.forward_features(x_img, dual=True, prompts=False).patches
        plain = tiny_encoder.forward_features(x_img, dual=False, prompts=False).patches
    assert not torch.allclose(dual, plain, atol=1e-3)


def test_prompts_change_the_output(tiny_encoder):
    x_img = images(1)
    with torch.no_grad():
        with_prompts = tiny_encoder.forward_features(x_img, prompts=True)
        without = tiny_encoder.forward_features(x_img, prompts=False)
    assert not torch.allclose(with_prompts.scene, without.scene, atol=1e-4)
    assert not torch.allclose(with_prompts.patches, without.patches, atol=1e-4)


def test_cross_attention_depends_on_the_text(tiny_encoder):
    out = tiny_encoder.forward_features(images(1), taps=(7, 10, 12))
    assert set(out.taps) == {7, 10, 12}
    texts = tiny_encoder.encode_text(["A sketch of a tree.", "A sketch of a car."])
    a = tiny_encoder.category_tokens(out.taps, texts[:1])
    b = tiny_encoder.category_tokens(out.taps, texts[1:])
    for tap in (7, 10, 12):
        assert a[tap].shape == (1, tiny_encoder.clip.visual.output_dim)
        assert not torch.allclose(a[tap], b[tap], atol=1e-4), f"tap {tap} ignores the text"


def test_threshold_receives_gradient(tiny_encoder):
    model = create_encoder("tiny-random")
    ink = torch.rand(1, 1, 32, 32)
    maps = torch.rand(1, 2, 32, 32)
    model.isolate(ink, maps).sum().backward()
    assert model.theta.grad is not None and model.theta.grad.abs() > 0
    assert 0.4 < float(model.threshold().detach()) < 0.9


def test_threshold_starts_at_the_reference_value():
    """theta starts at 0.4, so the threshold starts at 0.4 + 0.5 * sigmoid(0.4) = 0.6993 (the reference's)."""
    from sketchkit.model.factory import get_backbone_config

    reference = 0.4 + 0.5 / (1.0 + math.exp(-0.4))
    assert get_backbone_config("ViT-B-16").theta_init == get_backbone_config("tiny-random").theta_init == 0.4
    assert float(create_encoder("tiny-random").threshold().detach()) == pytest.approx(reference, abs=1e-6)
    assert reference == pytest.approx(0.69934, abs=1e-5)


def test_isolation_keeps_binary_ink_at_full_strength():
    """binary (default): 1 - [ink >= 0.5] * sigmoid((map - t) * s); scaled: 1 - ink * map * sigmoid(...);
    hard: the cut is [map >= t] and theta gets no gradient."""
    model = create_encoder("tiny-random")
    t = float(model.threshold().detach())
    # pixels: faint ink kept, ink exactly 0.5 kept, paper (ink 0.4) dropped, strong ink below the threshold
    ink = torch.tensor([0.6, 0.5, 0.4, 1.0]).view(1, 1, 1, 4)
    maps = torch.tensor([0.9, 0.9, 0.9, t - 0.2]).view(1, 1, 1, 4)
    cut = torch.sigmoid((maps - t) * 50.0)
    binary = model.isolate(ink, maps)
    torch.testing.assert_close(binary, 1.0 - torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 1, 1, 4) * cut)
    assert float(binary[0, 0, 0, 0].detach()) < 1e-3, "kept ink is black, whatever its grey level and map value"
    scaled = model.isolate(ink, maps, isolation="scaled")
    torch.testing.assert_close(scaled, 1.0 - ink * maps * cut)
    assert float(scaled[0, 0, 0, 0].detach()) == pytest.approx(1 - 0.6 * 0.9, abs=1e-3)
    hard = model.isolate(ink, maps, hard=True)
    torch.testing.assert_close(hard, torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 1, 4))
    model.isolate(ink, maps).sum().backward()
    assert model.theta.grad is not None and model.theta.grad.abs() > 0, "the soft cut passes a gradient to theta"
    assert not model.isolate(ink, maps, hard=True).requires_grad, "the hard cut passes no gradient to theta"
    with pytest.raises(ValueError, match="isolation"):
        model.isolate(ink, maps, isolation="soft")


def test_only_intended_parameters_train():
    model = create_encoder("tiny-random").freeze_for_finetuning()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "prompts" in trainable and "theta" in trainable
    assert any(n.startswith("cross_attn.7.") for n in trainable)
    assert "clip.visual.ln_post.weight" in trainable and "clip.visual.transformer.resblocks.0.ln_1.bias" in trainable
    for name in trainable:
        assert name.startswith(("prompts", "theta", "cross_attn.")) or ".ln_" in name or name.split(".")[-2].startswith("ln")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "clip.visual.conv1.weight" in frozen
    assert "clip.visual.transformer.resblocks.0.attn.in_proj_weight" in frozen
    assert not any(n.startswith("clip.transformer.") and n in trainable for n, _ in model.named_parameters())
    assert "clip.ln_final.weight" in frozen  # text tower stays frozen


def test_tiny_backbone_is_deterministic(tiny_encoder):
    again = create_encoder("tiny-random")
    assert again.fingerprint == tiny_encoder.fingerprint
    torch.testing.assert_close(again.prompts, tiny_encoder.prompts)


def test_no_weights_fails_fast_with_instructions(monkeypatch):
    monkeypatch.delenv("SKETCHKIT_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-sketchkit-test-cache")
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        create_encoder("ViT-B-16")
    assert time.perf_counter() - start < 10
    # the library names the backbone the user asked for (not a weights file name) and hints at the weights
    assert str(info.value) == "ViT-B-16 'openai' weights are not cached and HF_HUB_OFFLINE is set"
    assert info.value.hint == "weights"


def test_missing_weights_message_names_the_backbone_and_the_ways_out(monkeypatch, capsys, tmp_path):
    """Regression: the message named the weights file ("cannot download open_clip_pytorch_model.bin ...")."""
    from sketchkit.cli.app import main

    monkeypatch.delenv("SKETCHKIT_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    example = Path(__file__).parents[1] / "examples" / "house_tree_sun.svg"
    code = main(["segment", str(example), "--labels", "house", "--out", str(tmp_path / "o.svg")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "ViT-B-16 'openai' weights" in err and "--weights PATH" in err and "SKETCHKIT_WEIGHTS" in err
    assert "open_clip_pytorch_model" not in err and "open_clip_model.safetensors" not in err


def test_weights_file_and_env_load(tiny_weights, tiny_encoder, monkeypatch):
    loaded = create_encoder("tiny-random", weights=tiny_weights)
    assert loaded.fingerprint == tiny_encoder.fingerprint
    assert str(tiny_weights) in loaded.weights_source
    # built without open_clip's random init (the file overwrites it): same outputs, causal mask included
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(loaded.clip.encode_image(x), tiny_encoder.clip.encode_image(x))
        torch.testing.assert_close(loaded.encode_text(["tree", "a house"]), tiny_encoder.encode_text(["tree", "a house"]))
    monkeypatch.setenv("SKETCHKIT_WEIGHTS", str(tiny_weights))
    assert "SKETCHKIT_WEIGHTS" in create_encoder("tiny-random").weights_source


def test_pt_weights_load_only_as_tensors(tmp_path, tiny_encoder):
    good = tmp_path / "state.pt"
    torch.save(tiny_encoder.clip.state_dict(), good)
    assert create_encoder("tiny-random", weights=good).fingerprint == tiny_encoder.fingerprint

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(WeightsError, match="cannot read weights"):
        create_encoder("tiny-random", weights=evil)


def test_weights_of_wrong_shape_are_refused(tmp_path, tiny_encoder):
    state = dict(tiny_encoder.clip.state_dict())
    state["visual.proj"] = torch.zeros(3, 3)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="shape"):
        create_encoder("tiny-random", weights=path)


def test_adapter_round_trip_and_backbone_check(tmp_path):
    model = create_encoder("tiny-random").freeze_for_finetuning()
    with torch.no_grad():
        model.prompts.add_(1.0)
        model.theta.fill_(0.7)
        model.clip.visual.ln_post.weight.mul_(1.5)
    path = save_adapter(model, tmp_path / "a.safetensors", extra={"note": "test"})
    assert path.with_suffix(".json").exists()
    fresh = create_encoder("tiny-random")
    config = load_adapter(fresh, path)
    assert config["backbone"] == "tiny-random" and config["note"] == "test"
    torch.testing.assert_close(fresh.prompts, model.prompts)
    torch.testing.assert_close(fresh.theta, model.theta)
    torch.testing.assert_close(fresh.clip.visual.ln_post.weight, model.clip.visual.ln_post.weight)
    assert path.stat().st_size < 2_000_000  # an adapter, not a backbone

    other = create_encoder("tiny-random")
    with torch.no_grad():
        other.clip.visual.conv1.weight.add_(1.0)
    from sketchkit.model.weights import fingerprint

    other.fingerprint = fingerprint(other.clip.state_dict())
    with pytest.raises(WeightsError, match="other tiny-random weights"):
        load_adapter(other, path)


def test_adapter_rejects_non_adapter_files(tmp_path, tiny_weights):
    with pytest.raises(WeightsError, match="not a sketchkit adapter"):
        load_adapter(create_encoder("tiny-random"), tiny_weights)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError):
        load_adapter(create_encoder("tiny-random"), junk)
