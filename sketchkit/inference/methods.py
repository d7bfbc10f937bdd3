"""The segmentation methods behind one protocol (`Segmenter`) and one table (`METHODS`).

    segmenters = build_segmenters(["clip-surgery", "sketchkit"], ModelSpec(adapter="a.safetensors"))
    features = seg.encode(rasters, sketches)   # expensive, once per sketch
    scores = seg.score(features[i], labels)    # (C, size, size) float32, cheap, any label set

Methods (the `--model` names):
- `oracle`: each pixel gets its ground-truth stroke label (checks raster + vote end to end).
- `clip`: plain CLIP zero-shot, last-layer patch tokens, one prompt.
- `clip-surgery`: v-v dual path at inference, prompt ensemble, redundant-feature removal.
- `sketchkit`: the paper's model: dual path + trained adapter (LN, prompts), cosine similarity.

Encoders: methods without an adapter share one backbone encoder (built once per spec); a method
that loads an adapter modifies its encoder, so it always gets one of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, UsageError, WeightsError
from ..labels import PROMPT_ENSEMBLE, prompt_for
from ..model.similarity import feature_surgery, patch_similarity, surgery_weights, upsample
from ..raster import rasterize
from ..types import Raster, Sketch, StrokeVotes, Transform
from ..vote import vote_strokes

TEXT_CHUNK_LABELS = 32
"""Labels whose prompts go through the text tower in one call."""

SCORE_CHUNK_LABELS = 64
"""Labels scored (similarity, upsampling) in one step; the maps go into one preallocated array."""


def _chunks(items: list, size: int):
    return (items[start : start + size] for start in range(0, len(items), size))


class Segmenter:
    """What the engine needs of a method. Subclasses set the attributes and implement encode/score.

    name:           the method's table name; description: human-readable (says RANDOM WEIGHTS when so).
    random_weights: True when the scores come from random backbone weights (meaningless labels).
    input_size:     side of the square raster the method reads (the backbone's input size).
    exact:          True when `score_at` answers exactly at any raster size (the oracle); other
                    methods' maps are upsampled where a finer resolution is needed.
    scoring:        the scoring rule of `score`, recorded in every output ("paper").
    weights:        what the scores depend on (backbone, weights source and fingerprint, adapter
                    path and SHA-256 prefix), None when nothing (the oracle).
    """

    name: str = ""
    description: str = ""
    random_weights: bool = False
    input_size: int = 224
    exact: bool = False
    scoring: str = "paper"
    weights: dict | None = None

    def rasterize(self, sketch: Sketch) -> Raster:
        """The method's view of a sketch: its raster at `input_size` with the stroke-id map."""
        return rasterize(sketch, self.input_size)

    def encode(self, rasters: list[Raster], sketches: list[Sketch]) -> list:
        """Per-sketch features (opaque to the engine), one batch at a time."""
        raise TypeError(f"{type(self).__name__} does not implement encode")

    def score(self, features, labels: list[str]) -> np.ndarray:
        """(C, size, size) float32 per-pixel class scores at the raster size."""
        raise TypeError(f"{type(self).__name__} does not implement score")

    def score_at(self, features, labels: list[str], transform: Transform, strokes: np.ndarray) -> np.ndarray:
        """(C, n, n) scores at a raster of side n = transform.size where only `strokes` are drawn;
        only for `exact` methods."""
        raise TypeError(f"{self.name} scores only at its own raster size")

    def vote(self, scores: np.ndarray, raster: Raster, sketch: Sketch, *, scores_at=None, top_k: int = 3) -> StrokeVotes:
        """Per-stroke labels from pixel scores: the majority vote of `sketchkit.vote` (hidden strokes re-voted)."""
        return vote_strokes(scores, raster, sketch, scores_at=scores_at, top_k=top_k)


class OracleSegmenter(Segmenter):
    """Scores from ground truth: one-hot of the stroke label at ink pixels; non-ink pixels take the
    label of the nearest ink pixel so upsampled maps stay exact near lines."""

    name = "oracle"
    description = "oracle (ground-truth stroke labels)"
    exact = True

    def encode(self, rasters: list[Raster], sketches: list[Sketch]) -> list[tuple[Raster, Sketch]]:
        for sketch in sketches:
            if not sketch.has_labels:
                raise InputError("the oracle model needs ground-truth stroke labels", sketch.source)
        return list(zip(rasters, sketches))

    def score(self, features: tuple[Raster, Sketch], labels: list[str]) -> np.ndarray:
        raster, sketch = features
        return self._scores_from_ids(raster.stroke_ids, sketch, labels)

    def score_at(self, features: tuple[Raster, Sketch], labels: list[str], transform, strokes) -> np.ndarray:
        from ..raster import render_stroke_ids

        _, sketch = features
        return self._scores_from_ids(render_stroke_ids(sketch, transform, strokes=strokes), sketch, labels)

    @staticmethod
    def _scores_from_ids(ids: np.ndarray, sketch: Sketch, labels: list[str]) -> np.ndarray:
        from scipy.ndimage import distance_transform_edt

        stroke_class = sketch.label_indices(labels)
        pixel_class = np.where(ids >= 0, stroke_class[np.clip(ids, 0, None)], -1)
        known = pixel_class >= 0
        scores = np.zeros((len(labels), *ids.shape), dtype=np.float32)
        if known.any():
            _, (rows, cols) = distance_transform_edt(~known, return_indices=True)
            np.put_along_axis(scores, pixel_class[rows, cols][None], 1.0, axis=0)
        return scores


class ClipSegmenter(Segmenter):
    """CLIP-family segmenters on a SketchCLIP encoder: which prompts, paths and similarity they use
    is set at construction (see `METHODS`), never chosen by a mode string at call time."""

    def __init__(self, encoder, *, name: str, device: torch.device, templates: tuple[str, ...], dual: bool,
                 prompts: bool, surgery: bool, weights: dict):
        from ..model.compile import is_compiled

        self.encoder, self.name, self.device = encoder, name, torch.device(device)
        self.templates, self.dual, self.prompts, self.surgery = templates, dual, prompts, surgery
        self.weights = weights
        self.input_size = encoder.input_size
        self.random_weights = encoder.random_weights
        self.autocast = self.device.type == "cuda"
        self._compiled = is_compiled(encoder)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._compiled_batches: set[int] = set()  # batch sizes a compiled encoder has a graph for
        source = "RANDOM WEIGHTS" if self.random_weights else encoder.weights_source
        self.description = f"{name} on {encoder.config.name} ({source})"

    def text_features(self, labels: list[str]) -> torch.Tensor:
        """(C, E) normalised prompt(-ensemble) embeddings, cached per label."""
        missing = [name for name in dict.fromkeys(labels) if name not in self._text_cache]
        for chunk in _chunks(missing, TEXT_CHUNK_LABELS):  # the text tower's activations grow with the prompts
            prompts = [prompt_for(name, t) for name in chunk for t in self.templates]
            with torch.no_grad():
                emb = self.encoder.encode_text(prompts).view(len(chunk), len(self.templates), -1)
            self._text_cache.update(zip(chunk, F.normalize(emb.mean(1), dim=-1)))
        return torch.stack([self._text_cache[name] for name in labels])

    def encode(self, rasters: list[Raster], sketches: list[Sketch] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Rasters -> per sketch (scene (E,), patches (P, E)), both L2-normalised."""
        from ..model.encoder import images_to_tensor

        images = images_to_tensor(np.stack([r.image for r in rasters]), device=self.device)
        count = len(rasters)
        if self._compiled:
            # a compiled encoder compiles once per batch size (seconds to a minute): a short batch (the last
            # of a run) is padded to the smallest size already compiled that holds it
            padded = min((b for b in self._compiled_batches if b >= count), default=count)
            self._compiled_batches.add(padded)
            if padded > count:
                images = torch.cat([images, images.new_zeros(padded - count, *images.shape[1:])])
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.encoder.forward_features(images, dual=self.dual, prompts=self.prompts)
        scene, patches = out.scene[:count].float(), out.patches[:count].float()
        return list(zip(F.normalize(scene, dim=-1), F.normalize(patches, dim=-1)))

    def score(self, features: tuple[torch.Tensor, torch.Tensor], labels: list[str]) -> np.ndarray:
        """(C, size, size) float32 maps, upsampled SCORE_CHUNK_LABELS labels at a time into one array (the
        (P, C, E) surgery products and the upsampled maps would otherwise grow with all labels at once)."""
        scene, patches = features
        text = self.text_features(labels).to(patches.device)
        if self.surgery:
            weight, redundant = surgery_weights(scene, patches, text)
        else:
            sim = patch_similarity(patches, text)  # (C, P): small, one product as before
        out = np.empty((len(labels), self.input_size, self.input_size), dtype=np.float32)
        for start in range(0, len(labels), SCORE_CHUNK_LABELS):
            part = slice(start, start + SCORE_CHUNK_LABELS)
            chunk = feature_surgery(patches, text[part], weight[part], redundant) if self.surgery else sim[part]
            out[part] = upsample(chunk, self.encoder.grid, self.input_size).float().cpu().numpy()
        return out


# ---- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """Which method on which backbone. backbone None: the adapter's recorded backbone, else DEFAULT_BACKBONE."""

    name: str = "clip-surgery"
    backbone: str | None = None
    weights: str | None = None
    adapter: str | None = None
    device: str = "auto"
    compile: bool = False  # torch.compile the image encoder; the first batch of each size pays the compile
    scoring: str | None = None  # "paper" | "reference"; None: "reference" for imported reference models, else "paper"


@dataclass(frozen=True)
class Method:
    """One row of the methods table: build(spec, encoder) -> Segmenter (encoder None for `needs_encoder` False,
    a fresh one when `needs_adapter`)."""

    name: str
    summary: str
    build: Callable
    needs_encoder: bool = True
    needs_adapter: bool = False


def _clip(spec, encoder, device):
    return ClipSegmenter(encoder, name="clip", device=device, templates=PROMPT_ENSEMBLE[:1], dual=False, prompts=False,
                         surgery=False, weights=weights_tag(encoder))


def _clip_surgery(spec, encoder, device):
    return ClipSegmenter(encoder, name="clip-surgery", device=device, templates=PROMPT_ENSEMBLE, dual=True,
                         prompts=False, surgery=True, weights=weights_tag(encoder))


def _sketchkit(spec, encoder, device):
    """The paper's model from a sketchkit adapter, or the reference architecture from an imported
    reference checkpoint (the adapter file's `origin` says which)."""
    from ..model.adapter import load_adapter
    from ..model.factory import create_encoder
    from ..model.import_checkpoint import is_reference_file, load_reference_model

    if is_reference_file(spec.adapter):
        from .reference_method import ReferenceSegmenter

        model = load_reference_model(spec.adapter, backbone=spec.backbone, weights=spec.weights, device=device)
        return ReferenceSegmenter(model, scoring=spec.scoring or "reference", device=device,
                                  weights=weights_tag(model, spec.adapter))
    if spec.scoring == "reference":
        raise UsageError("reference scoring runs the reference architecture: give an imported reference "
                         "checkpoint (sketchkit import-checkpoint) as the adapter", hint="adapter")
    encoder = _prepare(create_encoder(spec.backbone or _default_backbone(), weights=spec.weights, device=device),
                       spec, device)
    config = load_adapter(encoder, spec.adapter)
    dual = config.get("training", {}).get("dual", True)  # an adapter trained without v-v is scored without it
    return sketchkit_segmenter(encoder, device, dual=dual, adapter=spec.adapter)


def sketchkit_segmenter(encoder, device, *, dual: bool = True, adapter: str | None = None) -> ClipSegmenter:
    """The paper's model on `encoder` as it is (adapter loaded, or being trained: training's validation)."""
    return ClipSegmenter(encoder, name="sketchkit", device=device, templates=PROMPT_ENSEMBLE[:1], dual=dual,
                         prompts=True, surgery=False, weights=weights_tag(encoder, adapter))


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sketchkit", "the paper's model: dual path + a trained adapter", _sketchkit, needs_adapter=True),
    Method("clip-surgery", "zero-shot CLIP Surgery: v-v path, prompt ensemble, redundant features removed",
           _clip_surgery),
    Method("clip", "zero-shot CLIP: last-layer patch tokens, one prompt", _clip),
    Method("oracle", "ground-truth stroke labels (checks raster and vote)", lambda spec, encoder, device: OracleSegmenter(),
           needs_encoder=False),
)}


