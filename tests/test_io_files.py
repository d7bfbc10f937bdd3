"""sketchkit.io on the synthetic real-world-style files of tests/data (written for this project):
pen lifts, rough.js double strokes over a background rect, a viewBox 0 0 1 1 drawing with cubic
curves, elements that are not strokes, multi-drawing QuickDraw files and InkML with traceGroups.

Every SVG is also checked by rendering: the original with cairosvg at 512 px, and the strokes read
from it drawn as an SVG document of the same size and frame; ink must lie on ink both ways
(`svg_ink`, `ink_agreement`; reusable for any pair of SVGs, e.g. an input and its labelled SVG).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from sketchkit.errors import InputError
from sketchkit.io import SUPPORTED_SUFFIXES, detect_format, iter_drawings, iter_quickdraw, read_sketch
from sketchkit.io import svg as svg_module
from sketchkit.types import Sketch

DATA = Path(__file__).parent / "data"
SVG_FILES = sorted(DATA.glob("*.svg"))
SVG_NS = "http://www.w3.org/2000/svg"

# ------------------------------------------------------------------------------- ink comparison

INK_DARKNESS = 0.2
"""A rendered pixel is ink when its darkness composited on white, 1 - luminance, is above this: black
and coloured lines are ink, pale fills (and lines as pale as a light yellow) are not."""


def svg_ink(svg: str | bytes, size: int = 512, *, drop: tuple[str, ...] = (), drop_legend: bool = True) -> np.ndarray:
    """(H, W) bool ink mask of an SVG document rendered by cairosvg `size` px wide (height from the
    document's aspect ratio), composited on white.

    `drop`: local names of elements removed before rendering (e.g. what a reader reports as
    skipped: "text", "image", "use"); `drop_legend` removes subtrees marked data-sketchkit="legend"
    (sketchkit's own legend, not part of the drawing). Only for trusted test documents."""
    import cairosvg

    text = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    if drop or drop_legend:
        ElementTree.register_namespace("", SVG_NS)
        ElementTree.register_namespace("xlink", "http://www.w3.org/1999/xlink")
        root = ElementTree.fromstring(text)
        for parent in list(root.iter()):
            for child in list(parent):
                local = child.tag.rpartition("}")[2] if isinstance(child.tag, str) else None
                if local in drop or (drop_legend and child.attrib.get("data-sketchkit") == "legend"):
                    parent.remove(child)
        text = ElementTree.tostring(root, encoding="unicode")
    png = cairosvg.svg2png(bytestring=text.encode("utf-8"), output_width=size)
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.float64) / 255.0
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    on_white = rgb * alpha + (1.0 - alpha)
    return 1.0 - on_white @ np.array([0.2126, 0.7152, 0.0722]) > INK_DARKNESS


def ink_agreement(a: np.ndarray, b: np.ndarray, within: float = 2.0) -> tuple[float, float]:
    """(share of a's ink within `within` px of b's ink, share of b's ink within `within` px of a's).

    Masks of different sizes (renders one pixel apart) are padded with paper to a common size."""
    height, width = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, height - a.shape[0]), (0, width - a.shape[1])))
    b = np.pad(b, ((0, height - b.shape[0]), (0, width - b.shape[1])))

    def share(src: np.ndarray, dst: np.ndarray) -> float:
        if not src.any():
            return 1.0
        if not dst.any():
            return 0.0
        return float((ndimage.distance_transform_edt(~dst)[src] <= within).mean())

    return share(a, b), share(b, a)


