"""sketchkit: stroke-aware open-vocabulary segmentation of freehand scene sketches."""

__version__ = "0.1.0"