def register_method(method: Method) -> None:
    """Add a method to the table (an existing name is refused)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method


def default_method(adapter: str | None) -> str:
    return "sketchkit" if adapter else "clip-surgery"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("a CUDA device was asked for but no CUDA GPU is available", hint="device")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda", hint="device")
    return torch.device(device)


def resolve_backbone(backbone: str | None, adapter: str | None) -> str:
    """The backbone to build: the one given, else the adapter's recorded one, else DEFAULT_BACKBONE.
    A given backbone that contradicts the adapter's is refused."""
    from ..model.adapter import read_adapter_config
    from ..model import DEFAULT_BACKBONE

    recorded = read_adapter_config(adapter).get("backbone") if adapter else None
    if backbone and recorded and backbone != recorded:
        raise WeightsError(f"{adapter} was trained on backbone {recorded!r}, not {backbone!r}", hint="backbone")
    return backbone or recorded or DEFAULT_BACKBONE


def build_segmenters(names: list[str], spec: ModelSpec) -> list[Segmenter]:
    """One Segmenter per method name, on the backbone `spec` describes (see the module docstring for sharing)."""
    from ..model.factory import create_encoder

    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UsageError(f"unknown model {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"each model may be given once: {', '.join(names)}")
    methods = [METHODS[n] for n in names]
    if any(m.needs_adapter for m in methods) and not spec.adapter:
        raise UsageError("the sketchkit model needs a trained adapter (made by `sketchkit train`)", hint="adapter")
    if spec.scoring not in (None, "paper", "reference"):
        raise UsageError(f"unknown scoring {spec.scoring!r}; choose paper or reference")
    if spec.scoring == "reference" and not all(m.needs_adapter for m in methods):
        plain = next(m.name for m in methods if not m.needs_adapter)
        raise UsageError(f"reference scoring runs an imported reference model (sketchkit), not {plain}")
    device = resolve_device(spec.device) if any(m.needs_encoder for m in methods) else torch.device("cpu")
    from ..model.import_checkpoint import is_reference_file

    if not (spec.adapter and is_reference_file(spec.adapter)):  # an imported model builds from its own record
        spec = replace(spec, backbone=resolve_backbone(spec.backbone, spec.adapter))
    shared = None
    built = []
    for method in methods:
        encoder = None
        if method.needs_encoder and not method.needs_adapter:  # adapter methods build (and change) their own
            shared = shared or _prepare(create_encoder(spec.backbone or _default_backbone(), weights=spec.weights,
                                                       device=device), spec, device)
            encoder = shared
        built.append(method.build(spec, encoder, device))
    return built


def _default_backbone() -> str:
    from ..model import DEFAULT_BACKBONE

    return DEFAULT_BACKBONE


def build_segmenter(spec: ModelSpec) -> Segmenter:
    return build_segmenters([spec.name], spec)[0]


def segmenter_on(name: str, encoder, device: str | torch.device = "cpu", *, adapter: str | None = None) -> Segmenter:
    """Method `name` on an encoder built elsewhere (shared as is; `adapter` is loaded into it)."""
    if name not in METHODS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name].build(ModelSpec(name, adapter=adapter), encoder, torch.device(device))


def _prepare(encoder, spec: ModelSpec, device: torch.device):
    if spec.compile:
        from ..model.compile import compile_encoder, tune_malloc

        if device.type == "cpu":
            tune_malloc()
        compile_encoder(encoder)
    return encoder


def weights_tag(encoder, adapter: str | None = None) -> dict:
    """What a model's numbers depend on: backbone, weights source and fingerprint, adapter file and
    its SHA-256 prefix."""
    from ..files import file_digest

    tag = {"backbone": encoder.config.name, "weights": encoder.weights_source, "fingerprint": encoder.fingerprint or None,
           "adapter": None, "adapter_sha256": None}
    if adapter is not None:
        tag.update(adapter=str(adapter), adapter_sha256=file_digest(adapter) if Path(adapter).is_file() else None)
    return tag
