"""Writers: labelled SVG, HDF5, PNG overlay and JSON, from a hand-built result and a real FrISS sketch."""

from __future__ import annotations

import json
import re

import defusedxml.ElementTree as SafeET
import numpy as np
import pytest
from PIL import Image
from svgpathtools import parse_path

import sketchkit
from sketchkit.errors import InputError, UsageError
from sketchkit.types import Raster, SegmentResult, Sketch, StrokeVotes, Transform
from sketchkit.io.hdf5 import read_results_h5, write_results_h5
from sketchkit.render import GREY, PALETTE, overlay_crop_box, render_overlay, save_raster
from sketchkit.write import FORMATS, write_result

SVG_NS = "{http://www.w3.org/2000/svg}"
TRICKY = 'cloud <&> "sky"'  # a label that must be escaped in attributes and text


# ---------------------------------------------------------------------------------- hand-built result


def _hand_result(*, source=None) -> SegmentResult:
    """3 strokes on a 100 x 50 canvas, one a single point; an 8 px raster with hand-placed ids.

    Stroke pixels (row, col) -> class:  stroke 0: 3 px all "tree"; stroke 1: 2 px, one per class;
    stroke 2: 4 px, 3 TRICKY + 1 tree. Votes agree: shares 1.0, 0.5, 0.75.
    """
    sketch = Sketch(
        strokes=(np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 20.0]]),
                 np.array([[50.5, 25.25]]),
                 np.array([[60.0, 40.0], [90.0, 40.0]])),
        width=100.0,
        height=50.0,
        labels=("tree", None, TRICKY),
        instance_ids=np.array([0, -1, 1]),
        caption="a tree & a cloud",
        source=source,
    )
    ids = np.full((8, 8), -1, dtype=np.int32)
    pixel_labels = np.full((8, 8), -1, dtype=np.int32)
    for (r, c), stroke, label in [((2, 1), 0, 0), ((2, 2), 0, 0), ((3, 2), 0, 0),
                                  ((4, 4), 1, 1), ((4, 5), 1, 0),
                                  ((5, 5), 2, 1), ((5, 6), 2, 1), ((5, 7), 2, 1), ((6, 5), 2, 0)]:
        ids[r, c], pixel_labels[r, c] = stroke, label
    image = np.where(ids >= 0, 0.0, 1.0).astype(np.float32)
    raster = Raster(image=image, stroke_ids=ids, transform=Transform(0.08, 0.0, 2.0, 8))
    rng = np.random.default_rng(0)
    votes = StrokeVotes(labels=np.array([0, 1, 1], dtype=np.int32),
                        confidence=np.array([1.0, 0.5, 0.75], dtype=np.float32),
                        top=np.array([[0, -1, -1], [1, 0, -1], [1, 0, -1]], dtype=np.int32))
    return SegmentResult(sketch=sketch, raster=raster, labels=("tree", TRICKY, "background"),
                         scores=rng.random((3, 8, 8)).astype(np.float32), pixel_labels=pixel_labels,
                         votes=votes, model="tiny (random weights, tiny test config)")


INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"


def _svg_paths(root):
    """The stroke paths in stroke order; each lies in the Inkscape layer of its label."""
    layers = [g for g in root.iter(f"{SVG_NS}g") if g.get(f"{INKSCAPE}groupmode") == "layer"]
    assert layers and len({g.get(f"{INKSCAPE}label") for g in layers}) == len(layers)
    paths = []
    for layer in layers:
        for path in layer.iter(f"{SVG_NS}path"):
            assert path.get("data-label", "unlabelled") == layer.get(f"{INKSCAPE}label")
            paths.append(path)
    return sorted(paths, key=lambda p: int(p.get("data-stroke")))


def _parse_d(d: str) -> np.ndarray:
    """Points of an 'M x y L x y ...' path (the writer's own contract)."""
    tokens = d.split()
    assert tokens[0] == "M" and all(t == "L" for t in tokens[3::3])
    return np.array([[float(tokens[i + 1]), float(tokens[i + 2])] for i in range(0, len(tokens), 3)])