def strokes_svg(sketch: Sketch, original: str | bytes) -> str:
    """The sketch's strokes as an SVG document framed like `original`: the original root's width,
    height and preserveAspectRatio, with viewBox 0 0 canvas (the reader's canvas starts at 0, 0)."""
    text = original.decode("utf-8") if isinstance(original, bytes) else original
    root = ElementTree.fromstring(text)
    attrs = " ".join(f'{key}="{root.attrib[key]}"' for key in ("width", "height", "preserveAspectRatio")
                     if key in root.attrib)
    widths = sketch.stroke_widths if sketch.stroke_widths is not None else np.ones(sketch.num_strokes)
    paths = []
    for stroke, width in zip(sketch.strokes, widths):
        points = stroke if len(stroke) > 1 else np.repeat(stroke, 2, axis=0)
        d = "M " + " L ".join(f"{float(x)!r} {float(y)!r}" for x, y in points)
        paths.append(f'<path d="{d}" fill="none" stroke="black" stroke-width="{float(width)!r}" '
                     'stroke-linecap="round" stroke-linejoin="round"/>')
    return (f'<svg xmlns="{SVG_NS}" {attrs} viewBox="0 0 {float(sketch.width)!r} {float(sketch.height)!r}">'
            + "".join(paths) + "</svg>")


#: elements each file holds that the reader skips on purpose (not drawn in the comparison)
UNREAD = ("text", "image", "use")


@pytest.mark.parametrize("path", SVG_FILES, ids=[p.name for p in SVG_FILES])
def test_read_strokes_draw_the_same_ink_as_the_original(path):
    original = path.read_text(encoding="utf-8")
    sketch = read_sketch(path)
    want = svg_ink(original, drop=UNREAD)
    got = svg_ink(strokes_svg(sketch, original))
    read_on_original, original_covered = ink_agreement(got, want)
    assert read_on_original >= 0.97 and original_covered >= 0.97, (path.name, read_on_original, original_covered)


def test_ink_agreement_sees_chords_and_missing_strokes():
    """The check itself: a pen-up chord drawn as ink, or a stroke left out, fails it."""
    original = (DATA / "pen_lifts.svg").read_text(encoding="utf-8")
    sketch = read_sketch(DATA / "pen_lifts.svg")
    want = svg_ink(original)
    joined = Sketch(strokes=(np.concatenate(sketch.strokes),), width=sketch.width, height=sketch.height,
                    stroke_widths=sketch.stroke_widths[:1])
    on_original, _ = ink_agreement(svg_ink(strokes_svg(joined, original)), want)
    assert on_original < 0.9  # the chords between subpaths are ink the original does not have
    fewer = Sketch(strokes=sketch.strokes[:4], width=sketch.width, height=sketch.height,
                   stroke_widths=sketch.stroke_widths[:4])
    _, covered = ink_agreement(svg_ink(strokes_svg(fewer, original)), want)
    assert covered < 0.9


# ------------------------------------------------------------------------------------------ SVG


def test_every_moveto_starts_a_stroke_and_pen_up_moves_are_not_drawn():
    sketch = read_sketch(DATA / "pen_lifts.svg")
    expected = [
        [[20, 20], [30, 20], [40, 30]],                        # M20,20 m0,0: the lone first moveto draws nothing
        [[45, 20], [45, 40]],                                  # m5,-10 relative to the end of the last stroke
        [[15, 50], [55, 50], [55, 60], [15, 60], [15, 50]],    # closed by z
        [[15, 70], [35, 70]],                                  # m0,20 after z: from the closed subpath's start
        [[100, 20], [120, 20], [120, 40]],                     # absolute M
        [[100, 60], [100, 60]],                                # l0,0: a dot
        [[110, 60], [120, 70]],
        [[120, 70], [130, 60]],                                # m0,0: a pen lift that does not move
    ]
    assert [s.tolist() for s in sketch.strokes] == expected
    assert sketch.source_ids == ("drawing",) * 8  # every stroke of the split path keeps its id
    assert sketch.skipped == {"background rect": 1}  # svgwrite's white background
    np.testing.assert_allclose(sketch.stroke_widths, 2)
    # no chord: the pen-up moves (40,30)->(45,20), (45,40)->(15,50), ... belong to no stroke, so the
    # rendered strokes leave the space between subpaths blank (see also the ink test below)


