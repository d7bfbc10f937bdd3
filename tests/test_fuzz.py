"""Property-based fuzzing of the rasterizer (issue #8): random stroke arrays, including NaN,
infinity, huge and tiny values, empty strokes, one-point strokes and odd shapes, through
`sketchkit.raster.rasterize`, `render_stroke_ids` and `render_rgb`. Only sketchkit's own errors
may escape, and every successful result has the documented shapes and dtypes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketchkit.errors import SketchkitError
from sketchkit.raster import render_rgb, render_stroke_ids, rasterize
from sketchkit.types import Sketch

_FINITE = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
_ANY = st.one_of(
    _FINITE,
    st.floats(allow_nan=True, allow_infinity=True),  # NaN, +-inf, +-1e308, subnormals
    st.sampled_from([0.0, -0.0, 1e-300, 1e7, -1e7, 1e15, 1.7e308, float("nan"), float("inf")]),
)


@st.composite
def _stroke(draw):
    """Mostly well-formed (P, 2) float arrays; sometimes empty, one point, a wrong shape or dtype."""
    kind = draw(st.sampled_from(["points"] * 6 + ["one", "empty", "flat", "three-columns", "int"]))
    values = _ANY if draw(st.integers(0, 4)) == 0 else _FINITE
    if kind == "one":
        return np.array([[draw(values), draw(values)]], dtype=np.float64)
    if kind == "empty":
        return np.zeros((0, 2), dtype=np.float64)
    if kind == "flat":
        return np.array([draw(values) for _ in range(draw(st.integers(0, 6)))], dtype=np.float64)
    if kind == "three-columns":
        return np.zeros((draw(st.integers(1, 4)), 3), dtype=np.float64)
    count = draw(st.integers(1, 12))
    points = np.array([[draw(values), draw(values)] for _ in range(count)], dtype=np.float64)
    return points.astype(np.int64) if kind == "int" and (np.abs(points) < 1e9).all() else points


@st.composite
def _sketches(draw):
    strokes = tuple(draw(st.lists(_stroke(), min_size=0, max_size=8)))
    width = draw(st.one_of(st.just(100.0), _ANY))
    height = draw(st.one_of(st.just(100.0), _ANY))
    widths = None
    if strokes and draw(st.booleans()):
        widths = np.array([draw(st.one_of(st.floats(0, 20), _ANY)) for _ in strokes], dtype=np.float64)
    return Sketch(strokes=strokes, width=width, height=height, stroke_widths=widths)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sketch=_sketches(), size=st.sampled_from([1, 2, 16, 64, 224]),
       line_width=st.one_of(st.none(), st.floats(0.1, 30), _ANY), use_source_widths=st.booleans())
def test_fuzz_rasterize_only_sketchkit_errors(sketch, size, line_width, use_source_widths):
    try:
        raster = rasterize(sketch, size, line_width=line_width, use_source_widths=use_source_widths)
    except SketchkitError:
        return
    assert raster.image.shape == (size, size) and raster.image.dtype == np.float32
    assert raster.stroke_ids.shape == (size, size) and raster.stroke_ids.dtype == np.int32
    assert np.isfinite(raster.image).all() and raster.image.min() >= 0.0 and raster.image.max() <= 1.0
    assert raster.stroke_ids.min() >= -1 and raster.stroke_ids.max() < sketch.num_strokes
    assert np.isfinite([raster.transform.scale, raster.transform.offset_x, raster.transform.offset_y]).all()

    # the same frame at another size, a subset of strokes, colours: same rules
    try:
        ids = render_stroke_ids(sketch, raster.transform.resized(2 * size), strokes=[0], line_width=line_width)
        rgb = render_rgb(sketch, raster.transform, np.full((sketch.num_strokes, 3), 0.5), line_width=line_width)
    except SketchkitError:
        return
    assert ids.shape == (2 * size, 2 * size) and ids.dtype == np.int32 and set(np.unique(ids)) <= {-1, 0}
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(_FINITE, _FINITE), min_size=1, max_size=3), copies=st.integers(1, 3))
def test_fuzz_every_finite_stroke_owns_a_pixel_or_is_covered(points, copies):
    """Well-formed finite input never raises, and some stroke always has ink (dots included)."""
    stroke = np.array(points, dtype=np.float64)
    sketch = Sketch(strokes=(stroke,) * copies, width=100.0, height=100.0)
    raster = rasterize(sketch, 32)
    assert (raster.stroke_ids >= 0).any() and raster.stroke_ids.max() == copies - 1
