"""sketchkit.evaluate, sketchkit.plots and sketchkit.io.fscoco_seg.

Hand-built sketches of separated horizontal lines, predicted by models that relabel given strokes,
so every metric of both protocols is worked out from the per-stroke pixel counts in the tests;
the vocabulary mapping and exclusion on hand sketches and on real FrISS with qd.txt and the
FrISS -> QuickDraw mapping; re-scoring from saved HDF5 predictions (equal to the original run);
the FS-COCO segmentation layout on small files written here.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchkit.errors import InputError, UsageError
from sketchkit.evaluation import (Vocabulary, evaluate, find_prediction_files, load_eval_sketches, report_csv,
                                  rescore)
from sketchkit.io.hdf5 import prediction_paths
from sketchkit.labels import load_mapping
from sketchkit.io.fscoco_seg import find_fscoco_seg, is_fscoco_seg_layout, read_fscoco_seg
from sketchkit.inference import OracleSegmenter, Segmenter, segmenter_on
from sketchkit.raster import rasterize
from sketchkit.types import Sketch


# ------------------------------------------------------------------------------------- helpers


def lines(labels, caption: str, *, gap: float = 20.0, source: str | None = None) -> Sketch:
    """Horizontal strokes of length 100, `gap` apart (far apart at 224 and 512 px: no overlap)."""
    strokes = tuple(np.array([[0.0, gap * i], [100.0, gap * i]]) for i in range(len(labels)))
    return Sketch(strokes=strokes, width=100.0, height=gap * len(labels), labels=tuple(labels), caption=caption,
                  source=source)


class Relabel(OracleSegmenter):
    """The oracle's exact one-hot maps (score_at included) for other stroke labels: the sketch
    with caption c is predicted as `predicted[c]` (names of the label set asked for)."""

    def __init__(self, name: str, predicted: dict[str, tuple]):
        self.name, self.description, self.predicted = name, f"relabel {name}", predicted

    def encode(self, rasters, sketches):
        return [(r, s.with_labels(self.predicted[s.caption])) for r, s in zip(rasters, sketches)]


class Upsampled(Segmenter):
    """The same predictions without score_at: pixels come from upsampling its 224 px maps."""

    def __init__(self, inner: Relabel):
        self.inner, self.name, self.description = inner, inner.name + "-up", inner.description + " (upsampled)"

    def encode(self, rasters, sketches):
        return self.inner.encode(rasters, sketches)

    def score(self, features, labels):
        return self.inner.score(features, labels)


def pixel_counts(sketch: Sketch, eval_size: int) -> np.ndarray:
    """(S,) ink pixels per stroke in the eval-size drawing with the 224 px raster's framing."""
    transform = rasterize(sketch, 224).transform.resized(eval_size)
    ids = rasterize(sketch, eval_size, transform=transform).stroke_ids
    return np.bincount(ids[ids >= 0], minlength=sketch.num_strokes)


S1 = lines(("A", "A", "B", "C"), "s1")
S2 = lines(("B", "D", None), "s2")
PREDICTED = {"s1": ("A", "B", "B", "A"), "s2": ("B", "D", "D")}


