"""The Python API: encode once / predict many, threshold mode, the one-call segment()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sketchkit
from sketchkit.errors import InputError, UsageError
from sketchkit.inference import OracleSegmenter, segmenter_on
from sketchkit.inference import apply_threshold
from sketchkit.predictor import SketchPredictor
from sketchkit.types import BACKGROUND

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "house_tree_sun.svg"


@pytest.fixture(scope="module")
def segmenter(tiny_encoder):
    return segmenter_on("clip-surgery", tiny_encoder)


def test_predict_before_set_sketch_names_the_missing_call(segmenter):
    with pytest.raises(InputError, match="set_sketch"):
        SketchPredictor(segmenter).predict(["tree"])


def test_encode_once_predict_many(segmenter, monkeypatch):
    predictor = SketchPredictor(segmenter)
    predictor.set_sketch(sketchkit.read_sketch(EXAMPLE))
    calls = []
    monkeypatch.setattr(segmenter, "encode", lambda *a, **k: calls.append(1))
    first = predictor.predict(["house", "tree"])
    second = predictor.predict(["sun", "grass", "house"])
    assert not calls  # the image features were reused
    assert first.labels == ("house", "tree") and second.labels == ("sun", "grass", "house")
    assert first.scores.shape == (2, 224, 224)
    assert len(second.stroke_label_names) == 17
    assert set(second.stroke_label_names) <= {"sun", "grass", "house"}


def test_threshold_adds_background(segmenter):
    predictor = SketchPredictor(segmenter)
    predictor.set_sketch(sketchkit.read_sketch(EXAMPLE))
    everything = predictor.predict(["house", "tree"], threshold=0.0)
    nothing = predictor.predict(["house", "tree"], threshold=1.0)
    assert everything.labels[-1] == BACKGROUND
    ink = everything.raster.ink
    assert (everything.pixel_labels[ink] != 2).all()  # threshold 0: every ink pixel keeps a class
    # threshold 1: only each class's single maximum pixel can reach it
    assert (nothing.pixel_labels[ink] == 2).mean() > 0.99
    with pytest.raises(UsageError):
        predictor.predict(["house"], threshold=1.5)


def test_apply_threshold_by_hand():
    scores = np.array([[[0.0, 1.0], [2.0, 4.0]], [[4.0, 3.0], [2.0, 0.0]]], dtype=np.float32)
    normalised, labels = apply_threshold(scores, ["a", "b"], 0.7)
    assert labels == ("a", "b", BACKGROUND)
    np.testing.assert_allclose(normalised[0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(normalised[1], [[1.0, 0.75], [0.5, 0.0]])
    # argmax: pixel (0,0) -> b (1.0), (0,1) -> b (0.75), (1,0) -> background (0.5 < 0.7), (1,1) -> a
    assert normalised.argmax(0).tolist() == [[1, 1], [2, 0]]


def test_segment_one_call_api_and_oracle():
    sketch = sketchkit.read_sketch(EXAMPLE)
    result = sketchkit.segment(sketch, labels=["house", "tree", "sun", "grass"], model=OracleSegmenter())
    assert result.stroke_label_names == list(sketch.labels)
    from_caption = sketchkit.segment(sketch, model=OracleSegmenter())  # labels from the SVG's caption
    assert set(from_caption.labels) == {"house", "tree", "grass", "sun"}
    tiny = sketchkit.segment(sketch, labels=["house", "tree"], backbone="tiny-random", device="cpu")
    assert "RANDOM" in tiny.model and len(tiny.stroke_label_names) == sketch.num_strokes
