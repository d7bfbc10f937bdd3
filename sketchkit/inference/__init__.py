"""Inference: the methods table, label policies and the one engine every command runs.

    from sketchkit.inference import Engine, LabelPolicy, ModelSpec, build_segmenter
    engine = Engine(build_segmenter(ModelSpec("clip-surgery", "tiny-random")), labels=LabelPolicy.fixed(["tree"]))
    result = engine.segment([sketch])[0]
"""

import importlib

_HOMES = {
    **dict.fromkeys(("Engine", "Outcome", "Prepared", "Timings", "apply_threshold"), ".engine"),
    **dict.fromkeys(("METHODS", "ClipSegmenter", "Method", "ModelSpec", "OracleSegmenter", "Segmenter", "build_segmenter",
                     "build_segmenters", "default_method", "register_method", "resolve_device", "segmenter_on"), ".methods"),
    "LabelPolicy": ".policy",
    "ground_truth_result": ".truth",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """Names load with their module on first use, so that `convert` (ground truth only) never imports torch."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)


def __dir__() -> list[str]:
    return __all__
