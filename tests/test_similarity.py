"""Similarity maps shared by inference scoring and training's Level II."""

from __future__ import annotations

import torch

from sketchkit.model.similarity import minmax_normalise, patch_similarity, upsample


def test_minmax_normalise_per_map():
    maps = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]], [[[-1.0, -1.0], [0.0, 1.0]]]])
    got = minmax_normalise(maps)
    torch.testing.assert_close(got[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    torch.testing.assert_close(got[1, 0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))


def test_patch_similarity_is_the_cosine_and_upsample_keeps_the_grid_order():
    patches = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    sim = patch_similarity(patches, text)
    assert sim.shape == (2, 6)
    torch.testing.assert_close(sim[1, 4], (patches[4] * text[1]).sum())
    maps = upsample(sim, (2, 3), (2, 3))  # same size: bicubic at the sample points is the identity
    torch.testing.assert_close(maps[0], sim[0].view(2, 3))
    assert upsample(sim, (2, 3), 12).shape == (2, 12, 12)


def test_minmax_normalise_leaves_a_constant_map_at_zero():
    got = minmax_normalise(torch.full((1, 3, 3), 2.0))
    assert torch.equal(got, torch.zeros(1, 3, 3))
