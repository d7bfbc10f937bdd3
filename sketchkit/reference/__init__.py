"""Run a sketch exactly as the reference code's `test.py` does (issue 11: `--scoring reference`).

    from sketchkit.model.import_checkpoint import load_reference_model
    from sketchkit.reference import ReferenceScorer, reference_input

    scorer = ReferenceScorer(load_reference_model("imported.safetensors"))
    view = reference_input(sketch)                  # the reference's model input and geometry
    features = scorer.encode(view)                  # one encode per sketch ...
    pred = scorer.predict(view, ["house", "tree"], features=features)   # ... any number of label sets
    pred.maps, pred.pixel_labels, pred.stroke_labels
    score = scorer.evaluate(sketch)                 # test.py's metrics on a labelled sketch

Parts: `frame` (256 frame, 512-px footprints, image, model input), `scoring` (prompt ensemble,
the normalisation quirk, maps), `evaluate` (ground truth, stroke vote, metrics); the network is
`sketchkit.model.reference.ReferenceModel`, imported by `sketchkit.model.import_checkpoint`.

Frames: everything at 512 px is the reference raster (`frame` module docstring); `ReferenceView.transform`
maps sketch canvas units to it in sketchkit's `Transform` convention, so maps and labels can be drawn or
voted in sketchkit's frames (`transform.resized(n)` for an n-px raster of the same framing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sketchkit.metrics import SketchScore
from sketchkit.reference import evaluate as _evaluate
from sketchkit.reference import scoring
from sketchkit.reference.frame import SIDE, Footprints, input_tensor, pixel_transform, sketch_image, stroke_footprints, to_frame
from sketchkit.types import Sketch, Transform

__all__ = ["ReferencePrediction", "ReferenceScorer", "ReferenceView", "reference_input", "reference_predict"]


@dataclass(frozen=True)
class ReferenceView:
    """A sketch as the reference sees it (S strokes).

    frame_strokes: S arrays (P_i, 2) float64, the strokes in the reference's 256 frame.
    footprints:    per-stroke 512-px masks (sparse; `footprints.masks()` gives (S, 512, 512) bool).
    image:         (512, 512) uint8 sketch image, 0 = ink, 255 = paper.
    tensor:        (1, 3, 224, 224) float32 CLIP-normalised model input (CPU).
    transform:     canvas units -> 512-px raster (sketchkit convention, see `frame.pixel_transform`).
    """

    frame_strokes: tuple[np.ndarray, ...]
    footprints: Footprints
    image: np.ndarray
    tensor: torch.Tensor
    transform: Transform

    @property
    def ink(self) -> np.ndarray:
        """(512, 512) bool: pixels of any stroke's footprint (the reference's ground-truth ink)."""
        return self.image == 0


def reference_input(sketch: Sketch) -> ReferenceView:
    """The reference's view of `sketch` (frame, footprints, image, model input); no model involved."""
    strokes = to_frame(sketch)
    footprints = stroke_footprints(strokes)
    image = sketch_image(footprints)
    return ReferenceView(strokes, footprints, image, input_tensor(image), pixel_transform(sketch))


@dataclass(frozen=True)
class ReferencePrediction:
    """test.py's prediction for one sketch and one class list (C classes, S strokes).

    classes:       the C class names; index c refers to classes[c].
    maps:          (C, 512, 512) float32 per-class maps in [0, 1] (min-max normalised, bilinear).
    pixel_labels:  (512, 512) int64 argmax class at EVERY pixel (ties to the first class).
    stroke_labels: (S,) int64 mode of pixel_labels over each stroke's footprint (ties to the smaller
                   index), -1 for a stroke with an empty footprint (drawn outside the raster).
    """

    classes: tuple[str, ...]
    maps: np.ndarray
    pixel_labels: np.ndarray
    stroke_labels: np.ndarray

    def ink_labels(self, view: ReferenceView) -> np.ndarray:
        """(512, 512) int64 pixel labels on the view's ink, -1 elsewhere."""
        return np.where(view.ink, self.pixel_labels, -1)


class ReferenceScorer:
    """Encode once, score any label set, with test.py's arithmetic (`scoring`).

    model: a `sketchkit.model.reference.ReferenceModel`. Text features are cached per class name
    (each name's 85-prompt ensemble is independent of the others), so a vocabulary costs its text
    tower passes once per scorer.
    """

    def __init__(self, model):
        self.model = model
        self._text: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, view: ReferenceView) -> torch.Tensor:
        """(N, E) float32 visual features of one view, label-independent (N = 1 + prompts + 196)."""
        return self.model.encode_image(view.tensor)[0]

    @torch.no_grad()
    def encode_batch(self, views: Sequence[ReferenceView]) -> torch.Tensor:
        """(B, N, E) visual features of several views in one forward (equal to `encode` per view up to
        float rounding)."""
        return self.model.encode_image(torch.cat([v.tensor for v in views]))

    @torch.no_grad()
    def text(self, classes: Sequence[str]) -> torch.Tensor:
        """(C, E) float32 class text: 85-template ensemble minus the ensemble of "" (not re-normalised)."""
        names = [n for n in dict.fromkeys([scoring.REDUNDANT, *classes]) if n not in self._text]
        if names:
            for name, feature in zip(names, scoring.ensemble_features(self.model.encode_text_raw, names)):
                self._text[name] = feature
        return torch.stack([self._text[c] for c in classes]) - self._text[scoring.REDUNDANT][None]

    @torch.no_grad()
    def maps(self, features: torch.Tensor, classes: Sequence[str], size: int = SIDE) -> torch.Tensor:
        """(C, size, size) float32 per-class maps on the model's device from (N, E) features."""
        if not classes:
            raise ValueError("at least one class is needed")
        return scoring.pixel_maps(features, self.text(classes).to(features.device), self.model.patch_start, size)

    def predict(self, view: ReferenceView, classes: Sequence[str], *, features: torch.Tensor | None = None) -> ReferencePrediction:
        """Maps, pixel labels and stroke labels of `view` over `classes` (in the given order; the
        reference uses the sorted unique labels). `features`: from `encode(view)`, to reuse an encode."""
        features = self.encode(view) if features is None else features
        maps = self.maps(features, classes)
        labels = scoring.argmax_labels(maps).cpu().numpy().astype(np.int64)
        return ReferencePrediction(tuple(classes), maps.float().cpu().numpy(), labels,
                                   _evaluate.stroke_votes(labels, view.footprints))

    def evaluate(self, sketch: Sketch, view: ReferenceView | None = None, *, features: torch.Tensor | None = None,
                 name: str = "") -> tuple[SketchScore, ReferencePrediction, np.ndarray]:
        """test.py on one labelled sketch: classes = its sorted unique labels; returns (metrics as a
        SketchScore of fractions, the prediction, the (512, 512) int64 ground truth with -1 = blank)."""
        view = reference_input(sketch) if view is None else view
        classes = _evaluate.reference_classes(sketch.labels or [None])
        prediction = self.predict(view, classes, features=features)
        truth_strokes = _evaluate.stroke_classes(sketch.labels, classes)
        truth = _evaluate.gt_pixel_classes(view.footprints, truth_strokes, len(classes))
        scores = _evaluate.score(prediction.pixel_labels, truth, prediction.stroke_labels, truth_strokes, len(classes),
                                 name or (sketch.source or ""))
        return scores, prediction, truth


def reference_predict(model, view: ReferenceView, classes: Sequence[str]) -> ReferencePrediction:
    """One-shot `ReferenceScorer(model).predict(view, classes)` (no caching across calls)."""
    return ReferenceScorer(model).predict(view, classes)
