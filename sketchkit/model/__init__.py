"""Models: the open_clip seam, SketchCLIP and its configs, weights, adapters, the reference architecture.

Light to import (no torch): submodules load what they need.
"""

DEFAULT_BACKBONE = "ViT-B-16"
"""The paper's backbone (configs/ViT-B-16.json): what every command builds unless told otherwise."""