def test_rough_js_double_strokes_over_a_background_rect():
    sketch = read_sketch(DATA / "excalidraw_like.svg")
    assert sketch.num_strokes == 7
    assert sketch.source_ids == ("rect-1", "rect-1", "ellipse-1", "ellipse-1", "line-1", "line-1", "freedraw-1")
    assert sketch.skipped == {"background rect": 1}
    x0, y0, x1, y1 = sketch.bounds()
    assert x0 > 20 and y0 > 20 and x1 < 400 and y1 < 250  # no frame along the canvas edge
    # each pass of the double-stroked rectangle is one closed-looking trace around the shape
    first, second = sketch.strokes[:2]
    for stroke in (first, second):
        assert np.ptp(stroke[:, 0]) == pytest.approx(160, abs=3) and np.ptp(stroke[:, 1]) == pytest.approx(100, abs=3)
    # the freedraw trail (fill-only, dark) is read as its outline
    assert np.ptp(sketch.strokes[6][:, 0]) > 60


def test_unit_viewbox_curves_match_svgpathtools_exact_curves():
    from svgpathtools import parse_path

    path = DATA / "unit_viewbox_curves.svg"
    sketch = read_sketch(path)
    assert (sketch.width, sketch.height) == (1, 1) and sketch.num_strokes == 4
    root = ElementTree.fromstring(path.read_text(encoding="utf-8"))
    ds = [e.attrib["d"] for e in root.iter(f"{{{SVG_NS}}}path")]
    drawing = np.hypot(*np.ptp(np.concatenate(sketch.strokes), axis=0))
    for stroke, d in zip(sketch.strokes, ds):
        exact = parse_path(d)
        t = np.linspace(0, 1, 4001)
        truth = np.array([exact.point(v) for v in t]) + (0.02 - 0.01j)  # the layer's translate(0.02,-0.01)
        truth = np.stack([truth.real, truth.imag], axis=1)
        a, b = stroke[:-1], stroke[1:]
        ab = b - a
        u = np.clip(((truth[:, None, :] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-30), 0, 1)
        deviation = np.linalg.norm(truth[:, None, :] - (a + u[..., None] * ab), axis=-1).min(axis=1).max()
        # every flattened point lies on the exact curve too
        on_curve = np.linalg.norm(stroke[:, None, :] - truth[None], axis=-1).min(axis=1).max()
        assert deviation < 1e-3 * drawing and on_curve < 1e-3 * drawing, (d, deviation, on_curve)
        assert len(stroke) > 10  # not reduced to chords


def test_flattening_is_scale_invariant(tmp_path):
    """The same drawing in a viewBox 1000 times smaller is flattened into the same points, scaled."""
    body = '<path d="M 100 500 C 200 100 800 100 900 500 S 500 900 100 500" stroke="black" fill="none"/>'
    big = tmp_path / "big.svg"
    big.write_text(f'<svg xmlns="{SVG_NS}" viewBox="0 0 1000 1000">{body}</svg>')
    small = tmp_path / "small.svg"
    small.write_text(f'<svg xmlns="{SVG_NS}" width="1mm" height="1mm" viewBox="0 0 1 1">'
                     f'<g transform="scale(0.001)">{body}</g></svg>')
    a, b = read_sketch(big).strokes[0], read_sketch(small).strokes[0]
    assert len(a) == len(b) > 30
    np.testing.assert_allclose(b * 1000, a, atol=1e-9)
    assert svg_module.flatten_tolerance(1.0) == pytest.approx(svg_module.FLATTEN_TOLERANCE)
    assert svg_module.flatten_tolerance(1000.0, 1.0) == svg_module.flatten_tolerance(1.0)  # the smaller of the two
    assert svg_module.flatten_tolerance(0.0) > 0


def test_text_image_and_invisible_shapes_are_skipped_and_counted():
    sketch = read_sketch(DATA / "text_image.svg")
    assert sketch.source_ids == ("walls", "roof")
    assert sketch.skipped == {"hidden path": 2, "unpainted rect": 1, "fill-only ellipse": 1, "text": 2, "image": 1,
                              "use": 1}


@pytest.mark.parametrize("body, read, skipped", [
    ('<path d="M0 0 L5 5" stroke="red" stroke-opacity="0"/>', 0, {"unpainted path": 1}),
    ('<path d="M0 0 L5 5" stroke="transparent"/>', 0, {"unpainted path": 1}),
    ('<path d="M0 0 L5 5" stroke="rgba(0, 0, 0, 0)"/>', 0, {"unpainted path": 1}),
    ('<path d="M0 0 L5 5" stroke="#00000000" fill="none"/>', 0, {"unpainted path": 1}),
    ('<path d="M0 0 L5 5" style="stroke:black;stroke-width:0;fill:none"/>', 0, {"unpainted path": 1}),
    ('<g opacity="0"><path d="M0 0 L5 5" stroke="black"/></g>', 0, {"hidden path": 1}),
    ('<g style="opacity:50%"><path d="M0 0 L5 5" stroke="black"/></g>', 1, {}),
    ('<g stroke="black"><path d="M0 0 L5 5"/><path d="M0 0 L5 5" stroke="none" fill="none"/></g>', 1,
     {"unpainted path": 1}),
    ('<g style="stroke:#333"><path d="M0 0 L5 5" stroke="inherit"/><path d="M0 0 L5 5" stroke="bogus"/></g>', 2, {}),
    ('<g color="navy"><path d="M0 0 L5 5" stroke="currentColor"/></g>', 1, {}),
    ('<path d="M0 0 L5 5" stroke="url(#gradient)"/>', 1, {}),
    ('<rect x="10" y="10" width="20" height="20" fill="#ffeeaa"/>', 0, {"fill-only rect": 1}),
    ('<rect x="10" y="10" width="20" height="20" fill="black" fill-opacity="0.1"/>', 0, {"fill-only rect": 1}),
    ('<rect x="10" y="10" width="20" height="20" fill="url(#hatch)"/>', 0, {"fill-only rect": 1}),
    ('<rect x="10" y="10" width="20" height="20" fill="#333"/>', 1, {}),  # a dark fill is ink: its outline
    ('<rect width="100" height="100" fill="#222"/><path d="M0 0 L5 5" stroke="#eee"/>', 1,
     {"background rect": 1}),  # dark mode paper
    ('<path d="M0 0 L100 100"/>', 1, {}),  # unstyled: read; no area, so never background
    # the initial black fill counts only for an unstyled shape
    ('<path d="M0 0 L100 100" stroke="none"/>', 0, {"unpainted path": 1}),
    ('<circle cx="50" cy="50" r="49" fill="white" stroke="black"/>', 1, {}),  # stroked: a stroke, not paper
])
def test_what_is_a_stroke(tmp_path, body, read, skipped):
    path = tmp_path / "s.svg"
    path.write_text(f'<svg xmlns="{SVG_NS}" viewBox="0 0 100 100">{body}</svg>')
    if read:
        sketch = read_sketch(path)
        assert sketch.num_strokes == read and sketch.skipped == skipped
    else:
        with pytest.raises(InputError, match="no strokes found") as info:
            read_sketch(path)
        assert "skipped: " + ", ".join(f"{n} {k}" for k, n in skipped.items()) in str(info.value)


def test_no_visible_strokes_message_names_what_was_skipped(tmp_path):
    path = tmp_path / "notes.svg"
    path.write_text(f'<svg xmlns="{SVG_NS}" viewBox="0 0 100 100"><rect width="100" height="100" fill="#fff"/>'
                    '<text>a</text><text>b</text><image href="data:," width="1" height="1"/></svg>')
    with pytest.raises(InputError) as info:
        read_sketch(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert message.endswith("(skipped: 1 background rect, 2 text, 1 image)")


def test_sketchkit_legend_and_source_id_round_trip(tmp_path):
    path = tmp_path / "labelled.svg"
    path.write_text(f'<svg xmlns="{SVG_NS}" viewBox="0 0 100 100"><g id="strokes">'
                    '<path d="M0 0 L5 5" data-source-id="drawing" stroke="red" fill="none"/>'
                    '<path d="M9 9 L5 5" data-source-id="drawing" id="other" stroke="red" fill="none"/>'
                    '<path d="M1 1 L2 2" stroke="red" fill="none"/></g>'
                    '<g id="legend" data-sketchkit="legend"><rect width="100" height="100" fill="#fff"/>'
                    '<text>tree (2)</text></g></svg>')
    sketch = read_sketch(path)
    assert sketch.source_ids == ("drawing", "drawing", None)  # data-source-id wins over id
    assert sketch.skipped == {}  # the legend is sketchkit's own: neither read nor counted


# ------------------------------------------------------------------------------------ QuickDraw


def test_ndjson_yields_every_drawing_named_by_key_id():
    path = DATA / "three_drawings.ndjson"
    drawings = list(iter_drawings(path))
    assert [name for name, _ in drawings] == ["4610000000000001", "4610000000000002", "4610000000000003"]
    assert [s.source for _, s in drawings] == [f"{path}#{name}" for name, _ in drawings]
    assert [s.caption for _, s in drawings] == ["a cat", "a sun", "a fish"]
    assert [s.num_strokes for _, s in drawings] == [4, 3, 3]
    sun = drawings[1][1]  # the raw form: x, y, t lists of floats; times ignored
    assert sun.strokes[0][:2].tolist() == [[120.5, 30.0], [140.25, 40.5]]
    assert sun.labels == ("sun",) * 3
    assert drawings[2][1].strokes[2].tolist() == [[40, 45]]  # a one-point stroke is a dot
    first = read_sketch(path)  # read_sketch: the first drawing only, named by the file
    assert first.source == str(path) and first.strokes[0].tolist() == drawings[0][1].strokes[0].tolist()
    assert [s.num_strokes for s in iter_quickdraw(path)] == [4, 3, 3]


def test_json_array_of_quickdraw_records():
    path = DATA / "quickdraw_records.json"
    drawings = list(iter_drawings(path))
    assert [name for name, _ in drawings] == ["4610000000000003", "4610000000000001", "4610000000000002"]
    assert [s.caption for _, s in drawings] == ["a fish", "a cat", "a sun"]
    assert read_sketch(path).caption == "a fish"  # the first record


def test_drawing_names_fall_back_to_the_index(tmp_path):
    records = [{"drawing": [[[0, 1], [0, 1]]], "key_id": "7"}, {"drawing": [[[0, 2], [0, 2]]], "key_id": "7"},
               {"drawing": [[[0, 3], [0, 3]]]}, {"drawing": [[[0, 4], [0, 4]]], "key_id": "../x"},
               {"drawing": [[[0, 5], [0, 5]]], "key_id": 4}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(records))
    # a repeated key_id, none, an unsafe one (-> the index) and an int key_id that an index already took
    assert [name for name, _ in iter_drawings(path)] == ["7", "1", "2", "3", "4"]
    records[4]["key_id"] = "2"
    path.write_text(json.dumps(records))
    assert [name for name, _ in iter_drawings(path)] == ["7", "1", "2", "3", "4"]
    records[1]["key_id"] = "2"
    path.write_text(json.dumps(records))
    assert [name for name, _ in iter_drawings(path)] == ["7", "2", "2_", "3", "4"]


def test_single_drawing_files_yield_one_unnamed_sketch(tmp_path):
    for name, text in (("one.ndjson", json.dumps({"word": "ant", "key_id": "1", "drawing": [[[0, 1], [0, 1]]]})),
                       ("one.json", json.dumps([{"word": "ant", "key_id": "1", "drawing": [[[0, 1], [0, 1]]]}]))):
        path = tmp_path / name
        path.write_text(text + "\n")
        assert [(n, s.source, s.caption) for n, s in iter_drawings(path)] == [("", str(path), "an ant")]
    (tmp_path / "one.txt").write_text("a caption beside the file")
    assert next(iter_drawings(tmp_path / "one.json"))[1].caption == "a caption beside the file"
    assert next(iter_drawings(tmp_path / "one.json", caption="given"))[1].caption == "given"
    svg = DATA / "pen_lifts.svg"
    assert [(n, s.num_strokes, s.source) for n, s in iter_drawings(svg)] == [("", 8, str(svg))]


def test_huge_ndjson_is_streamed_not_loaded(tmp_path, monkeypatch):
    from sketchkit.io import limits

    path = tmp_path / "category.ndjson"
    path.write_text("\n".join(json.dumps({"word": "ant", "key_id": f"k{k}", "drawing": [[[k, k + 1], [0, 0]]]})
                              for k in range(40)))
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)

    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr("sketchkit.io.read_bytes_limited", refuse)
    names = [name for name, _ in iter_drawings(path)]
    assert names == [f"k{k}" for k in range(40)]


def test_bad_drawings_name_their_line_or_record(tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps({"drawing": [[[0], [0]]]}) + "\n" + json.dumps({"drawing": "x"}) + "\n")
    drawings = iter_drawings(path)
    with pytest.raises(InputError, match="line 2: 'drawing' must be a list"):
        list(drawings)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"drawing": [[[0], [0]]]}, {"word": "no drawing"}]))
    with pytest.raises(InputError, match="record 1: not a QuickDraw record") as info:
        list(iter_drawings(path))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    path.write_text(json.dumps([{"a": 1}]))  # a list of objects that are not records: a clear message
    with pytest.raises(InputError, match="record 0: not a QuickDraw record: expected an object with a 'drawing'"):
        read_sketch(path)
    path.write_text("[]")
    with pytest.raises(InputError, match="empty"):
        list(iter_drawings(path))


