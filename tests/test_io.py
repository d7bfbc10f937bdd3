"""sketchkit.io: every reader on real data (FrISS JSON, FS-COCO bitmaps) and on small files with
hand-computed expectations, plus hostile and broken inputs (only InputError may escape)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from scipy import ndimage

from sketchkit.errors import InputError
from sketchkit.io import SUPPORTED_SUFFIXES, caption_from_names, detect_format, iter_quickdraw, read_sketch
from sketchkit.io import bitmap as bitmap_module
from sketchkit.io import limits
from sketchkit.io import svg as svg_module
from sketchkit.io.bitmap import trace_strokes
from sketchkit.io.svg import parse_transform, path_strokes, polyline_paths

SVG_HEAD = '<svg xmlns="http://www.w3.org/2000/svg" {attrs}>'


def write_svg(tmp_path, body: str, attrs: str = 'viewBox="0 0 100 100"', name: str = "s.svg"):
    path = tmp_path / name
    path.write_text(SVG_HEAD.format(attrs=attrs) + body + "</svg>", encoding="utf-8")
    return path


def read_svg_text(tmp_path, body: str, attrs: str = 'viewBox="0 0 100 100"'):
    return read_sketch(write_svg(tmp_path, body, attrs))


# ------------------------------------------------------------------------------------- FrISS JSON


def test_every_friss_test_file_reads_with_one_stroke_per_pen_lift(friss_test_files):
    assert len(friss_test_files) == 500
    for path in friss_test_files:
        doc = json.loads(path.read_text())
        sketch = read_sketch(path)
        lifts = sum(1 for row in doc["scene_strokes"] if row[2] == 1)
        assert sketch.num_strokes == lifts, path
        assert (sketch.width, sketch.height) == (doc["img_w"], doc["img_h"])
        divisions, names = doc["object_divisions"], doc["gt_class_names"]
        for k, name in enumerate(names):
            assert set(sketch.labels[divisions[k]:divisions[k + 1]]) <= {name}
            assert (sketch.instance_ids[divisions[k]:divisions[k + 1]] == k).all()
        assert sum(len(s) for s in sketch.strokes) == len(doc["scene_strokes"])
        assert sketch.source == str(path) and sketch.caption


def test_friss_hand_checked_scene(friss_dir):
    sketch = read_sketch(friss_dir / "test" / "sceneid-0-userid-2.json")
    # object_divisions [0, 10, 13, 15, 17, 18, 19, 20]: airplane, smoke, five seagulls
    assert sketch.num_strokes == 20
    assert list(sketch.labels) == ["airplane"] * 10 + ["smoke"] * 3 + ["seagull"] * 7
    assert sketch.instance_ids.tolist() == [0] * 10 + [1] * 3 + [2, 2, 3, 3, 4, 5, 6]
    assert sketch.caption == "an airplane, smoke and five seagulls"
    # rows [125, 198.703125, 0], [3, 26, 0], [2, -1, 1]: the first stroke ends at the first lift
    np.testing.assert_array_equal(sketch.strokes[0], [[125, 198.703125], [128, 224.703125], [130, 223.703125]])
    assert sketch.strokes[0].dtype == np.float64 and sketch.strokes[0].flags.c_contiguous


def test_stroke3_lenient_schema(tmp_path):
    doc = {"scene_strokes": [[10, 10, 1], [5, 0, 0], [1, 1, 1], [-2, 3, 0], [1, 1, 0]],  # dot, 2 points, no final lift
           "object_divisions": [0, 1], "gt_class_names": ["sun"], "extra": {"anything": True}}
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(doc))
    sketch = read_sketch(path)
    assert sketch.num_strokes == 3
    np.testing.assert_array_equal(sketch.strokes[0], [[10, 10]])
    np.testing.assert_array_equal(sketch.strokes[1], [[15, 10], [16, 11]])
    np.testing.assert_array_equal(sketch.strokes[2], [[14, 14], [15, 15]])
    assert sketch.labels == ("sun", None, None)  # strokes past the last division: unlabelled
    assert sketch.instance_ids.tolist() == [0, -1, -1]
    assert sketch.caption == "a sun"
    # no img_w / img_h: ink bounds from 0 plus a margin of max(2% of 16, 1) = 1
    assert (sketch.width, sketch.height) == (17.0, 16.0)


def test_stroke3_custom_canvas_and_no_labels(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"img_w": 300.5, "img_h": 20, "scene_strokes": [[1, 2, 0], [3, 4, 1]]}))
    sketch = read_sketch(path)
    assert (sketch.width, sketch.height) == (300.5, 20.0)
    assert sketch.labels is None and sketch.instance_ids is None and sketch.caption is None


def test_bare_json_lists(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text("[[0, 0, 0], [1, 1, 1], [5, 5, 1]]")
    assert [s.tolist() for s in read_sketch(rows).strokes] == [[[0, 0], [1, 1]], [[6, 6]]]
    lines = tmp_path / "lines.json"
    lines.write_text("[[[0, 0], [3, 4]], [], [[7, 7]]]")
    assert [s.tolist() for s in read_sketch(lines).strokes] == [[[0, 0], [3, 4]], [[7, 7]]]


@pytest.mark.parametrize("doc, message", [
    ({"scene_strokes": "abc"}, "scene_strokes must be"),
    ({"scene_strokes": [[1, 2], [3, 4]]}, "rows of 2"),
    ({"scene_strokes": [[1, "2", 0]]}, "scene_strokes must be"),
    ({"scene_strokes": [[1, 2, 0], [1, 2]]}, "scene_strokes must be"),
    ({"scene_strokes": []}, "no strokes"),
    ({"scene_strokes": [[0, 0, 1]], "object_divisions": [0, 1]}, "gt_class_names is missing"),
    ({"scene_strokes": [[0, 0, 1]], "object_divisions": [0, 1, 1], "gt_class_names": ["a"]}, "one more"),
    ({"scene_strokes": [[0, 0, 1]], "object_divisions": [0, 2], "gt_class_names": ["a"]}, "at most the 1 strokes"),
    ({"scene_strokes": [[0, 0, 1], [1, 1, 1]], "object_divisions": [1, 0], "gt_class_names": ["a"]}, "must rise"),
    ({"scene_strokes": [[0, 0, 1]], "object_divisions": [0, 1], "gt_class_names": [3]}, "list of strings"),
    ({"scene_strokes": [[0, 0, 1]], "object_divisions": [0, True], "gt_class_names": ["a"]}, "list of integers"),
    ({"scene_strokes": [[0, 0, 1]], "img_w": -3}, "img_w must be a positive number"),
    ({"scene_strokes": [[1e308, 0, 0], [1e308, 0, 1]]}, "non-finite"),
    ({"scene_strokes": [[2e7, 0, 1]]}, "beyond"),
    ({"strokes": []}, "unrecognised JSON"),
])
def test_stroke3_wrong_schema_raises(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message) as info:
        read_sketch(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_caption_from_names():
    assert caption_from_names(["airplane", "smoke", "seagull", "seagull", "seagull"]) == \
        "an airplane, smoke and three seagulls"
    assert caption_from_names(["hourglass", "grapes", "sheep", "sheep", "mouse", "mouse"]) == \
        "an hourglass, grapes, two sheep and two mice"
    assert caption_from_names(["bus", "bus", "t-shirt", "traffic light"]) == "two buses, a t-shirt and a traffic light"
    assert caption_from_names(["grass", "grass", "flip flops"]) == "grass and flip flops"
    assert caption_from_names(["tree"] * 21) == "twenty-one trees"
    assert caption_from_names([]) is None and caption_from_names(["  "]) is None


# ------------------------------------------------------------------------------------------- SVG


def test_svg_transforms_on_elements_and_groups(tmp_path):
    sketch = read_svg_text(tmp_path, (
        '<g transform="translate(10,20)"><line x1="0" y1="0" x2="1" y2="0" transform="scale(2)"/></g>'
        '<line x1="1" y1="2" x2="0" y2="0" transform="rotate(90)"/>'
        '<line x1="5" y1="0" x2="5" y2="0" transform="rotate(90 5 5)"/>'
        '<polyline points="0,1 1,1" transform="skewX(45)"/>'
        '<polyline points="1,0 1,1" transform="skewY(45)"/>'
        '<polyline points="1 1 0 0" transform="matrix(2 0 0 3 4 5)"/>'
        '<g transform="translate(1 1)"><g transform="scale(2)">'
        '<polyline points="1 1 2 2" transform="translate(-1,-1)"/></g></g>'))
    expected = [
        [[10, 20], [12, 20]],   # scale first, then the group's translate
        [[-2, 1], [0, 0]],      # rotate(90): (x, y) -> (-y, x)
        [[10, 5], [10, 5]],     # about (5, 5): (5, 0) -> (10, 5)
        [[1, 1], [2, 1]],       # skewX(45): x + y
        [[1, 1], [1, 2]],       # skewY(45): y + x
        [[6, 8], [4, 5]],       # matrix(a b c d e f): (2x + 4, 3y + 5)
        [[1, 1], [3, 3]],       # translate(1 1) scale(2) translate(-1 -1)
    ]
    assert len(sketch.strokes) == len(expected)
    for got, want in zip(sketch.strokes, expected):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_svg_viewbox_origin_and_canvas(tmp_path):
    sketch = read_svg_text(tmp_path, '<path d="M -50 -20 L 150 80"/>',
                           'width="400" height="200" viewBox="-50 -20 200 100"')
    np.testing.assert_allclose(sketch.strokes[0], [[0, 0], [200, 100]])
    assert (sketch.width, sketch.height) == (200, 100)


def test_svg_size_units_without_viewbox(tmp_path):
    sketch = read_svg_text(tmp_path, '<path d="M 0 0 L 1 1"/>', 'width="10mm" height="1in"')
    assert sketch.width == pytest.approx(10 * 96 / 25.4) and sketch.height == 96
    # a percentage size has no absolute value: the canvas comes from the ink (6 + max(2% of 6, 1))
    sketch = read_svg_text(tmp_path, '<path d="M 0 0 L 6 3"/>', 'width="100%" height="100%"')
    assert (sketch.width, sketch.height) == (7, 4)


def test_svg_nested_svg_viewport(tmp_path):
    body = '<svg x="10" y="10" width="20" height="10" viewBox="0 0 4 4"><line x1="0" y1="0" x2="4" y2="4"/></svg>'
    sketch = read_svg_text(tmp_path, body)
    # meet: scale min(20/4, 10/4) = 2.5, centred horizontally: offset (20 - 10) / 2 = 5
    np.testing.assert_allclose(sketch.strokes[0], [[15, 10], [25, 20]])


def test_svg_stroke_widths(tmp_path):
    sketch = read_svg_text(tmp_path, (
        '<g stroke-width="2"><path d="M0 0 L1 1"/><path d="M0 0 L1 1" transform="scale(3)"/>'
        '<path d="M0 0 L1 1" style="stroke-width: 0.5px"/></g>'
        '<path d="M0 0 L1 1"/><path d="M0 0 L1 1" transform="scale(4 1)" stroke-width="1"/>'
        '<path d="M0 0 L1 1" stroke-width="bogus"/>'))
    np.testing.assert_allclose(sketch.stroke_widths, [2, 6, 0.5, 1, 2, 1])


def test_svg_curves_are_flattened_within_tolerance(tmp_path):
    sketch = read_svg_text(tmp_path, '<path d="M 0 0 C 0 100 100 100 100 0"/>', 'viewBox="0 0 100 100"')
    points = sketch.strokes[0]
    t = np.linspace(0, 1, 20001)[:, None]
    truth = (1 - t) ** 3 * [0, 0] + 3 * (1 - t) ** 2 * t * [0, 100] + 3 * (1 - t) * t**2 * [100, 100] + t**3 * [100, 0]
    # distance of every true curve point to the flattened polyline
    a, b = points[:-1], points[1:]
    ab = b - a
    u = np.clip(((truth[:, None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    distance = np.linalg.norm(truth[:, None, :] - (a + u[..., None] * ab), axis=-1).min(axis=1)
    # the tolerance is relative to the drawing: its control-point box, 100 x 100, on a canvas as large
    assert distance.max() < svg_module.flatten_tolerance(np.hypot(100, 100), np.hypot(100, 100))
    assert 10 < len(points) < 100  # adaptive, not a fixed count
    np.testing.assert_array_equal(points[[0, -1]], [[0, 0], [100, 0]])
    # the same curve drawn 10x larger through a transform, overflowing the canvas, gets more points
    big = read_svg_text(tmp_path, '<path d="M 0 0 C 0 100 100 100 100 0" transform="scale(10)"/>')
    assert len(big.strokes[0]) > 2.5 * len(points)


def test_svg_arcs_circles_and_ellipses(tmp_path):
    sketch = read_svg_text(tmp_path, (
        '<path d="M 10 50 A 40 40 0 0 1 90 50"/>'
        '<circle cx="50" cy="50" r="10"/>'
        '<ellipse cx="50" cy="50" rx="20" ry="5"/>'
        '<circle cx="5" cy="5" r="0"/>'))
    arc, circle, ellipse = sketch.strokes
    assert sketch.num_strokes == 3  # r = 0 draws nothing
    np.testing.assert_allclose(np.hypot(*(arc - [50, 50]).T), 40)
    np.testing.assert_allclose(arc[[0, -1]], [[10, 50], [90, 50]])
    assert arc[:, 1].max() <= 50 + 1e-9  # sweep 1 from left to right passes above (y < 50)
    np.testing.assert_allclose(np.hypot(*(circle - 50).T), 10)
    np.testing.assert_allclose(circle[0], circle[-1])  # closed
    chord_sagitta = 10 * (1 - np.cos(np.pi / (len(circle) - 1)))
    assert chord_sagitta < svg_module.flatten_tolerance(np.hypot(80, 80))  # the drawing's box: 10..90
    np.testing.assert_allclose(((ellipse[:, 0] - 50) / 20) ** 2 + ((ellipse[:, 1] - 50) / 5) ** 2, 1)


def test_svg_rects_polygons_polylines_and_subpaths(tmp_path):
    sketch = read_svg_text(tmp_path, (
        '<rect x="1" y="2" width="3" height="4"/>'
        '<polygon points="0,0 10,0 10,10"/>'
        '<polyline points="0 0 1 1 2"/>'
        '<path d="M 0 0 L 1 0 M 5 5 L 6 5 M 6 5 L 7 7"/>'
        '<path d="m 1 1 l 2 0 l 0 2 z"/>'
        '<rect x="0" y="0" width="10" height="10" rx="2"/>'
        '<rect width="0" height="5"/>'))
    rect, polygon, polyline, subpaths, second, third, relative, rounded = sketch.strokes
    assert rect.tolist() == [[1, 2], [4, 2], [4, 6], [1, 6], [1, 2]]
    assert polygon.tolist() == [[0, 0], [10, 0], [10, 10], [0, 0]]
    assert polyline.tolist() == [[0, 0], [1, 1]]  # the odd trailing number is ignored
    assert subpaths.tolist() == [[0, 0], [1, 0]]  # every moveto starts a stroke; the pen-up move is not drawn
    assert second.tolist() == [[5, 5], [6, 5]] and third.tolist() == [[6, 5], [7, 7]]
    assert relative.tolist() == [[1, 1], [3, 1], [3, 3], [1, 1]]
    assert rounded[:, 0].min() == pytest.approx(0) and rounded[:, 1].max() == pytest.approx(10)
    corner = np.hypot(*(rounded - [2, 2]).T)[(rounded[:, 0] < 2) & (rounded[:, 1] < 2)]
    np.testing.assert_allclose(corner, 2)


def test_svg_hidden_skipped_and_foreign_content(tmp_path):
    sketch = read_svg_text(tmp_path, (
        '<defs><path id="p" d="M 0 0 L 9 9"/></defs><metadata>x</metadata><title>t</title><desc>d</desc>'
        '<text x="1" y="1">label</text><style>path { stroke: red }</style>'
        '<clipPath><rect width="5" height="5"/></clipPath><mask><path d="M0 0 L1 1"/></mask>'
        '<symbol><path d="M0 0 L1 1"/></symbol><pattern><path d="M0 0 L1 1"/></pattern>'
        '<use href="#p"/><use href="http://example.invalid/x.svg#a"/>'
        '<image href="file:///etc/passwd" width="5" height="5"/>'
        '<g id="legend" data-sketchkit="legend"><g><rect width="5" height="5"/></g></g>'
        '<g display="none"><path d="M 0 0 L 1 1"/></g>'
        '<path d="M 0 0 L 2 2" style="fill:none; display : none"/>'
        '<g visibility="hidden"><path d="M 0 0 L 3 3"/><path visibility="visible" d="M 0 0 L 4 4"/></g>'
        '<path d="M 0 0 L 5 5" visibility="hidden"/>'
        '<foo:bar xmlns:foo="urn:x"><path d="M 0 0 L 6 6"/></foo:bar>'
        '<a><path d="M 0 0 L 7 7"/></a>'))
    assert [s.tolist() for s in sketch.strokes] == [[[0, 0], [4, 4]], [[0, 0], [7, 7]]]


def test_svg_labels_instances_and_metadata_caption(tmp_path):
    meta = json.dumps({"sketchkit": {"version": "0.1.0", "caption": "a tree & a sun", "labels": ["tree", "sun"],
                                     "canvas": [100, 100]}})
    sketch = read_svg_text(tmp_path, (
        f"<metadata>{meta.replace('&', '&amp;')}</metadata>"
        '<path d="M 0 0 L 1 1" data-label="tree" data-stroke="0" data-instance="3"><title>tree</title></path>'
        '<path d="M 0 0 L 2 2" data-stroke="1"/>'
        '<g data-label="sun" data-instance="1"><path d="M 0 0 L 3 3"/></g>'))
    assert sketch.labels == ("tree", None, "sun")
    assert sketch.instance_ids.tolist() == [3, -1, 1]
    assert sketch.caption == "a tree & a sun"
    unlabelled = read_svg_text(tmp_path, '<path d="M 0 0 L 1 1"/>')
    assert unlabelled.labels is None and unlabelled.instance_ids is None and unlabelled.caption is None


def test_svg_metadata_canvas_when_no_size(tmp_path):
    meta = json.dumps({"sketchkit": {"canvas": [640, 420]}})
    sketch = read_svg_text(tmp_path, f'<metadata>{meta}</metadata><path d="M 0 0 L 1 1"/>', attrs="")
    assert (sketch.width, sketch.height) == (640, 420)


def test_svg_round_trip_of_sketchkit_writer(tmp_path, friss_test_files):
    from sketchkit.raster import rasterize
    from sketchkit.types import SegmentResult, StrokeVotes
    from sketchkit.write import write_result

    original = read_sketch(friss_test_files[2])
    names = original.label_names()
    classes = np.array([names.index(n) if n is not None else -1 for n in original.labels], dtype=np.int32)
    raster = rasterize(original)
    result = SegmentResult(original, raster, tuple(names), np.zeros((len(names), raster.size, raster.size), np.float32),
                           np.full((raster.size, raster.size), -1, np.int32),
                           StrokeVotes(classes, np.ones(len(classes), np.float32),
                                       np.stack([classes, classes * 0 - 1, classes * 0 - 1], 1)), "test")
    back = read_sketch(write_result(result, tmp_path / "labelled.svg"))
    assert back.labels == original.labels
    assert back.instance_ids.tolist() == original.instance_ids.tolist()
    assert back.caption == original.caption and (back.width, back.height) == (original.width, original.height)
    for got, want in zip(back.strokes, original.strokes):
        np.testing.assert_array_equal(got if len(want) > 1 else got[:1], want)


@pytest.mark.parametrize("body, message", [
    ('<path d="M 0 0 L 1"/>', "invalid path data in <path> #1"),
    ('<path d="M 0 0 L 1 1" transform="rotate(1, 2)"/>', "invalid transform"),
    ('<path d="M 0 0 L 1 1" transform="scale(2) bogus"/>', "invalid transform"),
    ('<circle r="ten"/>', "invalid r"),
    ('<path d="M 0 0 L 1e400 1"/>', "non-finite"),
    ('<path d="M 0 0 L 1 1" transform="scale(1e8)"/>', "beyond"),
    ('<text>only text</text>', "no strokes found"),
    ('<g display="none"><path d="M 0 0 L 1 1"/></g>', "no strokes found"),
])
def test_svg_bad_content_raises(tmp_path, body, message):
    with pytest.raises(InputError, match=message):
        read_svg_text(tmp_path, body)


def test_svg_bad_viewbox_raises(tmp_path):
    with pytest.raises(InputError, match="viewBox"):
        read_svg_text(tmp_path, '<path d="M 0 0 L 1 1"/>', 'viewBox="0 0 -1 5"')


ENTITY_BOMB = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
               '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
               '<svg xmlns="http://www.w3.org/2000/svg"><title>&c;</title><path d="M0 0 L1 1"/></svg>')
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   '<svg xmlns="http://www.w3.org/2000/svg"><title>&x;</title><path d="M0 0 L1 1"/></svg>')
EXTERNAL_DTD_ENTITY = ('<!DOCTYPE svg SYSTEM "http://example.invalid/x.dtd">'
                       '<svg xmlns="http://www.w3.org/2000/svg"><title>&x;</title><path d="M0 0 L1 1"/></svg>')


@pytest.mark.parametrize("text, message", [
    (ENTITY_BOMB, "refuses DTDs"), (EXTERNAL_ENTITY, "refuses DTDs"), (EXTERNAL_DTD_ENTITY, "undefined entity"),
    ("<svg><path d='M0 0 L1 1'></svg>", "not well-formed XML"), ("<html><body/></html>", "not an SVG document"),
])
def test_svg_hostile_xml_raises(tmp_path, text, message):
    path = tmp_path / "evil.svg"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_sketch(path)


def test_svg_plain_doctype_is_accepted(tmp_path):
    path = tmp_path / "illustrator.svg"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                    '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
                    '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L1 1"/></svg>')
    assert read_sketch(path).num_strokes == 1


@pytest.mark.parametrize("encoding, declared", [
    ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-8-sig", "UTF-8"),
    ("utf-32", "UTF-32"), ("latin-1", "ISO-8859-1")])
def test_svg_encodings(tmp_path, encoding, declared):
    text = (f'<?xml version="1.0" encoding="{declared}"?><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9">'
            '<path d="M 1 2 L 3 4" data-label="café"/></svg>')
    path = tmp_path / "enc.svg"
    path.write_bytes(text.encode(encoding))
    sketch = read_sketch(path)
    assert sketch.labels == ("café",) and sketch.strokes[0].tolist() == [[1, 2], [3, 4]]


def test_svg_element_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(svg_module, "MAX_SVG_ELEMENTS", 5)
    with pytest.raises(InputError, match="more than 5 elements"):
        read_svg_text(tmp_path, '<path d="M0 0 L1 1"/>' * 10)
    assert read_svg_text(tmp_path, '<path d="M0 0 L1 1"/>' * 4).num_strokes == 4


def test_parse_transform_composition():
    matrix = parse_transform("translate(3) , rotate(90)scale(2, 1)", None)
    np.testing.assert_allclose(matrix @ [1, 1, 1], [2, 2, 1], atol=1e-12)  # (1,1) -> (2,1) -> (-1,2) -> (2,2)


# hypothesis: random path data (only InputError), and the M/L fast path equals svgpathtools

_PATH_TOKENS = st.sampled_from(list("MmLlHhVvCcSsQqTtAaZz") + [" ", ",", "-", ".", "e", "1", "0.5", "-3", "1e3",
                                                              "1e400", "nan", "7", "  ", "x"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PATH_TOKENS, max_size=30).map("".join))
def test_fuzz_svg_path_strings(tmp_path, d):
    path = tmp_path / "fuzz.svg"
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="{d}"/></svg>')
    try:
        sketch = read_sketch(path)
    except InputError:
        return
    assert all(np.isfinite(s).all() and len(s) for s in sketch.strokes)


_COORD = st.integers(-50, 50).map(str) | st.floats(-50, 50, allow_nan=False).map(lambda v: f"{v:.3f}")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["M", "L"]), st.lists(st.tuples(_COORD, _COORD), min_size=1, max_size=3)),
                min_size=1, max_size=6))
def test_polyline_fast_path_matches_svgpathtools(commands):
    from svgpathtools import parse_path

    d = " ".join(cmd + " " + " ".join(f"{x},{y}" for x, y in pairs) for cmd, pairs in commands)
    if not d.startswith("M"):
        d = "M 0 0 " + d
    fast, counts, ok, starts = polyline_paths([d])
    assert ok[0] and counts[0] == len(fast) and (not len(fast) or starts[0])
    # svgpathtools on each subpath (the text from one M to the next) gives the strokes
    expected = []
    for piece in d.split("M")[1:]:
        segments = list(parse_path("M" + piece))
        if segments:
            expected.append([[segments[0].start.real, segments[0].start.imag]]
                            + [[seg.end.real, seg.end.imag] for seg in segments])
    got = np.split(fast, np.flatnonzero(starts)[1:]) if len(fast) else []
    assert len(got) == len(expected)
    for stroke, want in zip(got, expected):
        np.testing.assert_allclose(stroke, want, atol=1e-9)
    spaced = d.replace("M", "M ").replace("L", "L ")
    general = svg_module._flatten_subpaths(svg_module._parse_subpaths(spaced, None, "p"), 0.25, None, "p")
    assert len(general) == len(expected)
    for stroke, want in zip(general, expected):
        np.testing.assert_allclose(stroke, want, atol=1e-9)
    assert len(path_strokes(spaced, 0.25)) == len(expected)


def test_polyline_batch_keeps_paths_apart_and_flags_others():
    points, counts, ok, starts = polyline_paths(["M 0 0 L 1 1", "M 5 5 Q 1 1 2 2", "", "L 1 1", "M 1 2 3",
                                                 "M 9 9 9 8 M 7 7", "M 1e 2", "M 0 0 L 1 0 M 1 0 L 2 0"])
    assert ok.tolist() == [True, False, True, False, False, True, False, True]
    assert counts.tolist() == [2, 0, 0, 0, 0, 2, 0, 4]
    assert points.tolist() == [[0, 0], [1, 1], [9, 9], [9, 8], [0, 0], [1, 0], [1, 0], [2, 0]]
    assert starts.tolist() == [True, False, True, False, True, False, True, False]  # a lone moveto draws nothing


# --------------------------------------------------------------------------------- format sniffing


def _png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _line_drawing(size=(64, 48), width=3) -> Image.Image:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.line([(8, 10), (56, 10)], fill=0, width=width)
    draw.line([(20, 20), (20, 40)], fill=0, width=width)
    return image


def test_png_named_svg_reads_as_png(tmp_path):
    path = tmp_path / "actually_png.svg"
    path.write_bytes(_png_bytes(_line_drawing()))
    sketch = read_sketch(path)
    assert sketch.image is not None and sketch.image.shape == (48, 64)
    assert detect_format(path.read_bytes(), ".svg") == "bitmap"


def test_detect_format_content_then_suffix():
    assert detect_format(b"\xef\xbb\xbf  <svg/>", ".json") == "svg"
    assert detect_format("<svg/>".encode("utf-16"), "") == "svg"
    assert detect_format(b'\n {"a": 1}', ".svg") == "json"
    assert detect_format(b"\x93NUMPY\x01\x00", ".png") == "npy"
    assert detect_format(b"\xff\xd8\xff\xe0", ".npy") == "bitmap"
    assert detect_format(b"garbage", ".svg") == "svg"
    assert detect_format(b"garbage", ".txt") is None
    assert set(SUPPORTED_SUFFIXES) >= {".svg", ".json", ".ndjson", ".npy", ".png", ".jpg", ".jpeg"}


@pytest.mark.parametrize("name, content, message", [
    ("empty.svg", b"", "the file is empty"),
    ("garbage.svg", b"\x00\x01garbage\xff", "not"),
    ("garbage.json", b"nonsense", "not valid JSON"),
    ("truncated.json", b'{"scene_strokes": [[1, 2, 0], [3', "not valid JSON"),
    ("deep.json", b"[" * 100000 + b"]" * 100000, "JSON"),
    ("truncated.png", None, "cannot decode"),
    ("garbage.png", b"\x89PNG\r\n\x1a\nnot really", "cannot decode|not a readable"),
    ("garbage.npy", b"\x93NUMPY garbage", "not a valid .npy"),
    ("picture.gif", b"GIF89a\x01\x00\x01\x00", "unsupported file type: a GIF image"),
    ("notes.txt", b"hello", "unsupported file type"),
    ("truncated.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0', "not well-formed"),
    ("binary.svg", b"<svg \xff\xfe\x00", "not valid utf-8"),
])
def test_unreadable_files_raise_one_line_input_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        content = _png_bytes(_line_drawing())[:60]
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_sketch(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_folder_and_oversized_files(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="file not found"):
        read_sketch(tmp_path / "nope.svg")
    with pytest.raises(InputError, match="is a folder"):
        read_sketch(tmp_path)
    path = write_svg(tmp_path, '<path d="M0 0 L1 1"/>')
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 20)
    with pytest.raises(InputError, match="more than the 0.0 MiB"):
        read_sketch(path)


def test_reading_never_modifies_the_input(tmp_path, friss_test_files):
    files = [write_svg(tmp_path, '<path d="M0 0 L1 1"/>'), friss_test_files[0]]
    png = tmp_path / "p.png"
    png.write_bytes(_png_bytes(_line_drawing()))
    files.append(png)
    before = [(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files]
    for f in files:
        read_sketch(f)
    assert before == [(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files]


def test_caption_file_beside_the_input(tmp_path):
    path = write_svg(tmp_path, '<metadata>{"sketchkit": {"caption": "embedded"}}</metadata><path d="M0 0 L1 1"/>',
                     name="scene.svg")
    assert read_sketch(path).caption == "embedded"
    (tmp_path / "scene.txt").write_text("  a giraffe\n and a zebra \n", encoding="utf-8")
    assert read_sketch(path).caption == "a giraffe and a zebra"
    assert read_sketch(path, caption="given wins").caption == "given wins"
    (tmp_path / "scene.txt").write_bytes(b"\xff\xfe\x00\xd8")  # UTF-16 BOM, lone surrogate
    with pytest.raises(InputError, match="caption file"):
        read_sketch(path)


# hypothesis: random bytes under every suffix: only InputError escapes

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", b"<svg>", b"{", b"[", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x93NUMPY",
                               b'<svg xmlns="http://www.w3.org/2000/svg"><path d="', b'{"scene_strokes": [[',
                               b'{"drawing": [[[', b"\xff\xfe<\x00"]),
       body=st.binary(max_size=200), suffix=st.sampled_from(list(SUPPORTED_SUFFIXES) + [".bin"]))
def test_fuzz_random_bytes(tmp_path, prefix, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    try:
        sketch = read_sketch(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert sketch.num_strokes >= 1


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                         st.sampled_from(["scene_strokes", "object_divisions", "gt_class_names", "img_w", "img_h",
                                          "drawing", "word", "x"]), inner, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_JSON)
def test_fuzz_json_documents(tmp_path, doc):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(doc))
    try:
        sketch = read_sketch(path)
    except InputError:
        return
    assert sketch.num_strokes >= 1 and all(np.isfinite(s).all() for s in sketch.strokes)


# ------------------------------------------------------------------------------------- QuickDraw


def test_quickdraw_ndjson(tmp_path):
    records = [{"word": "cat", "countrycode": "US", "drawing": [[[0, 10, 20], [0, 5, 0]], [[5], [5]]]},
               {"word": "hot dog", "drawing": [[[1, 2], [3, 4], [0, 17]]]}]  # raw format: times ignored
    path = tmp_path / "cats.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    first = read_sketch(path)
    assert [s.tolist() for s in first.strokes] == [[[0, 0], [10, 5], [20, 0]], [[5, 5]]]
    assert first.labels == ("cat", "cat") and first.caption == "a cat"
    every = list(iter_quickdraw(path))
    assert len(every) == 2 and every[1].labels == ("hot dog",) and every[1].strokes[0].tolist() == [[1, 3], [2, 4]]
    assert every[1].caption == "a hot dog"
    single = tmp_path / "one.ndjson"
    single.write_text(json.dumps(records[1]))
    assert read_sketch(single).num_strokes == 1


def test_quickdraw_category_file_over_the_size_limit_streams_its_first_drawing(tmp_path, monkeypatch):
    path = tmp_path / "category.ndjson"
    path.write_text("\n" + "\n".join(json.dumps({"word": "ant", "drawing": [[[k, k + 1], [0, 0]]]}) for k in range(50)))
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    sketch = read_sketch(path)
    assert sketch.strokes[0].tolist() == [[0, 0], [1, 0]] and sketch.labels == ("ant",)
    assert len(list(iter_quickdraw(path))) == 50
    other = tmp_path / "big.json"
    other.write_text(path.read_text())
    with pytest.raises(InputError, match="more than the"):
        read_sketch(other)


def test_quickdraw_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps({"word": "a", "drawing": [[[0], [0]]]}) + "\n{broken\n")
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        list(iter_quickdraw(path))
    path.write_text(json.dumps({"drawing": [[[0, 1], [0]]]}) + "\n" + json.dumps({"drawing": []}))
    with pytest.raises(InputError, match="line 1: drawing stroke 0"):
        read_sketch(path)
    with pytest.raises(InputError, match="file not found"):
        list(iter_quickdraw(tmp_path / "missing.ndjson"))


# --------------------------------------------------------------------------------------- FS-COCO


def _npy(path, array):
    np.save(path, array, allow_pickle=True)
    return path


def test_fscoco_npy_lift_after_point(tmp_path):
    rows = np.array([[10, 10, 0], [20, 10, 0], [30, 15, 1], [5, 5, 1], [0, 40, 0], [8, 44, 1]], dtype=np.float32)
    sketch = read_sketch(_npy(tmp_path / "1.npy", rows))
    assert [s.tolist() for s in sketch.strokes] == [[[10, 10], [20, 10], [30, 15]], [[5, 5]], [[0, 40], [8, 44]]]
    assert sketch.width == pytest.approx(31) and sketch.height == pytest.approx(45)  # ink + max(2% of 44, 1)
    assert sketch.caption is None


def test_fscoco_npy_flags_on_first_points(tmp_path):
    rows = np.array([[10, 10, 1], [20, 10, 0], [30, 15, 0], [0, 40, 1], [8, 44, 0]], dtype=np.int64)
    sketch = read_sketch(_npy(tmp_path / "2.npy", rows))
    assert [s.tolist() for s in sketch.strokes] == [[[10, 10], [20, 10], [30, 15]], [[0, 40], [8, 44]]]


def test_fscoco_layout_caption_and_refusals(tmp_path):
    root = tmp_path / "fscoco"
    (root / "vector_sketches" / "7").mkdir(parents=True)
    (root / "text" / "7").mkdir(parents=True)
    path = _npy(root / "vector_sketches" / "7" / "123.npy", np.array([[0, 0, 0], [5, 5, 1]], float))
    (root / "text" / "7" / "123.txt").write_text("A giraffe and a zebra are standing on the grass.\n")
    assert read_sketch(path).caption == "A giraffe and a zebra are standing on the grass."

    objects = _npy(tmp_path / "objects.npy", np.array([[0, 0, 0], "x"], dtype=object))
    with pytest.raises(InputError, match="pickle"):
        read_sketch(objects)
    with pytest.raises(InputError, match=r"expected \(N, 3\)"):
        read_sketch(_npy(tmp_path / "shape.npy", np.zeros((4, 2))))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(_npy(tmp_path / "full.npy", np.zeros((100, 3))).read_bytes()[:300])
    with pytest.raises(InputError, match="truncated"):
        read_sketch(truncated)
    with pytest.raises(InputError, match="no rows"):
        read_sketch(_npy(tmp_path / "empty.npy", np.zeros((0, 3))))


# --------------------------------------------------------------------------------------- bitmaps


def _coverage(sketch, ink: np.ndarray, within: float) -> float:
    """Share of ink pixels whose centre lies within `within` px of a pseudo-stroke polyline."""
    height, width = ink.shape
    drawn = np.zeros((height * 4, width * 4), dtype=bool)  # quarter-pixel grid
    for stroke in sketch.strokes:
        if len(stroke) == 1:
            samples = stroke
        else:
            a, b = stroke[:-1], stroke[1:]
            steps = np.maximum(np.ceil(np.hypot(*(b - a).T) * 8).astype(int), 1)
            t = np.concatenate([np.arange(n) / n for n in steps])
            samples = np.repeat(a, steps, axis=0) + t[:, None] * np.repeat(b - a, steps, axis=0)
            samples = np.concatenate([samples, stroke[-1:]])
        cells = np.clip(np.floor(samples * 4).astype(int), 0, [width * 4 - 1, height * 4 - 1])
        drawn[cells[:, 1], cells[:, 0]] = True
    distance = ndimage.distance_transform_edt(~drawn)[2::4, 2::4] / 4.0  # at pixel centres
    return float((distance[ink] <= within).mean())


def test_fscoco_bitmaps_pseudo_strokes_cover_the_ink(fscoco_bitmaps):
    assert len(fscoco_bitmaps) == 3
    for path in fscoco_bitmaps:
        sketch = read_sketch(path)
        grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
        ink = grey < 0.5
        assert sketch.image.shape == grey.shape == (512, 512) and sketch.image.dtype == np.float32
        np.testing.assert_array_equal(sketch.image < 0.5, ink)  # black on white: image == the picture
        assert (sketch.width, sketch.height) == (512, 512)
        assert sketch.num_strokes > 100 and sketch.stroke_widths.shape == (sketch.num_strokes,)
        assert 1 <= sketch.stroke_widths[0] < 6
        points = np.concatenate(sketch.strokes)
        assert points.min() >= 0.5 and points.max() <= 511.5
        np.testing.assert_array_equal(points % 1, 0.5)  # pixel centres
        assert _coverage(sketch, ink, within=2.0) >= 0.95, path


def test_light_ink_on_dark_paper_traces_the_same(fscoco_bitmaps, tmp_path):
    picture = Image.open(fscoco_bitmaps[0]).convert("L")
    inverted = tmp_path / "night.png"
    Image.eval(picture, lambda v: 255 - v).save(inverted)
    normal, dark = read_sketch(fscoco_bitmaps[0]), read_sketch(inverted)
    np.testing.assert_array_equal(normal.image, dark.image)
    assert [s.tolist() for s in normal.strokes] == [s.tolist() for s in dark.strokes]


def test_bitmap_tracing_hand_made_shapes():
    ink = np.zeros((40, 60), dtype=bool)
    ink[10, 5:26] = True                      # a one-pixel line: one stroke with its two end points
    ink[30, 40] = True                        # a lone pixel: a dot
    strokes, width = trace_strokes(ink)
    assert len(strokes) == 2 and width == 1.0
    line, dot = sorted(strokes, key=len, reverse=True)
    assert sorted(line[:, 0].tolist()) == [5.5, 25.5] and (line[:, 1] == 10.5).all()  # straight: simplified
    assert dot.tolist() == [[40.5, 30.5]]

    cross = np.zeros((21, 21), dtype=bool)
    cross[10, 2:19] = True
    cross[2:19, 10] = True
    strokes, _ = trace_strokes(cross)
    assert len(strokes) == 4  # four arms cut at the junction, each reaching it
    assert all(np.any((s == [10.5, 10.5]).all(axis=1)) for s in strokes)

    ring = np.zeros((30, 30), dtype=bool)
    yy, xx = np.mgrid[:30, :30]
    ring[np.abs(np.hypot(yy - 15, xx - 15) - 10) < 0.5] = True
    strokes, _ = trace_strokes(ring)
    assert len(strokes) == 1 and strokes[0][0].tolist() == strokes[0][-1].tolist()  # closed loop
    assert np.abs(np.hypot(*(strokes[0] - 15.5).T) - 10).max() < 1.5


def test_bitmap_anti_aliased_and_transparent_inputs(tmp_path):
    big = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(big).line([(40, 100), (360, 300)], fill=0, width=8)
    soft = big.resize((100, 100), Image.LANCZOS)  # anti-aliased, about 2 px wide
    path = tmp_path / "soft.png"
    soft.save(path)
    sketch = read_sketch(path)
    grey = np.asarray(soft, dtype=np.float32) / 255
    assert ((grey < 0.9) & (sketch.image > 0.99)).sum() == 0  # visible grey is kept as ink, not paper
    assert sketch.num_strokes == 1 and _coverage(sketch, grey < 0.7, 2.0) == 1.0

    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))  # black ink on fully transparent black
    ImageDraw.Draw(rgba).line([(5, 25), (45, 25)], fill=(0, 0, 0, 255), width=3)
    path = tmp_path / "alpha.png"
    rgba.save(path)
    sketch = read_sketch(path)
    assert sketch.image[0, 0] == 1.0 and sketch.image[25, 25] == 0.0 and sketch.num_strokes == 1

    path = tmp_path / "photo.jpg"
    _line_drawing().convert("RGB").save(path, quality=90)
    assert read_sketch(path).num_strokes >= 2


def test_bitmap_blank_and_bombs(tmp_path, monkeypatch):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (30, 20), (200, 180, 10)).save(blank)
    with pytest.raises(InputError, match="no ink found"):
        read_sketch(blank)
    drawing = tmp_path / "drawing.png"
    _line_drawing().save(drawing)
    monkeypatch.setattr(bitmap_module, "MAX_BITMAP_PIXELS", 1000)
    with pytest.raises(InputError, match="64x48 = 3,072 pixels"):
        read_sketch(drawing)
    monkeypatch.setattr(bitmap_module, "MAX_BITMAP_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own guard: a warning above, an error at 2x
    with pytest.raises(InputError, match="decompression bomb"):
        read_sketch(drawing)


def test_bitmap_width_estimate_matches_the_drawn_width():
    ink = np.zeros((60, 200), dtype=bool)
    ink[20:25, 10:190] = True  # 5 px wide bar
    strokes, width = trace_strokes(ink)
    assert width == pytest.approx(5, rel=0.1)
    assert len(strokes) == 1
    xs, ys = strokes[0][:, 0], strokes[0][:, 1]
    assert xs.min() < 15 and xs.max() > 185 and ((ys > 20) & (ys < 25)).all()  # along the bar's middle


def test_friss_json_to_labelled_svg_and_back_keeps_every_stroke_and_label(tmp_path, friss_test_files):
    """`sketchkit convert` round trip on real scenes (every 4th test file keeps the suite quick; all 500 pass)."""
    from sketchkit.inference import ground_truth_result
    from sketchkit.write import write_result

    for i, path in enumerate(friss_test_files[::4]):
        original = read_sketch(path)
        back = read_sketch(write_result(ground_truth_result(original), tmp_path / f"{i}.svg"))
        assert len(back.strokes) == len(original.strokes), path.name
        assert back.labels == original.labels and back.caption == original.caption, path.name
        assert back.instance_ids.tolist() == original.instance_ids.tolist(), path.name
        for got, want in zip(back.strokes, original.strokes):
            np.testing.assert_array_equal(got if len(want) > 1 else got[:1], want)


@pytest.mark.parametrize("name, text", [
    ("big.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="1e30" height="10"><path d="M 0 0 L 5 5"/></svg>'),
    ("big.json", json.dumps({"img_w": 1e30, "img_h": 100, "scene_strokes": [[0, 0, 0], [5, 5, 1]]})),
])
def test_astronomical_canvas_is_refused(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match="canvas size 1e\\+30"):
        read_sketch(tmp_path / name)
