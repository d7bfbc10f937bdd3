"""Issue 14, round 2, memory and time caps: inputs under 1 MB stay under 2 GB and 60 s, every cap is
checked before the allocation it guards, device files and FIFOs are read as capped streams.

Inputs are generated here. Memory cases run in a subprocess under RLIMIT_AS; the rest call the
library or `cli.app.main` in-process with a generous time bound (2 shared CPU cores).
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli.app import main
from sketchkit.errors import InputError
from sketchkit.io import limits, read_sketch
from sketchkit.io.bitmap import _walk_branches, read_bitmap
from sketchkit.io.svg import read_svg
from sketchkit.inference.policy import LabelPolicy
from sketchkit.labels import load_mapping, load_vocabulary, parse_labels
from sketchkit.types import Sketch

REPO = Path(__file__).resolve().parents[2]


def _svg(body: str, size: int = 100) -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">{body}</svg>'.encode()


def _one_line_error(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def small_json(tmp_path) -> Path:
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"scene_strokes": [[10, 10, 0], [50, 50, 1], [20, 80, 0], [80, 80, 1]]}))
    return path


# ------------------------------------------------------------------------------------- label lists


@pytest.mark.parametrize("what", ["labels", "vocab"])
def test_label_lists_from_dev_zero_stop_at_the_byte_cap(capsys, small_json, tmp_path, what):
    args = ["--labels", "@/dev/zero"] if what == "labels" else ["--caption", "a tree", "--vocab", "/dev/zero"]
    began = time.perf_counter()
    code = main(["segment", str(small_json), *args, "--model", "oracle", "-o", str(tmp_path / "out")])
    assert time.perf_counter() - began < 20
    _one_line_error(capsys, code, "/dev/zero", "larger than the 4.0 MiB")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_name_map_and_vocabulary_readers_are_capped():
    for read in (load_mapping, load_vocabulary, lambda p: parse_labels(f"@{p}")):
        with pytest.raises(InputError, match="larger than the 4.0 MiB"):
            read("/dev/zero")


def test_fifo_is_read_as_a_capped_stream(tmp_path):
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer():  # an endless writer: the reader must stop by itself at the cap
        try:
            with open(fifo, "wb") as handle:
                while not stop.is_set():
                    handle.write(b"tree\n" * 10_000)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(InputError, match="lines sketchkit reads|larger than"):
            parse_labels(f"@{fifo}")
    finally:
        stop.set()
        thread.join(timeout=5)


def test_line_cap_stops_at_limit_plus_one(tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("a\n" * (limits.MAX_LIST_FILE_LINES + 1))
    with pytest.raises(InputError, match="more than the 100,000 lines"):
        load_vocabulary(path)
    path.write_text("a\n" * limits.MAX_LIST_FILE_LINES)
    assert load_vocabulary(path) == ["a"]


def test_label_count_and_length_caps(tmp_path):
    names = [f"label{i}" for i in range(limits.MAX_LABELS)]
    assert len(LabelPolicy.fixed(names).names) == limits.MAX_LABELS
    with pytest.raises(InputError, match="1,001 labels given, more than the 1,000"):
        LabelPolicy.fixed([*names, "one more"])
    with pytest.raises(InputError, match="a label of 201 characters"):
        LabelPolicy.fixed(["x" * 201])
    # the ground truth of a sketch is capped too (the oracle, eval per-sketch)
    labels = tuple(f"name{i}" for i in range(limits.MAX_LABELS + 1))
    sketch = Sketch(strokes=tuple(np.array([[i, 0.0], [i, 1.0]]) for i in range(len(labels))), width=2000.0,
                    height=2.0, labels=labels)
    with pytest.raises(InputError, match="more than the 1,000"):
        LabelPolicy.ground_truth().labels_for(sketch)


def test_label_file_over_the_cap_is_one_line_exit_2(capsys, small_json, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"label{i}" for i in range(3000)))
    code = main(["segment", str(small_json), "--labels", f"@{labels}", "--model", "oracle", "-o", str(tmp_path / "o")])
    _one_line_error(capsys, code, "3,000 labels given, more than the 1,000")


def test_a_texture_png_is_refused_before_tracing(tmp_path):
    """A 42 KB checkerboard PNG of 6,000 x 6,000 thins to 18 M skeleton pixels: traced, it took 2.6 GB."""
    from PIL import Image

    board = (np.indices((6000, 6000)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "checker.png", optimize=True)
    script = "import sys\nfrom sketchkit.io import read_sketch\nread_sketch(sys.argv[1])\n"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "checker.png")], capture_output=True, text=True,
                          timeout=60, preexec_fn=_limit_memory(1_500_000_000), cwd=REPO)
    assert "thins to 18,000,000 pixels of line" in done.stderr and "MemoryError" not in done.stderr, done.stderr[-2000:]


def test_caption_matching_is_linear_whatever_the_vocabulary():
    """A vocabulary of odd words (-ies, -ves, -ses, one name of 300 punctuation tokens) and a 200,000-character
    caption: the span at each word grows only while a name starts with it (it took minutes)."""
    import random

    from sketchkit.labels import labels_from_caption

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 9))) + rng.choice(["ies", "ves", "ses", "s"])
             for _ in range(6000)] + ["'" * 199, "- " * 99 + "x", "x y " * 49, "teddy bear", "wolf"]
    caption = " ".join(rng.choice(words) for _ in range(20_000))[:200_000] + " and two teddy bears and wolves"
    start = time.perf_counter()
    found = labels_from_caption(caption, words)
    assert time.perf_counter() - start < 10 and {"teddy bear", "wolf"} <= set(found)


def test_chunked_scores_equal_unchunked(monkeypatch):
    from sketchkit.inference import methods
    from sketchkit.inference.methods import ModelSpec, build_segmenter

    sketch = Sketch(strokes=(np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 20.0]]),), width=100.0, height=100.0)
    labels = [f"label {i}" for i in range(40)]
    for name in ("clip-surgery", "clip"):
        segmenter = build_segmenter(ModelSpec(name=name, backbone="tiny-random", device="cpu"))
        features = segmenter.encode([segmenter.rasterize(sketch)], [sketch])[0]
        maps = []
        for chunk in (7, 10_000):
            monkeypatch.setattr(methods, "SCORE_CHUNK_LABELS", chunk)
            maps.append(segmenter.score(features, labels))
        assert maps[0].shape == (40, segmenter.input_size, segmenter.input_size)
        assert np.array_equal(maps[0], maps[1]), name
    # the text tower in chunks: the same embeddings up to float rounding (BLAS sums depend on the batch)
    cached = dict(segmenter._text_cache)
    segmenter._text_cache.clear()
    monkeypatch.setattr(methods, "TEXT_CHUNK_LABELS", 3)
    import torch

    assert torch.allclose(segmenter.text_features(labels), torch.stack([cached[n] for n in labels]), atol=1e-6)


def test_surgery_without_the_class_product_matches_clip_surgery():
    import torch

    from sketchkit.model.similarity import feature_surgery, surgery_weights

    gen = torch.Generator().manual_seed(0)
    scene, patches, text = (torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=-1)
                            for shape in ((32,), (49, 32), (20, 32)))
    prob = (scene @ text.T * 2).softmax(-1)
    products = patches[:, None, :] * (text * (prob / prob.mean())[:, None])[None]
    expected = (products - products.mean(1, keepdim=True)).sum(-1).T  # CLIP Surgery as published
    weight, redundant = surgery_weights(scene, patches, text)
    assert torch.allclose(feature_surgery(patches, text, weight, redundant), expected, atol=1e-6)


# -------------------------------------------------------------------------------------------- SVG


def test_arc_ending_at_its_start_is_omitted():
    sketch = read_svg(_svg('<path d="M 10 10 A 5 5 0 0 1 10 10 L 50 50" stroke="black" fill="none"/>'), "arc.svg")
    assert sketch.num_strokes == 1
    assert np.allclose(sketch.strokes[0], [[10, 10], [50, 50]])
    with pytest.raises(InputError, match="no strokes found"):  # nothing else drawn: nothing to read
        read_svg(_svg('<path d="M 10 10 A 5 5 0 0 1 10 10" stroke="black" fill="none"/>'), "arc.svg")


def _big_arcs(count: int) -> bytes:
    d = "M 10 10 " + " ".join(f"A 100000 100000 0 1 1 {10 + ((i + 1) % 2) * 80} 10" for i in range(count))
    return _svg(f'<path d="{d}" stroke="black" fill="none"/>')


def test_flattened_points_are_capped_before_they_are_built():
    data = _big_arcs(5000)  # 0.1 MB; 4,096 points each would be 20 million points
    assert len(data) < 200_000
    began = time.perf_counter()
    with pytest.raises(InputError, match="flatten into more than 2,000,000 points"):
        read_svg(data, "arcs.svg")
    assert time.perf_counter() - began < 20


def test_transform_lists_are_capped(monkeypatch):
    def chain(count):
        items = " ".join("translate(0.001)" for _ in range(count))
        return _svg(f'<path transform="{items}" d="M 10 10 L 50 50" stroke="black"/>')

    began = time.perf_counter()
    assert read_svg(chain(limits.MAX_TRANSFORM_ITEMS), "t.svg").num_strokes == 1
    with pytest.raises(InputError, match="more than 1,000 items"):
        read_svg(chain(200_000), "t.svg")  # 3.4 MB of transform: refused at item 1,001
    assert time.perf_counter() - began < 10


def test_curve_paths_are_capped(monkeypatch):
    from sketchkit.io import svg

    monkeypatch.setattr(svg, "MAX_CURVE_ELEMENTS", 50)
    def curves(count):
        return "".join(f'<path d="M {i % 90} 1 C 3 4 5 6 7 8"/>' for i in range(count))

    fast = "".join(f'<path d="M {i % 90} 1 L 3 4"/>' for i in range(500))  # the fast path does not count
    with pytest.raises(InputError, match="more than 50 paths with curves"):
        read_svg(_svg(f'<g stroke="black" fill="none">{curves(51)}</g>'), "c.svg")
    assert read_svg(_svg(f'<g stroke="black" fill="none">{curves(50)}{fast}</g>'), "c.svg").num_strokes == 550


# ------------------------------------------------------------------------------------------ bitmaps


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_walk_over_many_components_is_linear():
    empty = np.zeros(0, dtype=np.int64)
    began = time.perf_counter()
    walk, starts, closed = _walk_branches(200_000, empty, empty)
    assert time.perf_counter() - began < 5  # a single virtual root made this minutes
    assert len(starts) == 200_000 and np.array_equal(walk, np.arange(200_000)) and not closed.any()
    walk, starts, closed = _walk_branches(6, np.array([0, 1, 2, 4]), np.array([1, 2, 0, 5]))
    assert walk.tolist() == [0, 1, 2, 3, 4, 5] and starts.tolist() == [0, 3, 4] and closed.tolist() == [True, False, False]


def test_dot_grid_png_is_refused_before_its_strokes_are_built():
    pixels = np.full((1000, 1000), 255, np.uint8)
    pixels[::2, ::2] = 0  # 250,000 dots in a 4 kB PNG
    data = _png(pixels)
    assert len(data) < 20_000
    began = time.perf_counter()
    with pytest.raises(InputError, match="more than 50,000 separate strokes"):
        read_bitmap(data, "grid.png")
    assert time.perf_counter() - began < 30


def test_png_of_1500_dots_is_read_quickly():
    pixels = np.full((400, 400), 255, np.uint8)
    index = np.arange(1500)
    pixels[(index // 39) * 10 + 5, (index % 39) * 10 + 5] = 0
    began = time.perf_counter()
    assert read_bitmap(_png(pixels), "dots.png").num_strokes == 1500
    assert time.perf_counter() - began < 10


# ------------------------------------------------------------------------------------------- raster


def test_back_and_forth_stroke_rasterizes_in_seconds_with_the_same_ink(monkeypatch):
    from sketchkit import raster

    i = np.arange(100_000)
    points = np.stack([10 + 80 * (i % 2), 10 + 80 * (i % 2) + (i % 3) * 0.01], axis=1).astype(float)
    sketch = Sketch(strokes=(points,), width=100.0, height=100.0)
    began = time.perf_counter()
    drawn = raster.rasterize(sketch, 224)
    assert time.perf_counter() - began < 30  # minutes in one cairo path
    # the same ink as one path, to within a pixel, on a stroke short enough to draw whole
    short = Sketch(strokes=(points[:3000],), width=100.0, height=100.0)
    pieces = raster.rasterize(short, 224)
    monkeypatch.setattr(raster, "MAX_PATH_POINTS", 10**9)
    whole = raster.rasterize(short, 224)
    assert np.array_equal(pieces.stroke_ids, whole.stroke_ids)
    assert np.abs(pieces.image - whole.image).max() < 0.5
    assert np.array_equal(drawn.stroke_ids >= 0, whole.stroke_ids >= 0)


def test_two_point_alternation_is_drawn_without_crashing():
    from sketchkit import raster

    i = np.arange(400_000)
    points = np.stack([10.0 + 80 * (i % 2), np.full(len(i), 50.0)], axis=1)
    drawn = raster.rasterize(Sketch(strokes=(points,), width=100.0, height=100.0), 224)
    assert (drawn.stroke_ids == 0).any()


# --------------------------------------------------------------------------------------- PNG overlay


def test_long_label_is_fitted_in_log_steps():
    from PIL import Image, ImageDraw

    from sketchkit.render import _fit, _font

    draw, font = ImageDraw.Draw(Image.new("RGB", (10, 10))), _font()
    began = time.perf_counter()
    fitted = _fit(draw, "x" * 20_000, font, 200)
    assert time.perf_counter() - began < 2
    assert fitted.endswith("...") and draw.textlength(fitted, font=font) <= 200
    assert draw.textlength(fitted[:-3] + "x...", font=font) > 200  # the longest prefix that fits
    assert _fit(draw, "tree", font, 200) == "tree"


def test_png_overlay_of_a_20000_character_label(tmp_path, capsys):
    source = tmp_path / "long.json"
    source.write_text(json.dumps({"scene_strokes": [[10, 10, 0], [50, 50, 1], [20, 80, 0], [80, 80, 1]],
                                  "object_divisions": [0, 1, 2], "gt_class_names": ["x" * 20_000, "tree"]}))
    began = time.perf_counter()
    assert main(["convert", str(source), str(tmp_path / "long.png")]) == 0
    assert time.perf_counter() - began < 20
    assert (tmp_path / "long.png").stat().st_size > 0


# ------------------------------------------------------------------------------------- stroke JSON


def _limit_memory(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


def test_stroke_count_is_capped_before_the_strokes_are_built(tmp_path):
    path = tmp_path / "dots.json"
    count = 2_000_000  # 16 MB of one-point strokes
    path.write_text("[" + ",".join(["[1,1,1]"] * count) + "]")
    script = ("import sys\nfrom sketchkit.io import read_sketch\nfrom sketchkit.errors import InputError\n"
              "try:\n    read_sketch(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n    sys.exit(2)\n")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60,
                          preexec_fn=_limit_memory(1_500_000_000), cwd=REPO)
    assert time.perf_counter() - began < 60
    assert done.returncode == 2, done.stderr[-2000:]
    assert "2,000,000 strokes, more than the 500,000" in done.stdout


def test_polyline_list_stroke_count_is_checked_first(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps([[[1, 1]]] * (limits.MAX_STROKES_PER_SKETCH + 1)))
    with pytest.raises(InputError, match="500,001 strokes"):
        read_sketch(path)


def test_segment_of_30000_dots_writes_its_outputs_in_seconds(tmp_path, capsys):
    source = tmp_path / "dots.json"
    source.write_text(json.dumps({"scene_strokes": [[1, 1, 1]] * 30_000}))  # 0.2 MB
    began = time.perf_counter()
    code = main(["segment", str(source), "--labels", "a,b", "--backbone", "tiny-random", "-o", str(tmp_path / "out"),
                 "--format", "svg,json", "-q"])
    assert code == 0, capsys.readouterr().err
    assert time.perf_counter() - began < 40  # the SVG writer was quadratic in the strokes: minutes
    assert (tmp_path / "out" / "dots.svg").stat().st_size > 0