def expected_two_sketches(eval_size: int) -> dict:
    """Both protocols for S1 + S2 predicted as PREDICTED, from the per-stroke pixel counts."""
    n0, n1, n2, n3 = pixel_counts(S1, eval_size)
    m0, m1, _ = pixel_counts(S2, eval_size)
    # sketch 1: strokes A->A ok, A->B, B->B ok, C->A; classes A {0,1} vs {0,3}, B {2} vs {1,2}, C {3} vs {}
    s1 = {"acc_s": 2 / 4, "acc_p": (n0 + n2) / (n0 + n1 + n2 + n3),
          "miou": (n0 / (n0 + n1 + n3) + n2 / (n1 + n2) + 0.0) / 3}
    # sketch 2: both labelled strokes right; the unlabelled third stroke is not scored
    s2 = {"acc_s": 1.0, "acc_p": 1.0, "miou": 1.0}
    iou = {"A": n0 / (n0 + n1 + n3), "B": (n2 + m0) / (n1 + n2 + m0), "C": 0.0, "D": 1.0}
    support = {"A": n0 + n1, "B": n2 + m0, "C": n3, "D": m1}
    total = sum(support.values())
    dataset = {
        "acc_s": 4 / 6,
        "acc_p": (n0 + n2 + m0 + m1) / total,
        "miou": sum(iou.values()) / 4,
        "mean_class_acc": (n0 / (n0 + n1) + 1.0 + 0.0 + 1.0) / 4,
        "fw_iou": sum(support[c] / total * iou[c] for c in iou),
    }
    per_sketch = {k: (s1[k] + s2[k]) / 2 for k in s1}
    return {"per_sketch": {k: 100 * v for k, v in per_sketch.items()},
            "dataset": {k: 100 * v for k, v in dataset.items()}, "pixels": total}


# ------------------------------------------------------------------------------ both protocols


@pytest.mark.parametrize("eval_size", [224, 512])
def test_every_metric_of_both_protocols_by_hand(eval_size):
    model = Relabel("relabel", PREDICTED)
    report = evaluate([S1, S2], [model, Upsampled(model)], eval_size=eval_size)
    expected = expected_two_sketches(eval_size)
    results = report.to_dict()["results"]
    for name in ("relabel", "relabel-up"):  # exact scores at eval size, and upsampled 224 maps
        r = results[name]
        for protocol in ("per_sketch", "dataset"):
            assert r[protocol] == pytest.approx(expected[protocol], abs=1e-9), (name, protocol)
        assert r["counts"]["pixels"] == expected["pixels"]
        assert r["counts"]["strokes"] == 6  # the unlabelled stroke is not scored
        assert r["resolution"] == {"pixels": eval_size, "strokes": 224}
        assert r["sketches"] == 2 and r["excluded_strokes"] == 0
        rows = {row["name"]: row for row in r["per_category"]}
        assert rows["C"]["iou"] == 0.0 and rows["D"]["iou"] == 100.0 and rows["C"]["strokes"] == 1
    assert report.to_dict()["data"]["classes"] == 4


def test_oracle_is_exact_at_every_resolution(friss_test_files):
    from sketchkit.io import read_sketch

    sketches = [read_sketch(p) for p in friss_test_files[:4]]
    for eval_size in (224, 300, 512):
        result = evaluate(sketches, [OracleSegmenter()], eval_size=eval_size).to_dict()["results"]["oracle"]
        assert all(v == 100.0 for v in result["per_sketch"].values()), (eval_size, result["per_sketch"])
        assert result["dataset"] == pytest.approx(dict.fromkeys(result["dataset"], 100.0), abs=1e-9)  # fw-IoU: a sum


def test_no_labelled_sketch_and_repeated_models_are_refused():
    unlabelled = lines((None, None), "u")
    with pytest.raises(InputError, match="no labelled sketches"):
        evaluate([unlabelled], [OracleSegmenter()])
    with pytest.raises(UsageError, match="once"):
        evaluate([S1], [OracleSegmenter(), OracleSegmenter()])
    with pytest.raises(UsageError, match="evaluation size"):
        evaluate([S1], [OracleSegmenter()], eval_size=8)


# --------------------------------------------------------------------------------- vocabulary


