"""An imported reference model (`sketchkit import-checkpoint`) as a Segmenter, with either scoring rule.

- scoring "reference" (the default for imported models): the reference code's `test.py`, quirk
  included (`sketchkit.reference`): its own model input (the 256 frame, 512-px Bresenham footprints
  with the cross dilation, PIL's bicubic resize to 224), the 85-template text ensemble minus the
  ensemble of "", the normalisation over the class-copy axis, per-class min-max, bilinear maps at
  512 px, and each stroke labelled by the mode of the argmax over its whole footprint (ties to the
  smaller class index). Results live in that 512-px frame (`SegmentResult.raster.transform`).
- scoring "paper": the same network on sketchkit's own 224-px raster, scored as the paper writes
  it (cosine of L2-normalised features with "A sketch of a {}.", bicubic maps, majority vote).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import DEFAULT_TEMPLATE, prompt_for
from ..model.encoder import images_to_tensor
from ..model.similarity import patch_similarity, upsample
from ..raster import rasterize
from ..reference import ReferenceScorer, ReferenceView, reference_input
from ..reference.frame import SIDE
from ..types import Raster, Sketch, StrokeVotes
from ..vote import rank_votes
from .methods import Segmenter

SCORINGS = ("paper", "reference")


@dataclass(frozen=True)
class ReferenceRaster(Raster):
    """The reference's 512-px view as a Raster: image = the sketch image / 255, stroke_ids = the highest
    stroke index whose footprint covers the pixel (-1 = none), transform = canvas -> 512 px; `view`
    keeps the footprints the stroke vote needs."""

    view: ReferenceView | None = None


def reference_raster(sketch: Sketch) -> ReferenceRaster:
    view = reference_input(sketch)
    footprints = view.footprints
    ids = np.full(footprints.side * footprints.side, -1, dtype=np.int32)
    np.maximum.at(ids, footprints.pixels, footprints.owners().astype(np.int32))
    return ReferenceRaster(image=view.image.astype(np.float32) / 255.0,
                           stroke_ids=ids.reshape(footprints.side, footprints.side), transform=view.transform, view=view)


def footprint_votes(scores: np.ndarray, view: ReferenceView, top_k: int = 3) -> StrokeVotes:
    """test.py's stroke vote: the argmax class at every pixel of a stroke's footprint, the stroke takes the
    most frequent one (ties to the smaller index; an empty footprint: -1). Confidence: that class's
    share of the footprint; top: classes by count."""
    winners = np.asarray(scores).argmax(axis=0).reshape(-1)
    footprints = view.footprints
    owners = footprints.owners()
    num_strokes, num_classes = footprints.num_strokes, scores.shape[0]
    counts = np.bincount(owners * num_classes + winners[footprints.pixels],
                         minlength=num_strokes * num_classes).reshape(num_strokes, num_classes)
    pixels = np.diff(footprints.offsets)
    return rank_votes(counts, np.zeros(counts.shape), pixels, top_k)


class ReferenceSegmenter(Segmenter):
    """`model`: a `sketchkit.model.reference.ReferenceModel`; `scoring`: "reference" or "paper"."""

    def __init__(self, model, *, scoring: str = "reference", device: str | torch.device = "cpu",
                 weights: dict | None = None, name: str = "sketchkit"):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.model, self.scorer, self.scoring = model, ReferenceScorer(model), scoring
        self.device = torch.device(device)
        self.name, self.weights = name, weights
        self.random_weights = model.weights_source.startswith("random")
        self.input_size = SIDE if scoring == "reference" else model.input_size
        self._text: dict[str, torch.Tensor] = {}
        self.description = (f"{name} (reference architecture, {scoring} scoring) on {model.encoder.config.name} "
                            f"({model.weights_source})")

    def rasterize(self, sketch: Sketch) -> Raster:
        return reference_raster(sketch) if self.scoring == "reference" else rasterize(sketch, self.input_size)

    def encode(self, rasters: list[Raster], sketches: list[Sketch]) -> list[torch.Tensor]:
        """Per sketch (N, E) visual features [CLS, prompts, patches], label-independent."""
        if self.scoring == "reference":
            images = torch.cat([r.view.tensor for r in rasters])
        else:
            images = images_to_tensor(np.stack([r.image for r in rasters]))
        with torch.no_grad():
            return list(self.model.encode_image(images.to(self.device)).float())

    def score(self, features: torch.Tensor, labels: list[str]) -> np.ndarray:
        if self.scoring == "reference":
            return self.scorer.maps(features, labels).float().cpu().numpy()
        patches = F.normalize(features[self.model.patch_start:], dim=-1)
        sim = patch_similarity(patches, self._paper_text(labels).to(patches.device))
        return upsample(sim, self.model.grid, self.input_size).float().cpu().numpy()

    def _paper_text(self, labels: list[str]) -> torch.Tensor:
        missing = [n for n in dict.fromkeys(labels) if n not in self._text]
        if missing:
            with torch.no_grad():
                emb = self.model.encode_text_raw([prompt_for(n, DEFAULT_TEMPLATE) for n in missing])
            self._text.update(zip(missing, F.normalize(emb, dim=-1)))
        return torch.stack([self._text[n] for n in labels])

    def vote(self, scores: np.ndarray, raster: Raster, sketch: Sketch, *, scores_at=None, top_k: int = 3) -> StrokeVotes:
        if self.scoring == "reference":
            return footprint_votes(scores, raster.view, top_k)
        return super().vote(scores, raster, sketch, scores_at=scores_at, top_k=top_k)
