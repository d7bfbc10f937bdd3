"""The open_clip seam: on the installed open_clip, running the vision tower through
`sketchkit.model.openclip_seam` must equal open_clip's own forward. A release that moves the
internals the seam reads fails here, loudly, instead of silently changing sketchkit's features."""

from __future__ import annotations

import torch
from packaging.specifiers import SpecifierSet

from sketchkit.model import openclip_seam as seam


def test_installed_open_clip_is_a_tested_release():
    assert seam.version() in SpecifierSet(seam.TESTED_VERSIONS), (
        f"open_clip_torch {seam.version()} is outside the tested range {seam.TESTED_VERSIONS}: "
        "run this module's tests, then widen TESTED_VERSIONS and the bound in pyproject.toml"
    )


def test_pyproject_bound_matches_the_seam():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    bound = next(d for d in project["dependencies"] if d.startswith("open_clip_torch"))
    assert bound.replace(" ", "") == f"open_clip_torch{seam.TESTED_VERSIONS}"


def test_seam_forward_equals_open_clip_forward(tiny_encoder):
    """embed -> ln_pre -> blocks (qkv, attention_out, mlp_residual) -> project, through the seam only."""
    visual = tiny_encoder.clip.visual
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 2 - 1
    lay = seam.layout(visual)
    with torch.no_grad():
        x = seam.ln_pre(visual, seam.embed_tokens(visual, images))
        for block in seam.blocks(visual):
            batch, tokens, width = x.shape
            q, k, v = seam.qkv(block, x).view(batch, tokens, 3, lay.heads, width // lay.heads).permute(2, 0, 3, 1, 4)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            x = seam.mlp_residual(block, x + seam.attention_out(block, out))
        ours = seam.project(visual, x[:, 0])
        theirs = visual(images)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_layout_reads_sizes_from_the_modules(tiny_encoder):
    lay = seam.layout(tiny_encoder.clip.visual)
    assert (lay.image_size, lay.patch, lay.grid) == (224, 16, (14, 14))
    assert lay.blocks == 12 and lay.width == tiny_encoder.prompts.shape[1]
    assert lay.embed_dim == tiny_encoder.clip.visual.output_dim
    assert (lay.heads, lay.channels, lay.mlp_width) == (4, 3, 128)  # sketchkit-tiny.json: head_width 16, mlp_ratio 2
    assert tiny_encoder.input_size == 224


def test_text_on_the_causal_prefix_equals_open_clip_encode_text(tiny_encoder):
    clip = tiny_encoder.clip
    tokens = seam.openai_tokenizer(77)(["a", "a photo of the hard to see hot dog.", "there is a tree in the scene."])
    with torch.no_grad():
        torch.testing.assert_close(seam.encode_text_prefix(clip, tokens), clip.encode_text(tokens), atol=1e-5, rtol=1e-5)


def test_clip_from_an_openai_state_dict_takes_its_sizes_from_the_weights():
    """Sizes come from the tensors, heads = width // 64 as OpenAI's build_model (width 128: 2 heads)."""
    from sketchkit.model.factory import clip_from_openai_state

    sizes = {"vision_width": 128, "vision_layers": 3, "vision_heads": 2, "patch": 32, "image_size": 64,
             "embed_dim": 32, "context_length": 77, "vocab_size": 49408, "text_width": 64, "text_heads": 1,
             "text_layers": 2}
    state = seam.create_clip_for_sizes(sizes).state_dict()
    assert seam.openai_state_sizes(state) == sizes
    rebuilt = clip_from_openai_state(state)
    assert seam.layout(rebuilt.visual).heads == 2 and seam.layout(rebuilt.visual).grid == (2, 2)
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in state.items())
