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
import re
from pathlib import Path

import torch

from ..errors import WeightsError

WEIGHTS_ENV = "SKETCHKIT_WEIGHTS"


MAX_WEIGHTS_BYTES = 4 * 2**30
"""Largest weights file read when no model size bounds it (4 GiB unpacked: a ViT-L/14 at float32 is 1.7 GiB)."""


def state_bytes(tensors) -> int:
    """Bytes of a state dict (or a module's parameters and buffers) at float32: the base of the size caps."""
    if isinstance(tensors, torch.nn.Module):
        tensors = {**dict(tensors.named_parameters()), **dict(tensors.named_buffers())}
    return sum(t.numel() * 4 for t in tensors.values())


def weights_cap(expected_bytes: int) -> int:
    """What a weights file for a model of `expected_bytes` may unpack to: twice it (optimizer-free extras,
    another dtype) plus 64 MiB."""
    return 2 * expected_bytes + 64 * 2**20


def check_finite(tensors: dict[str, torch.Tensor], path) -> None:
    """WeightsError naming the first floating-point tensor holding NaN or infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: {name} holds non-finite values (NaN or infinity); refusing these weights")


def _unpacked_bytes(path: Path) -> int:
    """What loading `path` may allocate: a zip archive's (torch's format) uncompressed sizes, else the file
    size (safetensors and legacy torch pickles store tensors uncompressed)."""
    import zipfile

    if path.suffix != ".safetensors" and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise WeightsError(f"cannot read weights {path}: a damaged zip archive ({exc})") from None
    return path.stat().st_size


def read_state_dict(path: str | os.PathLike, max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or .pt/.bin/.pth with torch.load(weights_only=True).

    Refused (WeightsError) before loading: an empty file, and one unpacking to more than `max_bytes`
    (a zip bomb); after loading: anything but tensors, and non-finite values."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"cannot read weights {path}: the file is empty")
    unpacked = _unpacked_bytes(path)
    if unpacked > max_bytes:
        raise WeightsError(f"cannot read weights {path}: it unpacks to {unpacked / 2**20:,.0f} MiB uncompressed, more "
                           f"than the {max_bytes / 2**20:,.0f} MiB these weights can need")
    state = _load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    check_finite(state, path)
    return state


def _load(path: Path):
    """The file's content: safetensors, or torch.load(weights_only=True) with its warnings silenced (a refusal
    is one line)."""
    import warnings

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a foreign file is the user's file problem
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL (\S+)", text)
            raise WeightsError(f"cannot read weights {path}: it needs pickled Python objects besides tensors"
                               f"{' (' + found.group(1) + ')' if found else ''}, which sketchkit never unpickles "
                               "(torch.load with weights_only=True); re-save it as a plain state dict of tensors") from None
        hint = ""
        if "TorchScript" in text or "constants.pkl" in text:
            hint = " (a TorchScript archive such as OpenAI's ViT-B-16.pt is code, not weights; use open_clip's state dict)"
        first = text.splitlines()[0][:200] if text.strip() else ""
        raise WeightsError(f"cannot read weights {path}: {type(exc).__name__}{': ' + first if first else ''}{hint}") from None


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


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def download_pretrained(clip_model: str, tag: str, backbone: str | None = None) -> Path:
    """Path of the cached open_clip weights for (clip_model, tag), downloading them if needed.

    Looks in the huggingface_hub cache first. Without a cached copy it asks the hub for the file's
    metadata once, without retries (huggingface_hub's HF_HUB_OFFLINE, HF_ENDPOINT, proxy and
    HF_HUB_ETAG_TIMEOUT settings apply), so an offline machine fails within seconds instead of
    after a minute of download retries. `backbone` is the name users typed, for messages.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    backbone = backbone or clip_model
    from . import openclip_seam as seam

    cfg = seam.pretrained_cfg(clip_model, tag)
    hub = (cfg or {}).get("hf_hub", "")
    if not hub:
        tags = seam.pretrained_tags(clip_model)
        raise WeightsError(f"open_clip has no pretrained tag {tag!r} for {clip_model} (known: {', '.join(tags)})")
    repo_id, filename = os.path.split(hub)  # "org/name/" -> default file names below
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for candidate in candidates:
        cached = try_to_load_from_cache(repo_id, candidate)
        if isinstance(cached, str):
            return Path(cached)
    if _offline():
        raise WeightsError(f"{backbone} '{tag}' weights are not cached and HF_HUB_OFFLINE is set", hint="weights")
    failure = "not found on the hub"
    with quiet_logs():
        for candidate in candidates:
            try:
                get_hf_file_metadata(hf_hub_url(repo_id, candidate), retry_on_errors=False)
            except Exception as exc:  # no connection, not found, ...: try the next file name, then report
                failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                continue
            try:
                return Path(hf_hub_download(repo_id, candidate))
            except Exception as exc:
                failure = f"download failed ({type(exc).__name__})"
    raise WeightsError(f"cannot get {backbone} '{tag}' weights ({failure})", hint="weights")


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
