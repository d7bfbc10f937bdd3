"""The Python API: a small facade over the inference engine.

    predictor = SketchPredictor(backbone="tiny-random")    # builds its own model (default: clip-surgery)
    predictor = SketchPredictor(segmenter)                   # or wraps one from build_segmenter
    predictor.set_sketch(sketch)                             # rasterize + encode, once
    result = predictor.predict(["tree", "house"])            # any number of label sets
    result = sketchkit.segment(sketch, labels=["tree"])      # one call; the model is cached between calls

A model with random weights (the tiny test backbone) warns once per model: its labels are meaningless.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Sequence

from .errors import InputError
from .inference.engine import Engine, Prepared
from .inference.methods import ModelSpec, Segmenter, build_segmenter, default_method
from .inference.policy import LabelPolicy
from .types import SegmentResult, Sketch

_warned: set[int] = set()


def warn_if_random(segmenter: Segmenter) -> None:
    """Warn once per model when it runs random weights."""
    if segmenter.random_weights and id(segmenter) not in _warned:
        _warned.add(id(segmenter))
        warnings.warn(f"{segmenter.description}: random weights, labels are meaningless (test/demo model)",
                      stacklevel=3)


class SketchPredictor:
    """Encode one sketch once (`set_sketch`), answer any label set (`predict`).

    segmenter: a built method (`sketchkit.inference.build_segmenter`); else one is built from
    model (default: sketchkit with an adapter, else clip-surgery), backbone (default: the
    adapter's, else ViT-B-16), weights, adapter, device and compile.
    """

    def __init__(self, segmenter: Segmenter | None = None, *, model: str | None = None, backbone: str | None = None,
                 weights: str | None = None, adapter: str | None = None, device: str = "auto", compile: bool = False):
        if segmenter is None:
            segmenter = build_segmenter(ModelSpec(model or default_method(adapter), backbone, weights, adapter, device,
                                                  compile))
        warn_if_random(segmenter)
        self.segmenter = segmenter
        self.sketch: Sketch | None = None
        self._prepared: Prepared | None = None

    def set_sketch(self, sketch: Sketch) -> None:
        """Rasterize `sketch` in the model's view and encode it."""
        engine = Engine(self.segmenter)
        self._prepared = engine.prepare(sketch, labels=["-"])  # the label set is given to predict()
        self._features = engine.encode([self._prepared])[0]
        self.sketch = sketch

    def predict(self, labels: Sequence[str], *, threshold: float | None = None) -> SegmentResult:
        """Scores, pixel labels and stroke votes for `labels` (with `threshold`: min-max normalised
        maps, pixels below it become "background")."""
        if self._prepared is None:
            raise InputError("SketchPredictor.predict called before set_sketch(sketch)")
        return Engine(self.segmenter, threshold=threshold).decode(self._prepared, self._features, labels)


@lru_cache(maxsize=2)
def _cached_segmenter(spec: ModelSpec) -> Segmenter:
    return build_segmenter(spec)


def segment(
    sketch: Sketch,
    labels: Sequence[str] | None = None,
    *,
    caption: str | None = None,
    model: str | Segmenter | None = None,
    backbone: str | None = None,
    weights: str | None = None,
    adapter: str | None = None,
    device: str = "auto",
    threshold: float | None = None,
    vocabulary: Sequence[str] | None = None,
) -> SegmentResult:
    """One call, as `sketchkit segment`: labels given, else from `caption`, else from the sketch's caption.

    model: a method name (default: sketchkit with an adapter, else clip-surgery) or a built Segmenter.
    A model built from names is cached, so repeated calls with the same settings pay its build once.
    """
    if isinstance(model, Segmenter):
        segmenter = model
    else:
        segmenter = _cached_segmenter(ModelSpec(model or default_method(adapter), backbone, weights, adapter, device))
    warn_if_random(segmenter)
    policy = LabelPolicy.for_segment(labels, caption, vocabulary)
    return Engine(segmenter, labels=policy, threshold=threshold).segment([sketch])[0]