# ---------------------------------------------------------------------------------------- InkML


def test_inkml_traces_channels_and_trace_group_labels():
    path = DATA / "labelled.inkml"
    assert detect_format(path.read_bytes(), ".xml") == "inkml" and ".inkml" in SUPPORTED_SUFFIXES
    sketch = read_sketch(path)
    assert sketch.source_ids == ("t0", "t1", "t3", "t2", "t4", "t5")  # document order; the hover trace skipped
    assert sketch.skipped == {"pen-up trace": 1}
    assert sketch.labels == ("house", "house", None, "sun", "sun", "sun")
    assert sketch.instance_ids.tolist() == [0, 0, -1, 1, 1, 1]
    assert sketch.caption == "a house and a sun"
    # channels T, Y, X: points are (X, Y)
    assert sketch.strokes[0].tolist() == [[40, 160], [40, 90], [140, 90], [140, 160], [40, 160]]
    # first differences (') then second differences ("), each kept until changed
    assert sketch.strokes[3].tolist() == [[200, 40], [204, 44], [206, 48], [206, 52], [204, 56]]
    x0, y0, x1, y1 = sketch.bounds()
    assert (x1, y1) == (255, 176) and sketch.width > 255 and sketch.height > 176  # ink bounds plus a margin


def _inkml(body: str, head: str = "") -> str:
    return f'<ink xmlns="http://www.w3.org/2003/InkML">{head}{body}</ink>'


