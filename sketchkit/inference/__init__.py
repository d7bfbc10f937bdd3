"""Inference: the methods table, label policies and the one engine every command runs.

    from sketchkit.inference import Engine, LabelPolicy, ModelSpec, build_segmenter
    engine = Engine(build_segmenter(ModelSpec("clip-surgery", "tiny-random")), labels=LabelPolicy.fixed(["tree"]))
    result = engine.segment([sketch])[0]
"""

from .engine import Engine, Outcome, Prepared, Timings, apply_threshold
from .methods import (METHODS, ClipSegmenter, Method, ModelSpec, OracleSegmenter, Segmenter, build_segmenter,
                      build_segmenters, default_method, register_method, resolve_device, segmenter_on)
from .policy import LabelPolicy
from .truth import ground_truth_result

__all__ = ["METHODS", "ClipSegmenter", "Engine", "LabelPolicy", "Method", "ModelSpec", "OracleSegmenter", "Outcome",
           "Prepared", "Segmenter", "Timings", "apply_threshold", "build_segmenter", "build_segmenters",
           "default_method", "ground_truth_result", "register_method", "resolve_device", "segmenter_on"]
