"""Backbone name + JSON config -> SketchCLIP, with weights resolved in one place.

Configs live in `configs/*.json` (sizes and layer choices only; keyed by file stem). The
open_clip architectures sketchkit adds (the tiny test model) live in `configs/open_clip/` and are
registered with open_clip once, so the tiny model runs exactly the ViT-B/16 code path.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from ..errors import UsageError, WeightsError
from . import openclip_seam as seam
from .encoder import BackboneConfig, SketchCLIP
from .weights import fingerprint, quiet_logs, read_state_dict, resolve_weights, state_bytes, weights_cap

CONFIG_DIR = Path(__file__).parent / "configs"
from . import DEFAULT_BACKBONE


@lru_cache(maxsize=None)
def _configs() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(CONFIG_DIR.glob("*.json"))}


def list_backbones() -> list[str]:
    return list(_configs())


def get_backbone_config(name: str) -> BackboneConfig:
    raw = _configs().get(name)
    if raw is None:
        raise UsageError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}")
    known = {f.name for f in fields(BackboneConfig)}
    values = {k: (tuple(v) if k == "taps" else v) for k, v in raw.items() if k in known}
    return BackboneConfig(name=name, **values)


class _SkipRandomFill(TorchFunctionMode):
    """Skip the random fills (`torch.nn.init.*`, `Tensor.uniform_` / `normal_`)
    while a model whose weights are about to be loaded is built: open_clip's random init of ViT-B/16
    costs about 1.3 s of every cold start and is overwritten at once. Only for a model that then
    loads a complete state dict (load_backbone_weights requires every key); the values left are
    uninitialised memory until then. Non-persistent buffers (the causal mask) are not random fills
    and are built as usual."""

    _SKIPPED = {torch.Tensor.uniform_, torch.Tensor.normal_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # nn.init functions dispatch here as themselves (their inner fills then run without the mode)
        if func in self._SKIPPED or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else (kwargs or {}).get("tensor")
        return func(*args, **(kwargs or {}))


def create_encoder(
    backbone: str = DEFAULT_BACKBONE,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    random_init: bool = False,
    vv_impl: str | None = None,
) -> SketchCLIP:
    """Build a SketchCLIP in eval mode.

    Weights: `weights` path, else $SKETCHKIT_WEIGHTS, else the config's open_clip tag. Random
    weights only for test backbones (no tag) or when `random_init=True` is asked for explicitly
    (benchmarks); `weights_source` then says "random weights".
    """
    config = get_backbone_config(backbone)
    seam.register_configs(str(CONFIG_DIR / "open_clip"))
    if random_init and not weights:
        path, source = None, "random weights (random_init)"
    else:
        path, source = resolve_weights(config.clip_model, config.pretrained, weights, config.name)
    with torch.random.fork_rng(devices=[]), quiet_logs():
        torch.manual_seed(config.seed)
        with _SkipRandomFill() if path is not None else contextlib.nullcontext():
            clip = seam.create_clip(config.clip_model)
        model = SketchCLIP(clip, config, vv_impl=vv_impl)
    # the file may unpack to no more than this backbone can need (a zip bomb is refused before loading)
    state = read_state_dict(path, weights_cap(state_bytes(clip))) if path is not None else None
    if state is not None:
        load_backbone_weights(clip, state, path)
    model.weights_source = source
    model.random_weights = state is None
    model.fingerprint = fingerprint(clip.state_dict())
    return model.eval().to(device)


def clip_from_openai_state(state: dict, path=None) -> torch.nn.Module:
    """An open_clip CLIP built with the sizes an OpenAI-format state dict implies (heads = width // 64,
    as OpenAI's and the reference code's `build_model`), holding those weights in float32, eval mode.

    For ViT-B/16 this is the network of the `ViT-B-16` backbone; for other sizes (the reference fixture's
    width-64, one-head model) no backbone config is needed. WeightsError when the dict is not a CLIP."""
    try:
        sizes = seam.openai_state_sizes(state)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"{path or 'the base weights'} is not an OpenAI-format CLIP state dict (no {exc})") from None
    with torch.random.fork_rng(devices=[]), quiet_logs(), _SkipRandomFill():
        clip = seam.create_clip_for_sizes(sizes)
    load_backbone_weights(clip, state, path)
    return clip.float().eval()


def load_backbone_weights(clip: torch.nn.Module, state: dict, path) -> None:
    """Load an open_clip CLIP state dict (also accepts keys saved from a SketchCLIP, 'clip.' prefixed)."""
    if all(k.startswith("clip.") for k in state):
        state = {k[len("clip."):]: v for k, v in state.items()}
    expected = clip.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or mismatched:
        detail = f"{len(missing)} missing keys (e.g. {missing[:2]})" if missing else ""
        if mismatched:
            k = mismatched[0]
            detail += f"{'; ' if detail else ''}{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)})"
        raise WeightsError(f"{path} does not fit this backbone: {detail}")
    if unexpected and len(unexpected) > len(expected) // 2:
        raise WeightsError(f"{path} does not fit this backbone: {len(unexpected)} unexpected keys (e.g. {unexpected[:2]})")
    clip.load_state_dict({k: state[k] for k in expected}, strict=True)


def save_backbone_weights(model: SketchCLIP, path: str | Path) -> Path:
    """Save the CLIP backbone state dict as safetensors (used for tests and offline demos)."""
    from safetensors.torch import save_file

    from ..files import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.clip.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)
