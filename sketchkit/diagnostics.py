"""Facts for `sketchkit doctor`: each check returns (item, status text) and never raises."""

from __future__ import annotations

import os
import platform


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def collect(backbone: str, weights: str | None, *, check_weights: bool = True) -> list[tuple[str, str]]:
    import torch

    from . import __version__

    rows = [
        ("sketchkit", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("open_clip_torch", _version("open_clip_torch")),
        ("cairosvg / cairo", f"{_version('cairosvg')} / {_cairo_version()}"),
        ("CUDA", f"available: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "not available (CPU only)"),
        ("triton", _triton_status()),
        ("v-v attention impl", _vv_impl()),
    ]
    rows.append(("weights", _weights_status(backbone, weights) if check_weights else "not checked (--no-check-weights)"))
    return rows


def _cairo_version() -> str:
    try:
        import cairocffi

        return cairocffi.cairo_version_string()
    except Exception as exc:  # missing system library: say how to fix
        return f"cairo library missing ({type(exc).__name__}): install cairo (apt install libcairo2 / brew install cairo)"


def _triton_status() -> str:
    try:
        from sketchkit.kernels import TRITON_AVAILABLE

        import torch

        if not TRITON_AVAILABLE:
            return "not importable (fused kernel unavailable; sdpa path used)"
        return "ready (CUDA)" if torch.cuda.is_available() else "installed; no GPU, so the CPU path uses sdpa"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


def _vv_impl() -> str:
    try:
        import torch

        from .model.attention import resolve_impl

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        source = f"SKETCHKIT_VV_IMPL={os.environ['SKETCHKIT_VV_IMPL']}" if os.environ.get("SKETCHKIT_VV_IMPL") else "auto"
        return f"{resolve_impl(None, device)} ({source})"
    except Exception as exc:
        return f"error: {exc}"


def _weights_status(backbone: str, weights: str | None) -> str:
    from .errors import SketchkitError
    from .model.factory import get_backbone_config
    from .model.weights import resolve_weights

    try:
        config = get_backbone_config(backbone)
        path, source = resolve_weights(config.clip_model, config.pretrained, weights, config.name)
        return f"{backbone}: {source}" + (f" -> {path}" if path else " (tiny test model)")
    except SketchkitError as exc:
        return f"[red]{backbone}: {exc}[/red]"
