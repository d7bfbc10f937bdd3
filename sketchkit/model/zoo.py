"""The segmentation models selectable with `--model`, behind one small interface.

    features = model.encode(rasters, sketches)   # expensive, once per sketch
    scores = model.score(features[i], labels)    # (C, size, size) float32, cheap, any label set

- `oracle`: each pixel gets its ground-truth stroke label (checks raster + vote end to end).
- `clip`: plain CLIP zero-shot, last-layer patch tokens, one prompt.
- `clip-surgery`: v-v dual path at inference, prompt ensemble, redundant-feature removal.
- `sketchkit`: the paper's model: dual path + trained adapter (LN, prompts), cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, UsageError
from ..labels import PROMPT_ENSEMBLE, prompt_for
from ..types import Raster, Sketch
from .compile import is_compiled
from .encoder import SketchCLIP, images_to_tensor

MODEL_NAMES = ("sketchkit", "clip-surgery", "clip", "oracle")


class OracleModel:
    """Scores from ground truth: one-hot of the stroke label at ink pixels; non-ink pixels take the
    label of the nearest ink pixel so upsampled maps stay exact near lines."""

    name = "oracle"
    description = "oracle (ground-truth stroke labels)"

    def encode(self, rasters: list[Raster], sketches: list[Sketch]) -> list[tuple[Raster, Sketch]]:
        for sketch in sketches:
            if not sketch.has_labels:
                raise InputError("the oracle model needs ground-truth stroke labels", sketch.source)
        return list(zip(rasters, sketches))

    def score(self, features: tuple[Raster, Sketch], labels: list[str]) -> np.ndarray:
        raster, sketch = features
        return self._scores_from_ids(raster.stroke_ids, sketch, labels)

    def score_at(self, features: tuple[Raster, Sketch], labels: list[str], transform, strokes) -> np.ndarray:
        """Scores at a finer raster where only `strokes` are drawn (used for strokes hidden at 224)."""
        from ..raster import render_stroke_ids

        _, sketch = features
        return self._scores_from_ids(render_stroke_ids(sketch, transform, strokes=strokes), sketch, labels)

    @staticmethod
    def _scores_from_ids(ids: np.ndarray, sketch: Sketch, labels: list[str]) -> np.ndarray:
        from scipy.ndimage import distance_transform_edt

        index = {name: i for i, name in enumerate(labels)}
        stroke_class = np.array([index.get(name, -1) if name is not None else -1 for name in sketch.labels], dtype=np.int64)
        pixel_class = np.where(ids >= 0, stroke_class[np.clip(ids, 0, None)], -1)
        known = pixel_class >= 0
        scores = np.zeros((len(labels), *ids.shape), dtype=np.float32)
        if known.any():
            _, (rows, cols) = distance_transform_edt(~known, return_indices=True)
            np.put_along_axis(scores, pixel_class[rows, cols][None], 1.0, axis=0)
        return scores


class ClipSegmenter:
    """CLIP-family zero-shot / fine-tuned segmenters on a SketchCLIP encoder."""

    def __init__(
        self,
        encoder: SketchCLIP,
        mode: str,
        *,
        device: str | torch.device = "cpu",
        ensemble: bool | None = None,
        dual: bool | None = None,
    ):
        if mode not in ("clip", "clip-surgery", "sketchkit"):
            raise UsageError(f"unknown CLIP mode {mode!r}")
        self.encoder = encoder
        self.mode = mode
        self.name = mode
        self.dual = mode != "clip" if dual is None else dual  # an adapter trained without v-v is scored without it
        self.device = torch.device(device)
        self.templates = PROMPT_ENSEMBLE if (mode == "clip-surgery" if ensemble is None else ensemble) else (PROMPT_ENSEMBLE[0],)
        self.autocast = self.device.type == "cuda"
        self._text_cache: dict[str, torch.Tensor] = {}
        self._compiled_batches: set[int] = set()  # batch sizes a compiled encoder has a graph for
        source = encoder.weights_source.replace("random weights", "RANDOM WEIGHTS")
        self.description = f"{mode} on {encoder.config.name} ({source})"

    # ---- text -----------------------------------------------------------------------------
    def text_features(self, labels: list[str]) -> torch.Tensor:
        """(C, E) normalised prompt(-ensemble) embeddings, cached per label."""
        missing = [name for name in dict.fromkeys(labels) if name not in self._text_cache]
        if missing:
            prompts = [prompt_for(name, t) for name in missing for t in self.templates]
            with torch.no_grad():
                emb = self.encoder.encode_text(prompts).view(len(missing), len(self.templates), -1)
            emb = F.normalize(emb.mean(1), dim=-1)
            self._text_cache.update(zip(missing, emb))
        return torch.stack([self._text_cache[name] for name in labels])

    # ---- vision ---------------------------------------------------------------------------
    def encode(self, rasters: list[Raster], sketches: list[Sketch] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Rasters (224 px) -> per sketch (scene (E,), patches (P, E)), both L2-normalised."""
        images = images_to_tensor(np.stack([r.image for r in rasters]), device=self.device)
        count = len(rasters)
        if is_compiled(self.encoder):
            # a compiled encoder compiles once per batch size (seconds to a minute): a short batch (the last
            # of a run) is padded to the smallest size already compiled that holds it
            padded = min((b for b in self._compiled_batches if b >= count), default=count)
            self._compiled_batches.add(padded)
            if padded > count:
                images = torch.cat([images, images.new_zeros(padded - count, *images.shape[1:])])
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.encoder.forward_features(images, dual=self.dual, prompts=self.mode == "sketchkit")
        self.grid = out.grid
        scene, patches = out.scene[:count].float(), out.patches[:count].float()
        return list(zip(F.normalize(scene, dim=-1), F.normalize(patches, dim=-1)))

    def patch_similarity(self, features: tuple[torch.Tensor, torch.Tensor], labels: list[str]) -> torch.Tensor:
        """One sketch's (scene, patches) x C labels -> (C, gh, gw) similarity."""
        scene, patches = features
        text = self.text_features(labels).to(patches.device)
        if self.mode == "clip-surgery":
            sim = feature_surgery(scene, patches, text)
        else:
            sim = patches @ text.T  # (P, C) cosine similarity
        return sim.T.reshape(len(labels), *self.grid)

    def score(self, features: tuple[torch.Tensor, torch.Tensor], labels: list[str], size: int = 224) -> np.ndarray:
        sim = self.patch_similarity(features, labels)
        maps = F.interpolate(sim[None], size=(size, size), mode="bicubic", align_corners=False)[0]
        return maps.float().cpu().numpy()