def test_fixed_vocabulary_maps_names_and_excludes_the_rest():
    sketch = lines(("sea", "boat", "kite", "boat"), "k")
    only_kites = lines(("kite", "kite"), "kites")
    vocab = Vocabulary(["ocean", "boat", "tree"], {"sea": "ocean"})
    # the kite stroke (excluded) is predicted "boat": it must not touch boat's IoU; the last boat
    # stroke is predicted "tree", a class absent from the truth
    model = Relabel("relabel", {"k": ("ocean", "boat", "boat", "tree"), "kites": ("boat", "boat")})
    report = evaluate([sketch, only_kites], [model, OracleSegmenter()], vocab=vocab, eval_size=512)
    out = report.to_dict()
    p0, p1, p2, p3 = pixel_counts(sketch, 512)
    relabel = out["results"]["relabel"]
    assert relabel["excluded_strokes"] == 1 and relabel["excluded_classes"] == {"kite": 1}
    assert relabel["counts"]["strokes"] == 3 and relabel["counts"]["pixels"] == p0 + p1 + p3
    assert relabel["per_sketch"]["acc_s"] == pytest.approx(100 * 2 / 3)
    assert relabel["per_sketch"]["acc_p"] == pytest.approx(100 * (p0 + p1) / (p0 + p1 + p3))
    assert relabel["per_sketch"]["miou"] == pytest.approx(100 * (1.0 + p1 / (p1 + p3) + 0.0) / 3)
    assert {r["name"] for r in relabel["per_category"]} == {"ocean", "boat", "tree"}
    oracle = out["results"]["oracle"]
    assert oracle["per_sketch"]["acc_s"] == 100.0 and oracle["dataset"]["miou"] == 100.0
    assert report.skipped == ["sketch 1"] and out["data"]["count"] == 1 and out["data"]["classes"] == 3
    assert vocab.policy().labels_for(sketch) == ["ocean", "boat", "tree"]


def test_per_sketch_vocabulary_with_mapping_merges_names():
    vocab = Vocabulary(mapping={"cabinet": "dresser", "cupboard": "dresser"})
    sketch = lines(("cabinet", "cupboard", "lamp"), "m")
    assert vocab.policy().labels_for(sketch) == ["dresser", "lamp"]
    assert vocab.model_input(sketch).labels == ("dresser", "dresser", "lamp")
    assert vocab.class_names([sketch]) == ["dresser", "lamp"]
    result = evaluate([sketch], [OracleSegmenter()], vocab=vocab).to_dict()["results"]["oracle"]
    assert result["per_sketch"]["acc_s"] == 100.0 and result["counts"]["classes"] == 2


def test_vocabulary_attrs_round_trip(tmp_path):
    for vocab in (Vocabulary(), Vocabulary(["a", "b"], {"x": "a"})):
        back = Vocabulary.from_attrs(vocab.to_attrs())
        assert back.names == vocab.names and back.mapping == vocab.mapping
    assert Vocabulary.from_attrs({}) is None
    nested = tmp_path / "m.json"
    nested.write_text(json.dumps({"friss_to_qd": {"sea": "ocean"}}))
    assert load_mapping(nested) == {"sea": "ocean"}
    nested.write_text("[1, 2]")
    with pytest.raises(InputError, match="name -> name"):
        load_mapping(nested)


def test_real_friss_with_quickdraw_list_and_mapping(friss_dir, friss_test_files):
    from sketchkit.io import read_sketch

    qd = [line.strip() for line in (friss_dir.parent / "class_lists" / "qd.txt").read_text().splitlines() if line.strip()]
    mapping = json.loads((friss_dir / "friss_to_qd_mappings.json").read_text())["friss_to_qd"]
    files = friss_test_files[:8]
    # expected exclusions straight from the JSON: instance i owns strokes [div[i], div[i+1])
    expected: dict[str, int] = {}
    for path in files:
        doc = json.loads(path.read_text())
        div = doc["object_divisions"]
        for i, name in enumerate(doc["gt_class_names"]):
            if mapping.get(name, name) not in qd:
                expected[name] = expected.get(name, 0) + div[i + 1] - div[i]
    assert expected, "the first test sketches should hold names outside QuickDraw"
    vocab = Vocabulary(qd, load_mapping(friss_dir / "friss_to_qd_mappings.json"))
    sketches = [read_sketch(p) for p in files]
    report = evaluate(sketches, [OracleSegmenter()], vocab=vocab, eval_size=512)
    oracle = report.to_dict()["results"]["oracle"]
    assert oracle["excluded_classes"] == expected
    assert oracle["excluded_strokes"] == sum(expected.values())
    total = sum(s.num_strokes for s in sketches)
    unlabelled = sum(1 for s in sketches for n in s.labels if n is None)
    scored_sketches = len(report.models[0].evaluator.sketch_scores)
    assert scored_sketches + len(report.skipped) == len(files)
    assert oracle["counts"]["strokes"] == total - unlabelled - sum(expected.values()) - sum(
        s.num_strokes for s in sketches if not vocab.scorable(s))
    assert oracle["per_sketch"]["acc_s"] == 100.0 and oracle["dataset"]["acc_p"] == 100.0
    assert report.to_dict()["data"]["classes"] == len(qd)