def _strict_json(text: str):
    def no_constant(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=no_constant)


# ----------------------------------------------------------------------------------------------- svg


def test_svg_contract_on_hand_built_result(tmp_path):
    result = _hand_result()
    path = write_result(result, tmp_path / "scene.svg")
    root = SafeET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg"
    view = [float(v) for v in root.get("viewBox").split()]
    assert view[:2] == [0, 0] and view[3] == 50 and view[2] > 100  # widened for the legend, beside the drawing
    assert (float(root.get("width")), root.get("height")) == (view[2], "50")
    legend = next(g for g in root.iter(f"{SVG_NS}g") if g.get("data-sketchkit") == "legend")
    assert min(float(r.get("x")) for r in legend.iter(f"{SVG_NS}rect")) >= 100  # never over the drawing

    meta = json.loads(root.find(f"{SVG_NS}metadata").text)["sketchkit"]
    assert meta == {"version": sketchkit.__version__, "caption": "a tree & a cloud",
                    "labels": ["tree", TRICKY, "background"], "canvas": [100, 50],
                    "model": "tiny (random weights, tiny test config)", "weights": None, "scoring": "paper",
                    "threshold": None, "skipped": {}, "source": None}

    paths = _svg_paths(root)
    assert [p.get("data-label") for p in paths] == ["tree", TRICKY, TRICKY]
    assert [p.get("data-stroke") for p in paths] == ["0", "1", "2"]
    assert [p.get("data-instance") for p in paths] == ["0", None, "1"]  # -1 = unknown: left out
    assert [p.get("data-confidence") for p in paths] == ["1", "0.5", "0.75"]
    assert [p.get("d") for p in paths] == ["M 10 10 L 30 10 L 30 20", "M 50.5 25.25 L 50.5 25.25",
                                           "M 60 40 L 90 40"]
    assert [p.get("stroke") for p in paths] == [PALETTE[0], PALETTE[1], PALETTE[1]]
    assert [p.find(f"{SVG_NS}title").text for p in paths] == ["tree (100%)", f"{TRICKY} (50%)", f"{TRICKY} (75%)"]
    assert paths[0].get("class") == "sk-stroke sk-label-tree"
    assert paths[1].get("class") == "sk-stroke sk-label-cloud-sky"
    for p in paths:
        assert p.get("fill") == "none" and p.get("stroke-linecap") == "round"
        # no widths in the sketch: the raster's 1.5 px at 224 through the transform (scale 0.08 at 8 px)
        assert float(p.get("stroke-width")) == pytest.approx(1.5 * 8 / 224 / 0.08, abs=1e-3)

    legend = [g for g in root.iter(f"{SVG_NS}g") if g.get("id") == "legend"]
    assert len(legend) == 1 and legend[0].get("data-sketchkit") == "legend"
    assert [t.text for t in legend[0].iter(f"{SVG_NS}text")] == ["tree (1)", f"{TRICKY} (2)"]
    # the raw text escapes the label in attributes
    assert 'data-label="cloud &lt;&amp;&gt; &quot;sky&quot;"' in path.read_text(encoding="utf-8")


def test_svg_unknown_stroke_and_nan_confidence(tmp_path):
    base = _hand_result()
    votes = StrokeVotes(labels=np.array([0, -1, 1], dtype=np.int32),
                        confidence=np.array([1.0, np.nan, 0.75], dtype=np.float32),
                        top=np.array([[0, -1, -1], [-1, -1, -1], [1, 0, -1]], dtype=np.int32))
    result = SegmentResult(base.sketch, base.raster, base.labels, base.scores, base.pixel_labels, votes, "m")
    root = SafeET.parse(write_result(result, tmp_path / "u.svg")).getroot()
    unknown = _svg_paths(root)[1]
    assert unknown.get("data-label") is None and unknown.get("data-confidence") is None
    assert unknown.get("stroke") == GREY and unknown.find(f"{SVG_NS}title").text == "unknown"