def feature_surgery(scene: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's redundant-feature removal (Li et al.): (E,), (P, E), (C, E) -> (P, C).

    Element-wise products of patch and text features, re-weighted by the scene token's class
    probabilities so that obvious classes do not dominate; their mean over classes (the shared,
    class-agnostic response) is subtracted before the sum that makes the cosine similarity.
    """
    prob = (scene @ text.T * 2).softmax(-1)  # (C,)
    weight = prob / prob.mean()
    feats = patches[:, None, :] * (text * weight[:, None])[None]  # (P, C, E)
    return (feats - feats.mean(1, keepdim=True)).sum(-1)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backbone: str = "ViT-B-16"
    weights: str | None = None
    adapter: str | None = None
    device: str = "auto"
    random_init: bool = False
    compile: bool = False  # torch.compile the image encoder (sketchkit.model.compile); first batch pays the compile


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def default_model_name(adapter: str | None) -> str:
    return "sketchkit" if adapter else "clip-surgery"


def build_model(spec: ModelSpec, encoder: SketchCLIP | None = None):
    """ModelSpec -> OracleModel | ClipSegmenter. `encoder` lets several models share one backbone."""
    from .adapter import load_adapter
    from .factory import create_encoder

    if spec.name not in MODEL_NAMES:
        raise UsageError(f"unknown model {spec.name!r}; choose from {', '.join(MODEL_NAMES)}")
    if spec.name == "oracle":
        return OracleModel()
    if spec.name == "sketchkit" and not spec.adapter:
        raise UsageError("--model sketchkit needs a trained adapter: pass --adapter PATH (made by `sketchkit train`)")
    device = resolve_device(spec.device)
    if encoder is None or spec.name == "sketchkit":
        encoder = create_encoder(spec.backbone, weights=spec.weights, device=device, random_init=spec.random_init)
    dual = None
    if spec.name == "sketchkit":
        dual = load_adapter(encoder, spec.adapter).get("training", {}).get("dual", True)
    if spec.compile:
        from .compile import compile_encoder, tune_malloc

        if device.type == "cpu":
            tune_malloc()
        compile_encoder(encoder)
    return ClipSegmenter(encoder, spec.name, device=device, dual=dual)