# ------------------------------------------------------------------------- saved predictions


def test_rescore_from_hdf5_equals_the_original_run(tmp_path):
    from sketchkit.io.hdf5 import read_results_h5

    model = Relabel("relabel", {**PREDICTED, "s3": ("B", "B")})
    sketches = [S1, S2, lines(("A", "B"), "s3")]
    # batch_size 1: the files grow a batch at a time
    report = evaluate(sketches, [model, Upsampled(model)], eval_size=512, batch_size=1,
                      save_predictions=tmp_path / "preds.h5", data_info={"path": "x", "fingerprint": "f"})
    paths = prediction_paths(tmp_path / "preds.h5", ["relabel", "relabel-up"])
    assert [p.name for p in paths.values()] == ["preds.relabel.h5", "preds.relabel-up.h5"]
    stored = read_results_h5(paths["relabel"])
    assert [s.name for s in stored] == ["sketch-0", "sketch-1", "sketch-2"]
    assert stored[1].gt_labels == ("B", "D", None) and stored[2].labels == ("A", "B")
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    files = find_prediction_files([tmp_path / "preds.h5"])
    assert files == list(paths.values())
    again = rescore(files)
    assert again.to_dict()["results"] == report.to_dict()["results"]
    assert again.data["fingerprint"] == "f" and again.eval_size == 512
    # another resolution: pixels from the stored 224 px maps; strokes unchanged
    at224 = rescore(files, eval_size=224).to_dict()["results"]["relabel"]
    assert at224["per_sketch"]["acc_s"] == report.to_dict()["results"]["relabel"]["per_sketch"]["acc_s"]
    assert at224["resolution"]["pixels"] == 224


def test_rescore_real_model_on_friss_is_exact(tmp_path, friss_test_files, tiny_encoder):
    from sketchkit.io import read_sketch
    sketches = [read_sketch(p) for p in friss_test_files[:3]]
    model = segmenter_on("clip-surgery", tiny_encoder)
    report = evaluate(sketches, [model], save_predictions=tmp_path / "p.h5")
    again = rescore([tmp_path / "p.h5"])
    assert again.to_dict()["results"] == report.to_dict()["results"]
    assert report.to_dict()["results"]["clip-surgery"]["weights"]["backbone"] == "tiny-random"


def test_rescore_of_plain_results_files(tmp_path):
    from sketchkit.inference import ground_truth_result
    from sketchkit.io.hdf5 import write_results_h5

    # files from `segment` / write_results_h5 carry no eval maps: pixels from the stored 224 maps
    path = write_results_h5([ground_truth_result(S1), ground_truth_result(S2)], tmp_path / "gt.h5")
    result = rescore([path], eval_size=224).to_dict()["results"]["gt"]
    assert result["per_sketch"] == {"acc_p": 100.0, "acc_s": 100.0, "miou": 100.0}
    unlabelled = write_results_h5([ground_truth_result(lines((None,), "n"))], tmp_path / "n.h5")
    with pytest.raises(InputError, match="ground-truth"):
        rescore([unlabelled])
    with pytest.raises(InputError, match="no such predictions file"):
        find_prediction_files([tmp_path / "missing.h5"])


def test_failed_run_leaves_no_prediction_file(tmp_path):
    class Broken(Relabel):
        def score(self, features, labels):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        evaluate([S1], [Broken("b", PREDICTED)], save_predictions=tmp_path / "p.h5")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ outputs, plots