def test_svg_numbers_keep_six_decimals():
    sketch = Sketch(strokes=(np.array([[1234.703125, -1e-7], [1e-5, 7.123456789]]),), width=1300.5, height=10)
    result = SegmentResult(
        sketch=sketch,
        raster=Raster(np.ones((4, 4), np.float32), np.full((4, 4), -1, np.int32), Transform(0.003, 0, 0, 4)),
        labels=("a",), scores=np.zeros((1, 4, 4), np.float32), pixel_labels=np.full((4, 4), -1, np.int32),
        votes=StrokeVotes(np.array([0], np.int32), np.array([1.0], np.float32), np.array([[0, -1, -1]], np.int32)))
    from sketchkit.io.svg_writer import result_to_svg

    root = SafeET.fromstring(result_to_svg(result).encode("utf-8"))
    assert _svg_paths(root)[0].get("d") == "M 1234.703125 0 L 0.00001 7.123457"
    assert root.get("viewBox").startswith("0 0 ") and root.get("viewBox").endswith(" 10")


def test_svg_reads_back_with_sketchkit_reader(tmp_path):
    read_sketch = _reader()
    result = _hand_result()
    sketch = read_sketch(write_result(result, tmp_path / "rt.svg"))
    assert sketch.num_strokes == 3
    assert list(sketch.labels) == ["tree", TRICKY, TRICKY]
    for got, want in zip(sketch.strokes, result.sketch.strokes):
        assert len(got) >= 1
        np.testing.assert_allclose(np.unique(got, axis=0), np.unique(want, axis=0), atol=1e-3)
    assert (sketch.width, sketch.height) == (100, 50)


def _reader():
    try:
        from sketchkit.io import read_sketch
    except ImportError:
        pytest.skip("sketchkit.io.read_sketch is not available yet")
    return read_sketch


# ---------------------------------------------------------------------------------------------- json


def test_json_on_hand_built_result(tmp_path):
    path = write_result(_hand_result(), tmp_path / "scene.json")
    doc = _strict_json(path.read_text(encoding="utf-8"))
    assert doc["sketchkit_version"] == sketchkit.__version__
    assert doc["labels"] == ["tree", TRICKY, "background"]
    assert doc["canvas"] == [100, 50] and doc["caption"] == "a tree & a cloud"
    assert doc["model"] == "tiny (random weights, tiny test config)"
    assert doc["label_counts"] == {"tree": 1, TRICKY: 2, "background": 0}
    strokes = doc["strokes"]
    assert [s["index"] for s in strokes] == [0, 1, 2]
    assert [s["label"] for s in strokes] == ["tree", TRICKY, TRICKY]
    assert [s["confidence"] for s in strokes] == [1.0, 0.5, 0.75]
    assert [s["num_points"] for s in strokes] == [3, 1, 2]
    assert [s["num_pixels"] for s in strokes] == [3, 2, 4]
    assert strokes[0]["top"] == [{"label": "tree", "votes_share": 1.0}]
    assert strokes[1]["top"] == [{"label": TRICKY, "votes_share": 0.5}, {"label": "tree", "votes_share": 0.5}]
    assert strokes[2]["top"] == [{"label": TRICKY, "votes_share": 0.75}, {"label": "tree", "votes_share": 0.25}]
    assert [s["gt_label"] for s in strokes] == ["tree", None, TRICKY]
    assert [s.get("instance") for s in strokes] == [0, None, 1]


def test_json_has_no_nan(tmp_path):
    base = _hand_result()
    votes = StrokeVotes(np.array([0, -1, 1], np.int32), np.array([np.nan, np.inf, 0.75], np.float32),
                        np.array([[0, -1, -1], [-1, -1, -1], [1, 0, -1]], np.int32))
    result = SegmentResult(base.sketch, base.raster, base.labels, base.scores, base.pixel_labels, votes, "m")
    doc = _strict_json(write_result(result, tmp_path / "nan.json").read_text())
    assert [s["confidence"] for s in doc["strokes"]] == [None, None, 0.75]
    assert doc["strokes"][1]["label"] is None and doc["strokes"][1]["top"] == []
    assert doc["label_counts"]["unknown"] == 1