@pytest.mark.parametrize("text, strokes", [
    (_inkml("<trace>1 2, 3 4,5 6</trace><trace> 7 8 </trace>"), [[[1, 2], [3, 4], [5, 6]], [[7, 8]]]),  # default X Y
    (_inkml("<trace>1-2, 3-4</trace>"), [[[1, -2], [3, -4]]]),  # signs separate values
    (_inkml("<trace>1 2 0.5, 3 4 0.7</trace>", '<traceFormat><channel name="X"/><channel name="Y"/>'
            '<channel name="F"/></traceFormat>'), [[[1, 2], [3, 4]]]),
    (_inkml("<trace>5 1 2, 6 3 4</trace>", '<context><traceFormat><channel name="T"/><channel name="X"/>'
            '<channel name="Y"/></traceFormat></context>'), [[[1, 2], [3, 4]]]),
    (_inkml("<trace>1 2, ? 3, * 5</trace>"), [[[1, 2], [1, 5]]]),  # '?' unknown: dropped; '*' repeats
    ('<?xml version="1.0"?><inkml:ink xmlns:inkml="http://www.w3.org/2003/InkML"><inkml:trace>0 0, 1 1'
     '</inkml:trace></inkml:ink>', [[[0, 0], [1, 1]]]),
    ("<ink><trace id='a'>0 0, 2 2</trace><traceGroup><annotation type='truth'>x</annotation>"
     "<traceView traceDataRef='a'/></traceGroup></ink>", [[[0, 0], [2, 2]]]),  # CROHME: no namespace, plain ids
])
def test_inkml_trace_grammar(tmp_path, text, strokes):
    path = tmp_path / "t.inkml"
    path.write_text(text)
    assert [s.tolist() for s in read_sketch(path).strokes] == strokes


