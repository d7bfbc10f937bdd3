"""sketchkit.vote: hand-computed votes, hidden strokes, and an oracle on the FrISS test split."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from sketchkit.errors import InputError
from sketchkit.raster import rasterize, render_stroke_ids
from sketchkit.io import read_sketch
from sketchkit.types import Raster, Sketch, Transform
from sketchkit.vote import bilinear_at, pixel_labels, vote_labels, vote_strokes

IDENTITY_64 = Transform(scale=1.0, offset_x=0.0, offset_y=0.0, size=64)


def make_sketch(*strokes, **kwargs) -> Sketch:
    arrays = tuple(np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes)
    return Sketch(strokes=arrays, width=64.0, height=64.0, **kwargs)


# ------------------------------------------------------------------------- hand-computed votes


def hand_case() -> tuple[np.ndarray, Raster]:
    """A 4 x 4 raster with four strokes and hand-set scores for 3 classes."""
    ids = np.array([[0, 0, 0, 0], [1, 1, -1, -1], [2, 2, 2, -1], [3, 3, -1, -1]], dtype=np.int32)
    scores = np.zeros((3, 4, 4), dtype=np.float32)
    pixel = {
        # stroke 0: three votes for 1, one for 0
        (0, 0): [0.1, 0.8, 0.1], (0, 1): [0.2, 0.7, 0.1], (0, 2): [0.0, 0.9, 0.1], (0, 3): [0.6, 0.3, 0.1],
        # stroke 1: one vote each for 0 and 2; summed scores 0.7 vs 0.9 -> 2
        (1, 0): [0.6, 0.4, 0.0], (1, 1): [0.1, 0.0, 0.9],
        # stroke 2: one vote each; sums 1.0, 0.9, 1.1 -> order 2, 0, 1
        (2, 0): [0.5, 0.2, 0.3], (2, 1): [0.2, 0.5, 0.3], (2, 2): [0.3, 0.2, 0.6],
        # stroke 3: one vote each for 0 and 1 with equal sums 1.0 -> the smaller index, 0
        (3, 0): [0.3, 0.7, 0.0], (3, 1): [0.7, 0.3, 0.0],
    }
    for (row, col), values in pixel.items():
        scores[:, row, col] = values
    scores[:, ids < 0] = [[5.0], [0.0], [0.0]]  # paper pixels must not vote
    return scores, Raster(image=np.ones((4, 4), np.float32), stroke_ids=ids, transform=Transform(1.0, 0.0, 0.0, 4))


def test_majority_ties_top3_and_confidence_by_hand():
    scores, raster = hand_case()
    votes = vote_strokes(scores, raster)
    np.testing.assert_array_equal(votes.labels, [1, 2, 2, 0])
    np.testing.assert_allclose(votes.confidence, [0.75, 0.5, 1 / 3, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(votes.top, [[1, 0, -1], [2, 0, -1], [2, 0, 1], [0, 1, -1]])
    assert votes.labels.dtype == np.int32 and votes.top.dtype == np.int32 and votes.confidence.dtype == np.float32


def test_torch_scores_give_the_same_votes():
    scores, raster = hand_case()
    from_numpy = vote_strokes(scores, raster)
    from_torch = vote_strokes(torch.from_numpy(scores).double(), raster)
    np.testing.assert_array_equal(from_numpy.labels, from_torch.labels)
    np.testing.assert_array_equal(from_numpy.top, from_torch.top)


def test_flat_pixels_abstain_and_fewer_than_three_classes_pad_top3():
    ids = np.array([[0, 0, 0], [1, 1, -1], [-1, -1, -1]], dtype=np.int32)
    scores = np.zeros((2, 3, 3), dtype=np.float32)  # all flat...
    scores[:, 0, 2] = [0.2, 0.9]  # ...but one pixel of stroke 0 prefers class 1
    scores[:, 1, 0] = [0.4, 0.4]  # stroke 1: flat everywhere, no votes
    raster = Raster(np.ones((3, 3), np.float32), ids, Transform(1.0, 0.0, 0.0, 3))
    votes = vote_strokes(scores, raster)
    np.testing.assert_array_equal(votes.labels, [1, -1])
    np.testing.assert_allclose(votes.confidence, [1 / 3, 0.0])
    np.testing.assert_array_equal(votes.top, [[1, -1, -1], [-1, -1, -1]])


def test_pixel_labels_argmax_on_ink_only():
    scores, raster = hand_case()
    labels = pixel_labels(scores, raster)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[1, 1, 1, 0], [0, 2, -1, -1], [0, 1, 2, -1], [1, 0, -1, -1]])


def test_vote_labels_matches_one_hot_scores():
    scores, raster = hand_case()
    labels = pixel_labels(scores, raster)
    votes = vote_labels(labels, raster, 3)
    # one-hot ties fall to the smaller class index (equal summed scores)
    np.testing.assert_array_equal(votes.labels, [1, 0, 0, 0])
    np.testing.assert_array_equal(votes.top, [[1, 0, -1], [0, 2, -1], [0, 1, 2], [0, 1, -1]])
    with pytest.raises(InputError):
        vote_labels(labels, raster, 2)


def test_bad_score_shapes_raise_input_error():
    scores, raster = hand_case()
    with pytest.raises(InputError, match="shape"):
        vote_strokes(scores[:, :3], raster)
    with pytest.raises(InputError, match="shape"):
        vote_strokes(scores[0], raster)


def test_bilinear_sampling_matches_torch_interpolate():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(3, 7, 7)).astype(np.float32)
    for factor in (1, 2, 4):
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(scores)[None], scale_factor=factor, mode="bilinear", align_corners=False
        )[0].numpy()
        rows, cols = np.indices((7 * factor, 7 * factor)).reshape(2, -1)
        got = bilinear_at(scores, rows, cols, 7 * factor).reshape(3, 7 * factor, 7 * factor)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bilinear_at_any_size_matches_torch_interpolate():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 224, 224)).astype(np.float32)
    for size in (512, 300, 224, 100):
        rows, cols = rng.integers(0, size, 500), rng.integers(0, size, 500)
        full = torch.nn.functional.interpolate(torch.from_numpy(scores)[None], size=(size, size), mode="bilinear",
                                               align_corners=False)[0].numpy()
        np.testing.assert_allclose(bilinear_at(scores, rows, cols, size), full[:, rows, cols], atol=1e-4)  # float32 rounding


# ------------------------------------------------------------------------------- hidden strokes


def two_class_scores(size: int, region: tuple[slice, slice]) -> np.ndarray:
    """Class 0 everywhere (score 1), class 1 stronger (score 2) inside `region` (rows, cols)."""
    scores = np.zeros((2, size, size), dtype=np.float32)
    scores[0] = 1.0
    scores[1][region] = 2.0
    return scores


def test_a_stroke_under_a_thicker_later_stroke_gets_its_own_label():
    hidden = [[33.0, 31.0], [47.0, 33.0]]
    cover = [[4.0, 32.0], [60.0, 32.0]]  # 8 px wide over rows [28, 36)
    sketch = make_sketch(hidden, cover, stroke_widths=np.array([1.0, 8.0]))
    raster = rasterize(sketch, transform=IDENTITY_64, use_source_widths=True)
    assert not (raster.stroke_ids == 0).any() and (raster.stroke_ids == 1).sum() > 300
    # class 1 wins only over the middle of the hidden stroke (not at its end points); the cover is
    # mostly class 0, so the neighbour's label would be 0, and so would the end points' pixels
    scores = two_class_scores(64, (slice(None), slice(36, 45)))
    assert pixel_labels(scores, raster)[32, 40] == 1 and pixel_labels(scores, raster)[32, 33] == 0
    votes = vote_strokes(scores, raster, sketch)
    np.testing.assert_array_equal(votes.labels, [1, 0])
    assert 0.5 < votes.confidence[0] < 0.8  # 9 of its ~15 px lie in the class-1 band
    np.testing.assert_array_equal(votes.top[0], [1, 0, -1])
    # without the sketch, the hidden stroke cannot be re-drawn: no label
    assert vote_strokes(scores, raster).labels.tolist() == [-1, 0]


def test_hidden_strokes_that_cover_each_other_are_drawn_one_by_one():
    twin = [[20.0, 20.5], [26.0, 20.5]]
    cover = [[2.0, 20.5], [60.0, 20.5]]
    sketch = make_sketch(twin, twin, cover)
    raster = rasterize(sketch, transform=IDENTITY_64)
    assert set(np.unique(raster.stroke_ids)) == {-1, 2}
    at_hi_res = render_stroke_ids(sketch, IDENTITY_64.resized(256), strokes=[0, 1])
    assert not (at_hi_res == 0).any()  # stroke 0 is still covered by its twin
    scores = two_class_scores(64, (slice(None), slice(16, 31)))
    votes = vote_strokes(scores, raster, sketch)
    np.testing.assert_array_equal(votes.labels, [1, 1, 0])


def test_a_stroke_outside_the_frame_votes_at_its_nearest_pixel():
    inside = [[4.0, 40.0], [60.0, 40.0]]
    outside = [[100.0, 10.0], [110.0, 12.0]]  # right of the 64 px frame, rows 10-12
    sketch = make_sketch(inside, outside)
    raster = rasterize(sketch, transform=IDENTITY_64)
    assert set(np.unique(raster.stroke_ids)) == {-1, 0}
    scores = two_class_scores(64, (slice(8, 14), slice(62, 64)))  # class 1 at the nearest border only
    votes = vote_strokes(scores, raster, sketch)
    np.testing.assert_array_equal(votes.labels, [0, 1])
    assert votes.confidence[1] == 1.0


# ------------------------------------------------------------------------------ FrISS oracle


def test_oracle_scores_give_every_visible_stroke_its_label_on_friss(friss_test_files):
    """Scores = one-hot of each pixel's true class (through the id map) must return the truth.

    Visible strokes: always. Hidden strokes (no pixel at 224 px): re-drawn at 896 px they vote on
    their own footprint; they can only miss when that footprint shows no pixel of their class
    at 224 px (it lies wholly under strokes of another class), which the check verifies.
    """
    visible_total = hidden_total = hidden_right = 0
    for path in friss_test_files:
        sketch = read_sketch(path)
        names = sketch.label_names()
        truth = np.array([names.index(label) for label in sketch.labels])
        raster = rasterize(sketch)
        ids = raster.stroke_ids
        oracle = np.where(ids >= 0, truth[np.maximum(ids, 0)], -1)
        votes = vote_labels(oracle, raster, len(names), sketch)
        owned = np.bincount(ids[ids >= 0], minlength=sketch.num_strokes) > 0
        np.testing.assert_array_equal(votes.labels[owned], truth[owned], err_msg=path.name)
        np.testing.assert_array_equal(votes.confidence[owned], 1.0)
        hidden = np.flatnonzero(~owned)
        assert (votes.labels[hidden] >= 0).all()
        for stroke in hidden[votes.labels[hidden] != truth[hidden]]:
            footprint = render_stroke_ids(sketch, raster.transform, strokes=[stroke]) == stroke
            assert not (oracle[footprint] == truth[stroke]).any(), (path.name, stroke)
        visible_total += owned.sum()
        hidden_total += hidden.size
        hidden_right += (votes.labels[hidden] == truth[hidden]).sum()
    assert visible_total > 18_000
    assert 100 < hidden_total < 1000  # hundreds of covered strokes at 224 px
    assert hidden_right / hidden_total > 0.9


def reference_votes(scores: np.ndarray, ids: np.ndarray, num_strokes: int):
    """Plain-Python majority vote for strokes that own pixels (the spec, written out)."""
    result = {}
    for stroke in range(num_strokes):
        mask = ids == stroke
        if not mask.any():
            continue
        pixel_scores = scores[:, mask]
        votes = np.bincount(pixel_scores.argmax(axis=0), minlength=scores.shape[0])
        sums = pixel_scores.astype(np.float64).sum(axis=1)
        ranked = sorted(range(scores.shape[0]), key=lambda c: (-votes[c], -sums[c], c))
        top3 = [c if votes[c] > 0 else -1 for c in ranked[:3]]
        result[stroke] = (ranked[0], votes[ranked[0]] / mask.sum(), top3)
    return result


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_vote_matches_a_plain_reference(seed):
    rng = np.random.default_rng(seed)
    size, num_strokes, num_classes = 24, 12, 7
    ids = rng.integers(-1, num_strokes, size=(size, size)).astype(np.int32)
    ids[ids == 5] = -1  # a stroke without pixels
    # few distinct score levels, so vote counts and sums tie often
    shape = (num_classes, size, size)
    scores = (rng.integers(0, 4, size=shape) + rng.normal(0, 1e-3, shape)).astype(np.float32)
    raster = Raster(np.ones((size, size), np.float32), ids, Transform(1.0, 0.0, 0.0, size))
    votes = vote_strokes(scores, raster, num_strokes=num_strokes)
    expected = reference_votes(scores, ids, num_strokes)
    assert votes.labels[5] == -1
    for stroke, (label, confidence, top3) in expected.items():
        assert votes.labels[stroke] == label
        assert votes.confidence[stroke] == pytest.approx(confidence)
        assert votes.top[stroke].tolist() == top3
