"""Facts for `sketchkit doctor`: each check returns a `Check` and never raises."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report. ok: False when it is a problem the user has to fix."""

    item: str
    status: str
    ok: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def collect(backbone: str | None, weights: str | None, *, check_weights: bool = True) -> list[Check]:
    import torch

    from . import __version__

    checks = [
        Check("sketchkit", __version__),
        Check("python", platform.python_version()),
        Check("torch", torch.__version__),
        Check("open_clip_torch", _version("open_clip_torch")),
        _cairo(),
        Check("CUDA", f"available: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "not available (CPU only)"),
        _triton(),
        _vv_impl(),
    ]
    checks.append(_weights(backbone, weights) if check_weights else Check("weights", "not checked"))
    return checks


def _cairo() -> Check:
    try:
        import cairocffi

        return Check("cairosvg / cairo", f"{_version('cairosvg')} / {cairocffi.cairo_version_string()}")
    except Exception as exc:  # missing system library: say how to fix
        return Check("cairosvg / cairo", f"cairo library missing ({type(exc).__name__}): install cairo "
                     "(apt install libcairo2 / brew install cairo)", ok=False)


def _triton() -> Check:
    try:
        import torch

        from sketchkit.kernels import TRITON_AVAILABLE

        if not TRITON_AVAILABLE:
            return Check("triton", "not importable (fused kernel unavailable; sdpa path used)")
        return Check("triton", "ready (CUDA)" if torch.cuda.is_available() else "installed; no GPU, so the CPU path uses sdpa")
    except Exception as exc:
        return Check("triton", f"error: {type(exc).__name__}: {exc}", ok=False)


def _vv_impl() -> Check:
    try:
        import torch

        from .model.attention import resolve_impl

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        source = f"SKETCHKIT_VV_IMPL={os.environ['SKETCHKIT_VV_IMPL']}" if os.environ.get("SKETCHKIT_VV_IMPL") else "auto"
        return Check("v-v attention impl", f"{resolve_impl(None, device)} ({source})")
    except Exception as exc:
        return Check("v-v attention impl", f"error: {exc}", ok=False)


def _weights(backbone: str | None, weights: str | None) -> Check:
    from .errors import SketchkitError
    from .model import DEFAULT_BACKBONE
    from .model.factory import get_backbone_config
    from .model.weights import resolve_weights

    backbone = backbone or DEFAULT_BACKBONE
    try:
        config = get_backbone_config(backbone)
        path, source = resolve_weights(config.clip_model, config.pretrained, weights, config.name)
        return Check("weights", f"{backbone}: {source}" + (f" -> {path}" if path else " (random test weights)"))
    except SketchkitError as exc:
        return Check("weights", f"{backbone}: {exc}", ok=False)
