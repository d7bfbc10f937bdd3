"""sketchkit: stroke-aware open-vocabulary segmentation of freehand scene sketches.

    import sketchkit
    sketch = sketchkit.read_sketch("scene.svg")
    result = sketchkit.segment(sketch, labels=["tree", "house"])   # SegmentResult
    result.stroke_label_names                                      # one label per stroke

The public names are imported lazily so that `import sketchkit` (and the CLI's start) stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "read_sketch": "sketchkit.io",
    "rasterize": "sketchkit.raster",
    "vote_strokes": "sketchkit.vote",
    "write_result": "sketchkit.write",
    "segment": "sketchkit.predictor",
    "SketchPredictor": "sketchkit.predictor",
    "Engine": "sketchkit.inference",
    "LabelPolicy": "sketchkit.inference",
    "ModelSpec": "sketchkit.inference",
    "build_segmenter": "sketchkit.inference",
    "create_encoder": "sketchkit.model.factory",
    "evaluate": "sketchkit.evaluation",
    "labels_from_caption": "sketchkit.labels",
    "Sketch": "sketchkit.types",
    "Raster": "sketchkit.types",
    "SegmentResult": "sketchkit.types",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sketchkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