def test_csv_rows_follow_the_json(tmp_path):
    model = Relabel("relabel", PREDICTED)
    result = evaluate([S1, S2], [model, OracleSegmenter()]).to_dict()
    rows = list(csv.DictReader(io.StringIO(report_csv(result))))
    assert len(rows) == 2 * (3 + 5)
    for row in rows:
        value = result["results"][row["model"]][row["protocol"]][row["metric"]]
        assert float(row["value"]) == value and row["resolution_px"] == "512"


def test_plots_are_written_fast(tmp_path):
    model = Relabel("relabel", {**PREDICTED, "s3": ("B", "A")})
    report = evaluate([S1, S2, lines(("A", "B"), "s3")], [model, OracleSegmenter()])
    from sketchkit.plots import save_plots

    started = time.perf_counter()
    written = save_plots(report, tmp_path / "plots")
    elapsed = time.perf_counter() - started
    assert [p.name for p in written] == [f"{m}-{kind}.png" for m in ("relabel", "oracle")
                                         for kind in ("confusion", "iou", "gallery")]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 150
    assert elapsed < 20.0, elapsed  # a guard against slow plotting paths (about 1 s alone), not a benchmark


# ------------------------------------------------------------------------- FS-COCO seg layout


def write_layout(root: Path, entries: dict[str, tuple[object, object]], captions: dict[str, str] | None = None) -> Path:
    """root/vector_sketches/<id>.npy (np.save, pickles allowed) + root/classes/<id>.json."""
    for sub in ("vector_sketches", "classes", "captions", "images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sketch_id, (array, classes) in entries.items():
        np.save(root / "vector_sketches" / f"{sketch_id}.npy", array, allow_pickle=True)
        if classes is not None:
            (root / "classes" / f"{sketch_id}.json").write_text(json.dumps(classes))
    for sketch_id, text in (captions or {}).items():
        (root / "captions" / f"{sketch_id}.txt").write_text(text)
    return root


PEN = np.array([[10, 10, 0], [50, 10, 1], [10, 60, 0], [40, 80, 0], [60, 90, 1], [200, 200, 0], [220, 230, 1]],
               dtype=np.float64)


def test_fscoco_object_arrays_need_allow_pickle(tmp_path):
    root = write_layout(tmp_path / "seg", {"0001": (np.array(PEN, dtype=object), ["tree", "blank_pixel", "cloud"])},
                        {"0001": "a tree and a cloud\n"})
    path = root / "vector_sketches" / "0001.npy"
    with pytest.raises(InputError, match="unpickling") as refused:
        read_fscoco_seg(path)
    assert refused.value.hint == "pickle"  # the CLI names --allow-pickle (tests/test_cli.py)
    with pytest.raises(InputError, match="unpickling"):
        load_eval_sketches(root)
    sketch = read_fscoco_seg(path, allow_pickle=True)
    assert sketch.num_strokes == 3 and sketch.labels == ("tree", None, "cloud")
    np.testing.assert_array_equal(sketch.strokes[1], [[10, 60], [40, 80], [60, 90]])
    assert sketch.caption == "a tree and a cloud" and (sketch.width, sketch.height) == (256.0, 256.0)


def test_fscoco_numeric_arrays_load_without_pickle(tmp_path):
    # the last run of points has no pen lift: the labels number one fewer, so it is dropped
    rows = np.vstack([PEN, [[5.0, 5.0, 0.0], [6.0, 7.0, 0.0]]])
    root = write_layout(tmp_path / "seg", {"a": (rows, ["tree", "house", "sun"]), "b": (rows, ["x"] * 4)})
    sketch = read_fscoco_seg(root / "vector_sketches" / "a.npy")
    assert sketch.num_strokes == 3 and sketch.labels == ("tree", "house", "sun")
    four = read_fscoco_seg(root / "vector_sketches" / "b.npy")
    assert four.num_strokes == 4 and four.strokes[-1].tolist() == [[5.0, 5.0], [6.0, 7.0]]


def test_fscoco_dict_and_per_stroke_forms(tmp_path):
    strokes = [np.array([[0.0, 0.0], [30.0, 5.0]]), np.array([[40.0, 40.0], [90.0, 60.0], [100.0, 300.0]])]
    per_stroke = np.empty(2, dtype=object)
    per_stroke[:] = [{"points": strokes[0], "label": "dog"}, {"points": strokes[1], "label": "grass"}]
    root = write_layout(tmp_path / "seg", {
        "dict": ({"strokes": strokes, "labels": np.array([1, 0]), "class_names": ["tree", "house"]}, None),
        "items": (per_stroke, None),
        "ints": ({"strokes": strokes}, [2, 0]),
        "json_classes": ({"strokes": strokes, "labels": [1, 1]}, ["cat", "dog", "cow"]),
    })
    (root / "all_classes.json").write_text(json.dumps(["blank_pixel", "person", "kite"]))
    vs = root / "vector_sketches"
    assert read_fscoco_seg(vs / "dict.npy", allow_pickle=True).labels == ("house", "tree")
    items = read_fscoco_seg(vs / "items.npy", allow_pickle=True)
    assert items.labels == ("dog", "grass") and items.width > 100  # a point beyond 256: canvas from the ink
    assert read_fscoco_seg(vs / "ints.npy", allow_pickle=True).labels == ("kite", None)
    assert read_fscoco_seg(vs / "json_classes.npy", allow_pickle=True).labels == ("dog", "dog")
    assert [p.stem for p in find_fscoco_seg(root)] == ["dict", "ints", "items", "json_classes"]
    assert [p.stem for p in find_fscoco_seg(root, limit=2)] == ["dict", "ints"]


def test_fscoco_bad_files_are_input_errors(tmp_path):
    root = write_layout(tmp_path / "seg", {
        "count": (np.array(PEN, dtype=object), ["a", "b"]),
        "nolabels": (np.array(PEN, dtype=object), None),
        "index": (np.array(PEN, dtype=object), [0, 1, 5]),
        "junk": (np.array([{"x": 1}], dtype=object), ["a"]),
    })
    vs = root / "vector_sketches"
    with pytest.raises(InputError, match="2 stroke labels for 3 strokes"):
        read_fscoco_seg(vs / "count.npy", allow_pickle=True)
    with pytest.raises(InputError, match="no stroke labels"):
        read_fscoco_seg(vs / "nolabels.npy", allow_pickle=True)
    with pytest.raises(InputError, match="no class list"):
        read_fscoco_seg(vs / "index.npy", allow_pickle=True)
    with pytest.raises(InputError, match="without points"):
        read_fscoco_seg(vs / "junk.npy", allow_pickle=True)
    (vs / "trunc.npy").write_bytes((vs / "count.npy").read_bytes()[:90])
    with pytest.raises(InputError, match="cannot load|not a valid"):
        read_fscoco_seg(vs / "trunc.npy", allow_pickle=True)
    with pytest.raises(InputError, match="not the FS-COCO segmentation layout"):
        find_fscoco_seg(tmp_path)


def test_fscoco_layout_evaluates_with_the_oracle(tmp_path):
    root = write_layout(tmp_path / "seg" / "test", {
        "0001": (np.array(PEN, dtype=object), ["tree", "cloud", "cloud"]),
        "0002": (np.array(PEN[:5], dtype=object), ["person", "kite"]),
    })
    assert not is_fscoco_seg_layout(tmp_path / "seg") and is_fscoco_seg_layout(root)
    sketches, files, layout = load_eval_sketches(tmp_path / "seg", split="test", allow_pickle=True)
    assert layout == "fscoco-seg" and [f.stem for f in files] == ["0001", "0002"]
    result = evaluate(sketches, [OracleSegmenter()]).to_dict()["results"]["oracle"]
    assert result["per_sketch"] == {"acc_p": 100.0, "acc_s": 100.0, "miou": 100.0}
    assert result["counts"]["strokes"] == 5
