"""Trained parts of SketchCLIP as a small safetensors adapter with a JSON config.

The adapter holds only what fine-tuning changes (visual LayerNorms, prompts, cross-attention,
theta) under SketchCLIP's parameter names. Its config (in the safetensors metadata, and copied
to a sidecar .json for people) records the backbone name and weights fingerprint; loading onto
another backbone is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .. import __version__
from ..errors import InputError, WeightsError
from .encoder import SketchCLIP
from .weights import check_finite

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


MAX_PROMPTS = 100
"""Most prompt tokens an adapter may hold (the paper uses 3; ablations go to a few dozen)."""
MAX_ADAPTER_BYTES = 4 * 2**30
"""Most bytes of tensors an adapter or imported model may declare when no model bounds it."""


def read_adapter(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of an adapter file; WeightsError for anything else.

    Before any tensor is read, the declared shapes are checked: at most MAX_PROMPTS prompts and
    MAX_ADAPTER_BYTES in all, and with `shapes` (the model's parameters) only those names, in those
    shapes (prompts: any count of the model's width). Tensors holding NaN or infinity are refused."""
    return _read(path, with_tensors=True, shapes=shapes)


def read_adapter_config(path: str | Path) -> dict:
    """The config of an adapter or imported model without reading its tensors (`origin` says which:
    "reference" for `import_checkpoint`'s files, absent for sketchkit's own adapters)."""
    return _read(path, with_tensors=False)[1]


def _read(path: str | Path, *, with_tensors: bool, shapes: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"adapter not found: {path}", hint="adapter")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            declared = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as exc:
        raise WeightsError(f"{path} is not a safetensors adapter ({type(exc).__name__})", hint="adapter") from None
    config = _parse_config(meta, path)
    if not with_tensors:
        return {}, config
    _check_declared(declared, shapes, path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    check_finite(tensors, path)
    return tensors, config


def _check_declared(declared: dict[str, tuple], shapes: dict | None, path: Path) -> None:
    """The shapes a file declares, before its tensors are allocated (see read_adapter)."""
    total = sum(math.prod(shape) * _ITEMSIZE.get(dtype, 8) for shape, dtype in declared.values())
    if total > MAX_ADAPTER_BYTES:
        raise WeightsError(f"{path} declares {total / 2**20:,.0f} MiB of tensors, more than the "
                           f"{MAX_ADAPTER_BYTES / 2**20:,.0f} MiB an adapter may hold")
    for name, (shape, _) in declared.items():
        if name.endswith("prompts") and len(shape) >= 2 and shape[-2] > MAX_PROMPTS:
            raise WeightsError(f"{path}: {name} holds {shape[-2]} prompts, more than the {MAX_PROMPTS} sketchkit loads")
        if shapes is None:
            continue
        if name not in shapes:
            raise WeightsError(f"{path} holds parameters an adapter may not change: {name}")
        want = shapes[name]
        fits = shape[1:] == want[1:] and len(shape) == 2 if name == "prompts" else shape == want
        if not fits:
            raise WeightsError(f"{path}: {name} has shape {shape}, the model expects {want}")


_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _parse_config(meta: dict, path: Path) -> dict:
    if ADAPTER_KEY not in meta:
        raise WeightsError(f"{path} is a safetensors file but not a sketchkit adapter (no '{ADAPTER_KEY}' metadata)")
    from ..io.jsontext import load_json

    try:
        config = load_json(meta[ADAPTER_KEY], where="adapter config: ")
    except InputError as exc:  # malformed, nested too deeply, a huge number
        raise WeightsError(f"{path}: {exc}") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: adapter config is not a JSON object")
    return config


def load_adapter(model: SketchCLIP, path: str | Path) -> dict:
    """Load adapter weights into `model` in place; returns the adapter config. Nothing is changed
    unless the whole adapter fits (config, names, shapes, finite values)."""
    config = read_adapter_config(path)
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
    params = dict(model.named_parameters())
    tensors, config = read_adapter(path, {name: tuple(params[name].shape) for name in model.trainable_names()})
    if "prompts" in tensors:
        model.set_num_prompts(tensors["prompts"].shape[0])  # adapters may use another prompt count (ablations)
        params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].dtype))
    return config