def test_crohme_style_labels(tmp_path):
    path = tmp_path / "expr.inkml"
    path.write_text('<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">$x+1$</annotation>'
                    '<trace id="0">0 0, 5 5</trace><trace id="1">5 0, 0 5</trace><trace id="2">9 0, 9 5</trace>'
                    '<traceGroup xml:id="7"><annotation type="truth">Segmentation</annotation>'
                    '<traceGroup xml:id="8"><annotation type="truth">x</annotation><traceView traceDataRef="0"/>'
                    '<traceView traceDataRef="1"/></traceGroup>'
                    '<traceGroup xml:id="9"><annotation type="label">1</annotation><traceView traceDataRef="2"/>'
                    '</traceGroup></traceGroup></ink>')
    sketch = read_sketch(path)
    assert sketch.labels == ("x", "x", "1") and sketch.instance_ids.tolist() == [0, 0, 1]


@pytest.mark.parametrize("text, message", [
    (_inkml("<trace>1 2, 3</trace>"), "trace #1: point 1 has 1 values"),
    (_inkml("<trace>1 2, a b</trace>"), "trace #1: point 1 holds something that is not a value"),
    (_inkml("<trace>1 2</trace>", '<traceFormat><channel name="X"/><channel name="T"/></traceFormat>'),
     "without both X and Y"),
    (_inkml("<trace/><trace type='penUp'>1 1</trace>"), r"no strokes found.*\(skipped: 1 empty trace, 1 pen-up"),
    ('<?xml version="1.0"?><!DOCTYPE ink [<!ENTITY a "b">]><ink><trace>&a;</trace></ink>', "refuses DTDs"),
    (_inkml("<trace>1 2") , "not well-formed XML"),
    ("<ink><trace>1e400 0, 0 0</trace></ink>", "non-finite"),
])
def test_inkml_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "bad.inkml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_sketch(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_inkml_is_sniffed_by_content_and_suffix(tmp_path):
    ink = _inkml("<trace>0 0, 1 1</trace>").encode()
    assert detect_format(ink, ".svg") == "inkml"
    assert detect_format(b'<?xml version="1.0"?>\n<!-- pen -->\n<ink>', "") == "inkml"
    assert detect_format(b"<trace>0 0</trace>", ".inkml") == "inkml"
    assert detect_format(b'<svg xmlns="http://www.w3.org/2000/svg"/>', ".inkml") == "svg"
    path = tmp_path / "named.svg"
    path.write_bytes(ink)
    assert read_sketch(path).num_strokes == 1


_TRACE_TOKENS = st.sampled_from(["1", "-2.5", "3e2", "1e400", "nan", " ", ",", "'", '"', "!", "*", "?", "T", "F",
                                 "-", ".", "x", "0"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=st.lists(_TRACE_TOKENS, max_size=30).map("".join),
       channels=st.permutations(["X", "Y", "T"]))
def test_fuzz_inkml_traces(tmp_path, trace, channels):
    head = "<traceFormat>" + "".join(f'<channel name="{c}"/>' for c in channels) + "</traceFormat>"
    path = tmp_path / "fuzz.inkml"
    path.write_text(_inkml(f"<trace>{trace}</trace>", head))
    try:
        sketch = read_sketch(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert all(np.isfinite(s).all() and len(s) for s in sketch.strokes)
