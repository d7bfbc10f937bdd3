"""Outputs of real-world inputs (issue 12): the labelled SVG draws the original's ink, has one Inkscape
layer per label and keeps source ids; masks, COCO and CSV; palettes; reading our own outputs back;
every drawing of a multi-drawing file segmented and named."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

import sketchkit
from sketchkit.cli.app import main
from sketchkit.inference import ground_truth_result
from sketchkit.io.svg_writer import result_to_svg
from test_io_files import DATA, SVG_NS, ink_agreement, svg_ink

SVG = "{" + SVG_NS + "}"
INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"
EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.svg"))
SVGS = sorted(DATA.glob("*.svg")) + EXAMPLES


def labelled_svg(path: Path, labels=("house", "tree", "sun")) -> str:
    """The labelled SVG sketchkit writes for `path` (oracle labels where the file has them, else the tiny model's)."""
    sketch = sketchkit.read_sketch(path)
    if sketch.has_labels:
        return result_to_svg(ground_truth_result(sketch))
    return result_to_svg(sketchkit.segment(sketch, labels=list(labels), backbone="tiny-random", device="cpu"))


def canvas_view(labelled: str, original: str) -> str:
    """The labelled drawing in the original's viewport: the legend dropped, the viewBox cut back to the
    canvas, the original's root size, every stroke black (the check is about geometry, not colour)."""
    ElementTree.register_namespace("", SVG_NS)
    root = ElementTree.fromstring(labelled)
    meta = json.loads(root.find(f"{SVG}metadata").text)["sketchkit"]
    width, height = meta["canvas"]
    source = ElementTree.fromstring(original)
    root.set("viewBox", source.get("viewBox") or f"0 0 {width} {height}")
    for key in ("width", "height"):
        root.set(key, source.get(key) or str(meta["canvas"][key == "height"]))
    for path in root.iter(f"{SVG}path"):
        path.set("stroke", "#000000")
    return ElementTree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("path", SVGS, ids=lambda p: p.name)
def test_labelled_svg_draws_the_original_ink(path):
    original = path.read_text()
    sketch = sketchkit.read_sketch(path)
    skipped = tuple(k for k in (sketch.skipped or {}) if k in ("text", "image", "use", "foreignObject"))
    reference = svg_ink(original, drop=skipped)
    drawn = svg_ink(canvas_view(labelled_svg(path), original))
    assert drawn.shape == reference.shape
    on_original, covered = ink_agreement(drawn, reference)
    assert on_original >= 0.97 and covered >= 0.97, (path.name, on_original, covered)


def test_one_inkscape_layer_per_label_and_source_ids_kept():
    text = labelled_svg(DATA / "pen_lifts.svg")
    root = ElementTree.fromstring(text)
    layers = [g for g in root.iter(f"{SVG}g") if g.get(f"{INKSCAPE}groupmode") == "layer"]
    names = [g.get(f"{INKSCAPE}label") for g in layers]
    assert len(names) == len(set(names)) and set(names) <= {"house", "tree", "sun", "unlabelled"}
    for layer in layers:
        assert {p.get("data-label", "unlabelled") for p in layer.iter(f"{SVG}path")} == {layer.get(f"{INKSCAPE}label")}
    sketch = sketchkit.read_sketch(DATA / "pen_lifts.svg")
    written = sorted(root.iter(f"{SVG}path"), key=lambda p: int(p.get("data-stroke")))
    written = [p for p in written if p.get("data-stroke") is not None]
    assert [p.get("data-source-id") for p in written] == list(sketch.source_ids)
    # a path split at pen lifts gives its strokes one shared id: data-source-id only, never a duplicate `id`
    ids = [p.get("id") for p in written if p.get("id")]
    assert len(ids) == len(set(ids))


def test_root_size_keeps_units_and_the_legend_never_covers_the_drawing(tmp_path):
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="100mm" viewBox="0 0 210 100">'
           '<path d="M 10 10 L 200 90" stroke="black" fill="none"/><path d="M 10 90 L 200 10" stroke="black" '
           'fill="none"/></svg>')
    (tmp_path / "a.svg").write_text(svg)
    sketch = sketchkit.read_sketch(tmp_path / "a.svg")
    root = ElementTree.fromstring(result_to_svg(sketchkit.segment(sketch, labels=["x", "y"], model="oracle")
                                                if sketch.has_labels else ground_truth_result(sketch.with_labels(["x", "y"]))))
    view = [float(v) for v in root.get("viewBox").split()]
    assert root.get("height") == "100mm" and root.get("width").endswith("mm")
    assert float(root.get("width")[:-2]) == pytest.approx(210 * view[2] / 210)
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("data-sketchkit") == "legend")
    assert min(float(r.get("x")) for r in legend.iter(f"{SVG}rect")) >= 210
    # reading it back gives the original canvas and size, not the widened legend view
    back = sketchkit.read_sketch(_write(tmp_path / "b.svg", ElementTree.tostring(root, encoding="unicode")))
    assert (back.width, back.height) == (210, 100) and back.display_size == ("210mm", "100mm")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_palette_distinct_beyond_18_labels_colormap_and_json(tmp_path):
    from sketchkit.render import GREY, Palette

    labels = [f"label {k}" for k in range(60)]
    colours = Palette().colors(labels)
    assert len(set(colours)) == 60 and GREY not in colours
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float)
    distance = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1)) + np.eye(60) * 1e9
    assert distance.min() > 20  # on a 0..255 scale: no two labels look alike
    viridis = Palette.from_spec("viridis").colors(["a", "b", "c"])
    assert viridis[0] != viridis[2] and len(set(viridis)) == 3
    assert Palette.from_spec("tab10").colors(["a", "b"]) == ["#1f77b4", "#ff7f0e"]
    named = tmp_path / "colours.json"
    named.write_text(json.dumps({"tree": "green", "sun": "#ffcc00"}))
    assert Palette.from_spec(named).colors(["sun", "tree", "house"])[:2] == ["#ffcc00", "#008000"]
    named.write_text(json.dumps({"tree": "not a colour"}))
    with pytest.raises(sketchkit.errors.InputError, match="not a colour"):
        Palette.from_spec(named)
    with pytest.raises(sketchkit.errors.UsageError, match="unknown palette"):
        Palette.from_spec("no-such-colormap")


