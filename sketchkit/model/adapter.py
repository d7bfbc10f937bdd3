"""Trained parts of SketchCLIP as a small safetensors adapter with a JSON config.

The adapter holds only what fine-tuning changes (visual LayerNorms, prompts, cross-attention,
theta) under SketchCLIP's parameter names. Its config (in the safetensors metadata, and copied
to a sidecar .json for people) records the backbone name and weights fingerprint; loading onto
another backbone is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import __version__
from ..errors import WeightsError
from .encoder import SketchCLIP

ADAPTER_KEY = "sketchkit_adapter"
ADAPTER_FORMAT = 2  # 2: prompts enter before ln_pre, after the class token (the reference's form)


def adapter_state(model: SketchCLIP) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {name: params[name].detach().float().contiguous().cpu() for name in model.trainable_names()}


def save_adapter(model: SketchCLIP, path: str | Path, extra: dict | None = None) -> Path:
    """Write `path` (.safetensors) and `path.with_suffix('.json')` atomically."""
    from safetensors.torch import save_file

    from ..files import atomic_path, atomic_write_text

    path = Path(path)
    config = {
        "adapter_format": ADAPTER_FORMAT,
        "sketchkit_version": __version__,
        "backbone": model.config.name,
        "clip_model": model.config.clip_model,
        "weights_fingerprint": model.fingerprint,
        "weights_source": model.weights_source,
        "num_prompts": int(model.prompts.shape[0]),
        "taps": list(model.config.taps),
        "threshold": float(model.threshold().detach()),
        **(extra or {}),
    }
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    with atomic_path(path) as tmp:
        save_file(adapter_state(model), str(tmp), metadata={ADAPTER_KEY: text})
    atomic_write_text(path.with_suffix(".json"), text + "\n")
    return path


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of an adapter file; WeightsError for anything else."""
    return _read(path, with_tensors=True)


def read_adapter_config(path: str | Path) -> dict:
    """The config of an adapter or imported model without reading its tensors (`origin` says which:
    "reference" for `import_checkpoint`'s files, absent for sketchkit's own adapters)."""
    return _read(path, with_tensors=False)[1]


def _read(path: str | Path, *, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"adapter not found: {path}", hint="adapter")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except Exception as exc:
        raise WeightsError(f"{path} is not a safetensors adapter ({type(exc).__name__})", hint="adapter") from None
    return tensors, _parse_config(meta, path)


def _parse_config(meta: dict, path: Path) -> dict:
    if ADAPTER_KEY not in meta:
        raise WeightsError(f"{path} is a safetensors file but not a sketchkit adapter (no '{ADAPTER_KEY}' metadata)")
    try:
        config = json.loads(meta[ADAPTER_KEY])
    except json.JSONDecodeError:
        raise WeightsError(f"{path}: adapter config is not valid JSON") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: adapter config is not a JSON object")
    return config


def load_adapter(model: SketchCLIP, path: str | Path) -> dict:
    """Load adapter weights into `model` in place; returns the adapter config."""
    tensors, config = read_adapter(path)
    if config.get("origin", "sketchkit") != "sketchkit":
        raise WeightsError(f"{path} is an imported {config['origin']} model, not an adapter: load it with "
                           "sketchkit.model.import_checkpoint.load_reference_model")
    if config.get("adapter_format") != ADAPTER_FORMAT:
        raise WeightsError(f"{path} is adapter format {config.get('adapter_format', 1)}; this sketchkit reads format "
                           f"{ADAPTER_FORMAT} (prompts before ln_pre): retrain it, or import the reference checkpoint again")
    if config.get("backbone") != model.config.name:
        raise WeightsError(f"{path} was trained on backbone {config.get('backbone')!r}, not {model.config.name!r}",
                           hint="backbone")
    if config.get("weights_fingerprint") and model.fingerprint and config["weights_fingerprint"] != model.fingerprint:
        raise WeightsError(
            f"{path} was trained on other {model.config.name} weights (fingerprint {config['weights_fingerprint']}, "
            f"these are {model.fingerprint}: {model.weights_source})"
        )
    prompts = tensors.get("prompts")
    if prompts is not None and prompts.ndim == 2 and prompts.shape[1] == model.prompts.shape[1]:
        model.set_num_prompts(prompts.shape[0])  # adapters may use another prompt count (ablations)
    params = dict(model.named_parameters())
    allowed = set(model.trainable_names())
    bad = [k for k in tensors if k not in allowed]
    if bad:
        raise WeightsError(f"{path} holds parameters an adapter may not change: {bad[:3]}")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise WeightsError(f"{path}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(params[name].shape)}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].dtype))
    return config