# ---------------------------------------------------------------------------------------------- hdf5


def _assert_stored_equals(stored, result):
    sketch = result.sketch
    assert stored.labels == result.labels and stored.model == result.model
    assert stored.caption == sketch.caption and stored.source == sketch.source
    assert stored.canvas == (sketch.width, sketch.height)
    assert stored.transform == result.raster.transform
    assert len(stored.strokes) == sketch.num_strokes
    for got, want in zip(stored.strokes, sketch.strokes):
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    assert stored.gt_labels == sketch.labels
    if sketch.instance_ids is None:
        assert stored.instance_ids is None
    else:
        np.testing.assert_array_equal(stored.instance_ids, sketch.instance_ids)
    np.testing.assert_array_equal(stored.stroke_labels, result.votes.labels)
    np.testing.assert_array_equal(stored.stroke_confidence, result.votes.confidence)
    np.testing.assert_array_equal(stored.stroke_top, result.votes.top)
    np.testing.assert_array_equal(stored.pixel_labels, result.pixel_labels)
    np.testing.assert_array_equal(stored.stroke_ids, result.raster.stroke_ids)
    np.testing.assert_allclose(stored.scores, result.scores, rtol=2**-11, atol=1e-6)  # float16 storage
    np.testing.assert_array_equal(stored.raster, np.rint(result.raster.image * 255).astype(np.uint8))


def test_h5_round_trip_many_sketches(tmp_path):
    first = _hand_result(source="in/first.json")
    widths = np.array([2.0, 3.5, 1.0])
    second_sketch = Sketch(strokes=first.sketch.strokes, width=100.0, height=50.0, stroke_widths=widths)
    second = SegmentResult(second_sketch, first.raster, ("tree", "sky"), first.scores[:2] * 10 - 5,
                           first.pixel_labels, first.votes, "other model")
    path = write_results_h5([first, second], tmp_path / "many.h5", attrs={"split": "test", "threshold": 0.71})
    stored = read_results_h5(path)
    assert len(stored) == 2
    _assert_stored_equals(stored[0], first)
    _assert_stored_equals(stored[1], second)
    assert stored[0].name == "first" and stored[1].name == "sketch-1"
    assert stored[0].stroke_widths is None
    np.testing.assert_array_equal(stored[1].stroke_widths, widths)
    rebuilt = stored[0].to_segment_result()
    assert rebuilt.stroke_label_names == first.stroke_label_names
    assert rebuilt.sketch.labels == first.sketch.labels

    import h5py

    with h5py.File(path) as h5:
        assert h5.attrs["format"] == "sketchkit-results" and h5.attrs["format_version"] == 2
        assert h5.attrs["num_sketches"] == 2 and h5.attrs["split"] == "test" and h5.attrs["threshold"] == 0.71
        assert h5.attrs["model"] == "tiny (random weights, tiny test config); other model"
        assert h5.attrs["sketchkit_version"] == sketchkit.__version__ and "created" in h5.attrs
        group = h5["sketches/000000"]
        assert group["scores"].dtype == np.float16 and group["scores"].compression == "gzip"
        assert group["points"].dtype == np.float32 and group["points"].shape == (6, 2)
        np.testing.assert_array_equal(group["stroke_offsets"][()], [0, 3, 4, 6])
        assert [s.decode() for s in group["gt_labels"][()]] == ["tree", "", TRICKY]


