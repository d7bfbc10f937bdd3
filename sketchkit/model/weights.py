"""Where backbone weights come from, resolved in one written order.

1. an explicit path (`--weights PATH`),
2. the `SKETCHKIT_WEIGHTS` environment variable,
3. the backbone's open_clip pretrained tag (downloaded once, then cached by huggingface_hub).

A failure raises `WeightsError` naming all three ways; there is never a silent fall back
to random weights. Files are read only as safetensors or with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from pathlib import Path

import torch

from ..errors import WeightsError

WEIGHTS_ENV = "SKETCHKIT_WEIGHTS"
HUB_HOST = ("huggingface.co", 443)


def how_to_provide(backbone: str) -> str:
    return (
        f"pass --weights PATH (an open_clip {backbone} state dict: .safetensors, .bin or .pt), "
        f"set {WEIGHTS_ENV}=PATH, or run once with network access so open_clip can download and cache them "
        "(or use --backbone tiny-random for a random-weight test model)"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or .pt/.bin/.pth with torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a foreign file is the user's file problem
        if "Weights only load failed" in str(exc):
            detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
            raise WeightsError(f"cannot read weights {path}: it needs pickled Python objects besides tensors, which "
                               f"sketchkit never unpickles (torch.load with weights_only=True{': ' + detail[:160] if detail else ''}); "
                               "re-save it as a plain state dict of tensors") from None
        hint = ""
        if "TorchScript" in str(exc) or "constants.pkl" in str(exc):
            hint = " (a TorchScript archive such as OpenAI's ViT-B-16.pt is code, not weights; use open_clip's state dict)"
        raise WeightsError(f"cannot read weights {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}{hint}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


@contextlib.contextmanager
def quiet_logs():
    """Silence library log lines (huggingface_hub retries, open_clip's "initialized randomly"):
    sketchkit says itself where weights came from, in one place."""
    logger = logging.getLogger("huggingface_hub")
    root_level = logging.getLogger().level
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)
        logging.getLogger().setLevel(root_level)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def download_pretrained(clip_model: str, tag: str, name: str | None = None) -> Path:
    """Path of the cached open_clip weights for (clip_model, tag), downloading them if needed.

    Looks in the huggingface_hub cache first; without a cached copy it fails within seconds when
    HF_HUB_OFFLINE is set or the hub cannot be reached, instead of open_clip's minute of retries.
    """
    import open_clip

    name = name or clip_model  # the backbone name users typed, for messages
    cfg = open_clip.get_pretrained_cfg(clip_model, tag)
    hub = (cfg or {}).get("hf_hub", "")
    if not hub:
        tags = open_clip.list_pretrained_tags_by_model(clip_model)
        raise WeightsError(f"open_clip has no pretrained tag {tag!r} for {clip_model} (known: {', '.join(tags)})")
    repo_id, filename = os.path.split(hub)  # "org/name/" -> default file names below
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in candidates:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return Path(cached)
    if _offline():
        raise WeightsError(f"{name} '{tag}' weights are not cached and HF_HUB_OFFLINE is set: {how_to_provide(name)}")
    if not _hub_reachable():
        raise WeightsError(f"cannot download {name} '{tag}' weights (no connection to huggingface.co): {how_to_provide(name)}")
    last: Exception | None = None
    with quiet_logs():
        for name in candidates:
            try:
                return Path(hf_hub_download(repo_id, name))
            except Exception as exc:  # try the next file name, then report
                last = exc
    raise WeightsError(f"download of {name} '{tag}' weights failed ({type(last).__name__}): {how_to_provide(name)}")


def resolve_weights(clip_model: str, tag: str | None, weights: str | os.PathLike | None, name: str | None = None) -> tuple[Path | None, str]:
    """Return (path to load, description) by the order in the module docstring.

    (None, "random init (seed N)") is only returned for backbones whose config has no pretrained
    tag (the tiny test backbone) and no explicit weights.
    """
    if weights:
        return Path(weights), f"weights file {weights}"
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env), f"{WEIGHTS_ENV}={env}"
    if tag is None:
        return None, "random weights"
    return download_pretrained(clip_model, tag, name), f"open_clip pretrained '{tag}'"


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short stable hash of backbone weights (a few tensors that every CLIP checkpoint has)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        if key.endswith(("conv1.weight", "class_embedding", "visual.proj", "token_embedding.weight")):
            digest.update(key.encode())
            digest.update(state[key].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