def test_segment_masks_coco_csv_and_top_k(tmp_path, capsys):
    from pycocotools import mask as rle

    code = main(["segment", *map(str, EXAMPLES), "--model", "oracle", "--out", str(tmp_path),
                 "--format", "json,masks,csv,coco", "--top-k", "2", "-q"])
    assert code == 0, capsys.readouterr().err
    sketch = sketchkit.read_sketch(EXAMPLES[1])
    masks = tmp_path / (EXAMPLES[1].stem + ".masks")
    names = (masks / "labels.txt").read_text().split("\n")[:-1]
    assert sorted(names) == sorted(sketch.label_names())
    index = np.asarray(Image.open(masks / "index.png"))
    assert index.shape == (round(sketch.height), round(sketch.width))
    for k, name in enumerate(names):
        assert np.array_equal(np.asarray(Image.open(masks / f"{name}.png")) == 255, index == k + 1)
    coco = json.loads((tmp_path / "segmentation.coco.json").read_text())
    assert len(coco["images"]) == 3 and {c["name"] for c in coco["categories"]} >= set(names)
    category = {c["id"]: c["name"] for c in coco["categories"]}
    image = next(i for i in coco["images"] if i["file_name"] == str(EXAMPLES[1]))
    for annotation in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
        decoded = rle.decode({"size": annotation["segmentation"]["size"],
                              "counts": annotation["segmentation"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), index == names.index(category[annotation["category_id"]]) + 1)
        assert annotation["area"] == int(decoded.sum())
    rows = list(csv.DictReader((tmp_path / "segmentation.csv").open()))
    assert len(rows) == sum(sketchkit.read_sketch(p).num_strokes for p in EXAMPLES)
    mine = [r for r in rows if r["file"] == str(EXAMPLES[1])]
    assert [r["label"] for r in mine] == list(sketch.labels) and all(r["gt_label"] == r["label"] for r in mine)
    doc = json.loads((tmp_path / (EXAMPLES[1].stem + ".json")).read_text())
    assert all(len(s["top"]) <= 2 for s in doc["strokes"]) and doc["scoring"] == "paper"
    code = main(["segment", str(EXAMPLES[1]), "--model", "oracle", "--out", str(tmp_path / "s"), "--format", "csv",
                 "--csv-per", "sketch", "-q"])
    (row,) = csv.DictReader((tmp_path / "s" / "segmentation.csv").open())
    assert code == 0 and row["strokes"] == str(sketch.num_strokes) and "house (" in row["labels"]


def test_every_drawing_of_a_quickdraw_file_is_segmented_and_named(tmp_path, capsys):
    code = main(["segment", str(DATA / "three_drawings.ndjson"), str(DATA / "quickdraw_records.json"),
                 "--backbone", "tiny-random", "--out", str(tmp_path), "--format", "json", "-q"])
    out = capsys.readouterr().out.split()
    assert code == 0
    assert len(out) == 6 and all(Path(p).parent.name in ("three_drawings", "quickdraw_records") for p in out)
    names = {Path(p).stem for p in out}
    assert {n for n, _ in sketchkit.io.iter_drawings(DATA / "three_drawings.ndjson")} <= names


def test_our_outputs_read_back_and_convert(tmp_path, capsys):
    sketch = sketchkit.read_sketch(EXAMPLES[0])
    code = main(["segment", str(EXAMPLES[0]), "--model", "oracle", "--out", str(tmp_path / "o.json"),
                 "--format", "json,h5", "-q"])
    assert code == 0, capsys.readouterr().err
    for produced in (tmp_path / "o.json", tmp_path / "o.h5"):
        back = sketchkit.read_sketch(produced)
        assert back.labels == sketch.labels and back.num_strokes == sketch.num_strokes
        assert max(np.abs(a - b).max() for a, b in zip(back.strokes, sketch.strokes)) < 1e-4
        code = main(["convert", str(produced), str(tmp_path / f"{produced.suffix[1:]}.svg")])
        assert code == 0
        again = sketchkit.read_sketch(tmp_path / f"{produced.suffix[1:]}.svg")
        assert again.labels == sketch.labels
    capsys.readouterr()
    code = main(["convert", str(EXAMPLES[0]), str(tmp_path / "no-suffix"), "--format", "json"])
    assert code == 0 and json.loads((tmp_path / "no-suffix").read_text())["format"] == "sketchkit-result"


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8"), (".bmp", b"BM"),
                                           (".tif", b"II*\x00")])
def test_raster_writes_the_format_its_suffix_names(tmp_path, suffix, magic, capsys):
    assert main(["raster", str(EXAMPLES[0]), str(tmp_path / f"r{suffix}")]) == 0
    assert (tmp_path / f"r{suffix}").read_bytes().startswith(magic)
    assert main(["raster", str(EXAMPLES[0]), str(tmp_path / "r.gifx")]) == 2
    assert "cannot write a raster image as '.gifx'" in capsys.readouterr().err