def test_h5_rejects_reserved_attrs_and_bad_files(tmp_path):
    with pytest.raises(UsageError, match="reserved"):
        write_results_h5([_hand_result()], tmp_path / "x.h5", attrs={"format": "mine"})
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(InputError, match="no such results file"):
        read_results_h5(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_results_h5(tmp_path / "text.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["data"] = np.arange(3)
    with pytest.raises(InputError, match="not a sketchkit results file"):
        read_results_h5(tmp_path / "other.h5")
    path = write_results_h5([_hand_result()], tmp_path / "broken.h5")
    with h5py.File(path, "a") as h5:
        del h5["sketches/000000/stroke_ids"]
    with pytest.raises(InputError, match="000000/stroke_ids is missing"):
        read_results_h5(path)


def test_h5_empty_list_writes_an_empty_file(tmp_path):
    assert read_results_h5(write_results_h5([], tmp_path / "empty.h5")) == []


# ----------------------------------------------------------------------------------------------- png


def test_png_size_layout_and_colours(tmp_path):
    result = _hand_result()
    path = write_result(result, tmp_path / "scene.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        # at 512 px: scale 5.12, offset (0, 128); points x 10..90, y 10..40 -> raster x 51.2..460.8,
        # y 179.2..332.8; padded by 0.04 * 512 = 20.48 -> crop [30, 158, 482, 354] = 452 x 196 px;
        # plus the 240 px legend panel and the 48 px title bar
        assert overlay_crop_box(result.raster.transform.resized(512), result.sketch) == (30, 158, 482, 354)
        assert image.size == (452 + 240, 48 + 196)
        pixels = np.asarray(image)
    # canvas (20, 10) lies on stroke 0 ("tree", PALETTE[0]) -> raster (102.4, 179.2) -> image (72, 69)
    np.testing.assert_allclose(pixels[69, 72], [0x1F, 0x77, 0xB4], atol=40)
    # canvas (75, 40) on stroke 2 (TRICKY, PALETTE[1]) -> raster (384, 332.8) -> image (354, 222)
    np.testing.assert_allclose(pixels[222, 354], [0xFF, 0x7F, 0x0E], atol=40)
    # the legend swatches hold the class colours; the title bar carries dark text
    swatch_x = 452 + 8 + 7
    np.testing.assert_array_equal(pixels[48 + 8 + 20 + 9, swatch_x], [0x1F, 0x77, 0xB4])
    np.testing.assert_array_equal(pixels[48 + 8 + 40 + 9, swatch_x], [0xFF, 0x7F, 0x0E])
    assert pixels[:48].min() < 100


def test_png_legend_extends_height_for_many_classes():
    base = _hand_result()
    votes = StrokeVotes(np.array([0, 1, 2], np.int32), base.votes.confidence, base.votes.top)
    result = SegmentResult(base.sketch, base.raster, ("tree", "sky", "sun"), base.scores, base.pixel_labels,
                           votes, "m")
    image = render_overlay(result, size=128)
    # at 128 px: scale 1.28, offset (0, 32); points -> x 12.8..115.2, y 44.8..83.2; pad 5.12 px
    # -> crop [7, 39, 121, 89] = 114 x 50 px; 3 legend rows + header = 16 + 4 * 20 = 96 px > 50
    assert image.size == (114 + 240, 48 + 96)


def test_save_raster_png_and_ids(tmp_path):
    raster = _hand_result().raster
    png = save_raster(raster, tmp_path / "view.png", ids_path=tmp_path / "ids.npy")
    with Image.open(png) as image:
        assert image.mode == "L" and image.size == (8, 8)
        grey = np.asarray(image)
    np.testing.assert_array_equal(grey, np.where(raster.stroke_ids >= 0, 0, 255))
    ids = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, raster.stroke_ids)
    with pytest.raises(UsageError, match="exists"):
        save_raster(raster, png, overwrite=False)


def test_every_format_for_a_result_without_classes(tmp_path):
    """An unlabelled sketch converted as-is: zero classes, every stroke unknown."""
    base = _hand_result()
    votes = StrokeVotes(np.full(3, -1, np.int32), np.zeros(3, np.float32), np.full((3, 3), -1, np.int32))
    result = SegmentResult(base.sketch, base.raster, (), np.zeros((0, 8, 8), np.float32),
                           np.full((8, 8), -1, np.int32), votes, "ground truth")
    written = {fmt: write_result(result, tmp_path / f"none.{fmt}") for fmt in FORMATS}
    paths = _svg_paths(SafeET.parse(written["svg"]).getroot())
    assert [p.get("data-label") for p in paths] == [None, None, None]
    assert {p.find(f"{SVG_NS}title").text for p in paths} == {"unknown"}
    doc = _strict_json(written["json"].read_text())
    assert doc["labels"] == [] and doc["label_counts"] == {"unknown": 3}
    (stored,) = read_results_h5(written["h5"])
    assert stored.labels == () and stored.scores.shape == (0, 8, 8)
    with Image.open(written["png"]) as image:
        assert image.size == (452 + 240, 48 + 196)


# -------------------------------------------------------------------------------------- dispatching


def test_format_from_suffix_and_explicit(tmp_path):
    result = _hand_result()
    for suffix, check in [(".svg", b"<svg"), (".json", b'"sketchkit-result"'), (".png", b"\x89PNG"),
                          (".h5", b"\x89HDF"), (".HDF5", b"\x89HDF")]:
        data = write_result(result, tmp_path / f"out{suffix}").read_bytes()
        assert check in data[:400]
    assert write_result(result, tmp_path / "plain.out", fmt="json").read_text().startswith("{")
    assert set(FORMATS) == {"svg", "h5", "png", "json", "masks"}
    with pytest.raises(UsageError, match="cannot tell the output format"):
        write_result(result, tmp_path / "out.txt")
    with pytest.raises(UsageError, match="unknown output format"):
        write_result(result, tmp_path / "out.svg", fmt="pdf")


def test_overwrite_and_input_protection(tmp_path):
    source = tmp_path / "scene.svg"
    source.write_text("<svg/>")
    result = _hand_result(source=str(source))
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        write_result(result, source)
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        write_results_h5([result], source)
    assert source.read_text() == "<svg/>"
    out = write_result(result, tmp_path / "out.json")
    before = out.read_bytes()
    with pytest.raises(UsageError, match="exists$") as refused:
        write_result(result, out, overwrite=False)
    assert refused.value.hint == "overwrite"  # the CLI names --overwrite
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_inconsistent_result_is_refused_before_writing(tmp_path):
    base = _hand_result()
    bad = SegmentResult(base.sketch, base.raster, ("tree",), base.scores, base.pixel_labels, base.votes, "m")
    with pytest.raises(ValueError, match="inconsistent SegmentResult"):
        write_result(bad, tmp_path / "bad.svg")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- real FrISS data


def _friss_sketch(path) -> Sketch:
    """The FrISS scene via sketchkit.io when available, else a direct parse of the stroke-3 JSON."""
    try:
        from sketchkit.io import read_sketch
    except ImportError:
        read_sketch = None
    if read_sketch is not None:
        return read_sketch(path)
    doc = json.loads(path.read_text())
    rows = np.asarray(doc["scene_strokes"], dtype=np.float64)
    points = np.cumsum(rows[:, :2], axis=0)
    ends = np.flatnonzero(rows[:, 2] == 1) + 1
    strokes = tuple(s for s in np.split(points, ends) if len(s))
    divisions, names = doc["object_divisions"], doc["gt_class_names"]
    labels, instances = [None] * len(strokes), np.full(len(strokes), -1)
    for k, name in enumerate(names):
        for s in range(divisions[k], divisions[k + 1]):
            labels[s], instances[s] = name, k
    return Sketch(strokes=strokes, width=float(doc["img_w"]), height=float(doc["img_h"]),
                  labels=tuple(labels), instance_ids=instances, source=str(path))


def _oracle_result(sketch: Sketch) -> SegmentResult:
    """A result whose predictions are the ground truth: pixels take their stroke's true class."""
    from sketchkit.raster import rasterize

    raster = rasterize(sketch)
    names = sketch.label_names()
    classes = np.array([names.index(n) if n is not None else -1 for n in sketch.labels], dtype=np.int32)
    ids = raster.stroke_ids
    pixel_labels = np.where(ids >= 0, classes[np.maximum(ids, 0)], -1).astype(np.int32)
    scores = (np.arange(len(names))[:, None, None] == pixel_labels[None]).astype(np.float32)
    top3 = np.full((sketch.num_strokes, 3), -1, np.int32)
    top3[:, 0] = classes
    votes = StrokeVotes(classes, np.where(classes >= 0, 1.0, np.nan).astype(np.float32), top3)
    return SegmentResult(sketch, raster, tuple(names), scores, pixel_labels, votes, "ground truth (oracle)")


def test_real_friss_sketch_every_format(friss_test_files, tmp_path):
    sketch = _friss_sketch(friss_test_files[0])
    assert sketch.num_strokes > 5 and sketch.has_labels
    result = _oracle_result(sketch)
    written = {fmt: write_result(result, tmp_path / f"scene.{fmt}") for fmt in FORMATS}

    root = SafeET.parse(written["svg"]).getroot()
    paths = _svg_paths(root)
    assert len(paths) == sketch.num_strokes
    assert [p.get("data-label") for p in paths] == list(sketch.labels)
    for p, stroke in zip(paths, sketch.strokes):
        points = _parse_d(p.get("d"))
        # FrISS coordinates are multiples of 1/64: 6 decimals write them exactly
        np.testing.assert_array_equal(points if len(stroke) > 1 else points[:1], stroke)
        # a general SVG path parser sees the same polyline (a dot as one zero-length segment)
        segments = parse_path(p.get("d"))
        assert len(segments) == max(len(stroke) - 1, 1)
        ends = np.array([[seg.start.real, seg.start.imag] for seg in segments]
                        + [[segments[-1].end.real, segments[-1].end.imag]])
        np.testing.assert_array_equal(ends if len(stroke) > 1 else ends[:1], stroke)

    doc = _strict_json(written["json"].read_text())
    assert len(doc["strokes"]) == sketch.num_strokes
    assert [s["label"] for s in doc["strokes"]] == list(sketch.labels)
    assert sum(doc["label_counts"].values()) == sketch.num_strokes
    shares = [s["top"][0].get("votes_share") for s in doc["strokes"]]
    assert all(share == 1.0 for share in shares if share is not None)

    (stored,) = read_results_h5(written["h5"])
    _assert_stored_equals(stored, result)

    with Image.open(written["png"]) as image:
        box = overlay_crop_box(result.raster.transform.resized(512), sketch)
        legend_h = 16 + 20 * (len(sketch.label_names()) + 1)
        assert image.size == (box[2] - box[0] + 240, 48 + max(box[3] - box[1], legend_h))
        assert max(box[2] - box[0], box[3] - box[1]) > 400  # the drawing fills most of 512 px


def test_real_friss_svg_reads_back_with_sketchkit_reader(friss_test_files, tmp_path):
    read_sketch = _reader()
    sketch = _friss_sketch(friss_test_files[1])
    back = read_sketch(write_result(_oracle_result(sketch), tmp_path / "rt.svg"))
    assert back.num_strokes == sketch.num_strokes
    assert list(back.labels) == list(sketch.labels)
    for got, want in zip(back.strokes, sketch.strokes):
        if len(want) == 1:
            got = np.unique(got, axis=0)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


def test_slug_and_palette_are_deterministic():
    from sketchkit.io.svg_writer import _slug
    from sketchkit.render import class_color

    assert _slug("Traffic Light") == "traffic-light" and _slug("<&>") == "label" and _slug("café_au lait") == "café-au-lait"
    labels = tuple(f"c{k}" for k in range(20)) + ("background",)
    assert [class_color(labels, k) for k in (0, 17, 20, -1)] == [PALETTE[0], PALETTE[17], GREY, GREY]
    assert class_color(labels, 18) not in PALETTE + (GREY,)  # beyond 18 classes: new colours, not a repeat
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in PALETTE) and len(set(PALETTE)) == 18
