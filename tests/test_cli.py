"""The `sketchkit` command end to end through `main()` (exit codes, one-line errors, outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
from PIL import Image

from sketchkit.cli.app import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.svg"))


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("sketchkit ")


def test_help_lists_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("segment", "convert", "raster", "eval", "labels", "doctor"):
        assert command in out


def test_convert_example_to_every_format(tmp_path, capsys):
    source = REPO / "examples" / "house_tree_sun.svg"
    before = source.read_bytes()
    for suffix in (".svg", ".h5", ".png", ".json"):
        code, out, err = run(capsys, "convert", source, tmp_path / f"out{suffix}")
        assert code == 0, err
    assert source.read_bytes() == before  # inputs are never modified
    data = json.loads((tmp_path / "out.json").read_text())
    assert {s["label"] for s in data["strokes"]} == {"house", "tree", "sun", "grass"}
    assert Image.open(tmp_path / "out.png").size[0] > 500
    with h5py.File(tmp_path / "out.h5") as h5:
        assert len(h5["sketches"]) == 1


def test_convert_refuses_existing_output_and_input(tmp_path, capsys):
    source = tmp_path / "a.svg"
    source.write_bytes((REPO / "examples" / "car_road.svg").read_bytes())
    code, _, err = run(capsys, "convert", source, source, "--overwrite")
    assert_one_line_error(code, err, "refusing to overwrite input")
    (tmp_path / "b.svg").write_text("x")
    code, _, err = run(capsys, "convert", source, tmp_path / "b.svg")
    assert_one_line_error(code, err, "--overwrite")
    assert (tmp_path / "b.svg").read_text() == "x"


def test_raster_writes_png_and_ids(tmp_path, capsys):
    import numpy as np

    code, _, err = run(capsys, "raster", EXAMPLES[0], tmp_path / "r.png", "--size", "128", "--ids", tmp_path / "ids.npy")
    assert code == 0, err
    image = Image.open(tmp_path / "r.png")
    assert image.size == (128, 128)
    ids = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert ids.shape == (128, 128) and ids.max() >= 0 and ids.min() == -1


def test_segment_examples_with_tiny_weights_file(tmp_path, capsys, tiny_weights):
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "segment", *EXAMPLES, "--labels", "house,tree,sun", "--backbone", "tiny-random",
        "--weights", tiny_weights, "--out", out, "--format", "svg,h5,png,json", "--device", "cpu",
    )
    assert code == 0, err
    assert "RANDOM" in err.upper() or "random" in err
    for example in EXAMPLES:
        for suffix in (".svg", ".h5", ".png", ".json"):
            assert (out / (example.stem + suffix)).exists()
        data = json.loads((out / (example.stem + ".json")).read_text())
        assert all(s["label"] in {"house", "tree", "sun"} for s in data["strokes"])  # every stroke labelled


def test_segment_friss_and_bitmap(tmp_path, capsys, tiny_weights, friss_test_files, fscoco_bitmaps):
    inputs = [friss_test_files[0], fscoco_bitmaps[0]]
    code, _, err = run(
        capsys, "segment", *inputs, "--labels", "tree,person,grass", "--backbone", "tiny-random",
        "--weights", tiny_weights, "--out", tmp_path, "--format", "svg,json", "--device", "cpu",
    )
    assert code == 0, err
    root = Path(os.path.commonpath([p.parent for p in inputs]))
    for path in inputs:  # relative paths under the common folder are kept under --out
        data = json.loads((tmp_path / path.parent.relative_to(root) / (path.stem + ".json")).read_text())
        assert data["strokes"] and all(s["label"] in {"tree", "person", "grass"} for s in data["strokes"])


def test_segment_without_weights_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SKETCHKIT_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    code, _, err = run(capsys, "segment", EXAMPLES[0], "--labels", "tree", "--out", tmp_path)
    assert_one_line_error(code, err, "--weights", "SKETCHKIT_WEIGHTS")


def test_segment_caption_labels(tmp_path, capsys, tiny_weights):
    code, _, err = run(
        capsys, "segment", EXAMPLES[0], "--caption", "two houses and a tree under the sun", "--backbone", "tiny-random",
        "--weights", tiny_weights, "--out", tmp_path / "x.json",
    )
    assert code == 0, err
    data = json.loads((tmp_path / "x.json").read_text())
    assert set(data["labels"]) == {"house", "tree", "sun"}


def test_segment_bad_file_is_reported_and_skipped(tmp_path, capsys, tiny_weights):
    bad = tmp_path / "broken.svg"
    bad.write_text("<svg><path d='M 0 0 L")
    good = tmp_path / "good.svg"
    good.write_bytes(EXAMPLES[0].read_bytes())
    code, _, err = run(
        capsys, "segment", bad, good, "--labels", "tree,house", "--backbone", "tiny-random",
        "--weights", tiny_weights, "--out", tmp_path / "out",
    )
    assert code == 2
    assert "broken.svg" in err and "Traceback" not in err
    assert (tmp_path / "out" / "good.svg").exists() and not (tmp_path / "out" / "broken.svg").exists()


def test_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "segment", EXAMPLES[0], "--labels", "a", "--format", "gif", "--backbone", "tiny-random")
    assert_one_line_error(code, err, "gif")
    code, _, err = run(capsys, "segment", tmp_path / "missing.svg", "--labels", "a")
    assert code == 2 and "Traceback" not in err
    code, _, err = run(capsys, "eval", "--data", EXAMPLES[0], "--metrics", "bogus")
    assert_one_line_error(code, err, "bogus")


def test_eval_oracle_on_examples(capsys, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, err = run(capsys, "eval", "--data", REPO / "examples", "--model", "oracle", "--json", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    oracle = result["results"]["oracle"]
    assert oracle["per_sketch"]["acc_s"] == 100.0
    assert oracle["dataset"]["acc_s"] == 100.0
    assert oracle["per_sketch"]["acc_p"] > 95.0
    assert result["data"]["count"] == 3 and oracle["resolution"]["pixels"] == 512


def test_labels_command(capsys):
    code, out, _ = run(capsys, "labels", "A giraffe and a zebra are standing on the grass.")
    assert code == 0
    assert out.split() == ["giraffe", "zebra", "grass"]


def test_doctor_reports_weights_problem(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("SKETCHKIT_WEIGHTS", raising=False)
    code, out, _ = run(capsys, "doctor")
    assert code == 1  # the requested weights cannot be resolved: something to fix
    assert "torch" in out and "weights" in out and "SKETCHKIT_WEIGHTS" in out
    code, out, _ = run(capsys, "doctor", "--json")
    checks = {c["item"]: c for c in json.loads(out)}
    assert code == 1 and checks["weights"]["ok"] is False and "ViT-B-16" in checks["weights"]["status"]
    assert checks["torch"]["ok"] is True
    code, out, _ = run(capsys, "doctor", "--json", "--backbone", "tiny-random")
    assert code == 0 and all(c["ok"] for c in json.loads(out))


# ------------------------------------------------------------- eval: every output, re-scoring


def test_eval_friss_models_write_every_output_and_rescore(capsys, tmp_path, friss_dir):
    from sketchkit.io.hdf5 import read_results_h5

    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run(capsys, "eval", "--data", friss_dir, "--split", "test", "--limit", 5,
                            "--model", "oracle,clip,clip-surgery", "--backbone", "tiny-random",
                            "--json", out / "r.json", "--csv", out / "r.csv", "--plots", out / "plots",
                            "--per-category", "--save-predictions", out / "preds.h5")
    assert code == 0, err
    result = json.loads((out / "r.json").read_text())
    assert list(result["results"]) == ["oracle", "clip", "clip-surgery"]
    oracle = result["results"]["oracle"]
    assert oracle["per_sketch"]["acc_s"] == 100.0 and oracle["per_sketch"]["acc_p"] == 100.0
    assert oracle["dataset"]["acc_s"] == 100.0 and oracle["weights"] is None
    for name in ("clip", "clip-surgery"):
        scores = result["results"][name]
        assert 0.0 <= scores["per_sketch"]["acc_s"] < 100.0
        assert "RANDOM WEIGHTS" in scores["model"] and scores["weights"]["backbone"] == "tiny-random"
        assert scores["resolution"] == {"pixels": 512, "strokes": 224} and scores["per_category"]
    assert result["data"]["count"] == 5 and len(result["data"]["fingerprint"]) == 16
    assert result["config"]["models"] == ["oracle", "clip", "clip-surgery"] and result["sketchkit_version"]
    assert "model comparison" in stdout and "per category" in stdout and "per-sketch mean" in stdout
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        f"{m}-{kind}.png" for m in ("oracle", "clip", "clip-surgery") for kind in ("confusion", "iou", "gallery"))
    rows = (out / "r.csv").read_text().splitlines()
    assert rows[0].startswith("model,protocol,metric,value") and len(rows) == 1 + 3 * 8
    saved = sorted(p.name for p in out.glob("preds.*.h5"))
    assert saved == ["preds.clip-surgery.h5", "preds.clip.h5", "preds.oracle.h5"]
    assert len(read_results_h5(out / "preds.clip.h5")) == 5

    code, stdout, err = run(capsys, "eval", "--predictions", out / "preds.h5", "--json", out / "again.json")
    assert code == 0, err
    again = json.loads((out / "again.json").read_text())
    assert again["results"] == result["results"]
    assert again["data"]["fingerprint"] == result["data"]["fingerprint"]


def test_eval_fixed_vocabulary_reports_excluded_classes(capsys, tmp_path, friss_dir):
    code, _, err = run(capsys, "eval", "--data", friss_dir, "--split", "test", "--limit", 5,
                       "--classes", friss_dir.parent / "class_lists" / "qd.txt",
                       "--name-map", friss_dir / "friss_to_qd_mappings.json", "--json", tmp_path / "r.json")
    assert code == 0, err
    oracle = json.loads((tmp_path / "r.json").read_text())["results"]["oracle"]
    assert oracle["excluded_strokes"] > 0 and oracle["per_sketch"]["acc_s"] == 100.0
    assert "outside the vocabulary" in err
    for name, strokes in oracle["excluded_classes"].items():
        assert f"{name} ({strokes})" in " ".join(err.split())


def test_eval_fscoco_layout_needs_allow_pickle(capsys, tmp_path):
    import numpy as np

    root = tmp_path / "seg"
    for sub in ("vector_sketches", "classes", "captions", "images"):
        (root / sub).mkdir(parents=True)
    rows = np.array([[0, 0, 0], [40, 0, 1], [0, 30, 0], [40, 30, 1]], dtype=object)
    np.save(root / "vector_sketches" / "0001.npy", rows, allow_pickle=True)
    (root / "classes" / "0001.json").write_text('["tree", "sun"]')
    code, _, err = run(capsys, "eval", "--data", root)
    assert_one_line_error(code, err, "--allow-pickle")
    code, _, err = run(capsys, "eval", "--data", root, "--allow-pickle", "--json", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["data"]["layout"] == "fscoco-seg"
    assert result["results"]["oracle"]["per_sketch"]["acc_s"] == 100.0


def test_eval_option_conflicts_are_usage_errors(capsys, tmp_path):
    code, _, err = run(capsys, "eval", "--predictions", tmp_path / "p.h5", "--model", "clip")
    assert_one_line_error(code, err, "--predictions")
    code, _, err = run(capsys, "eval")
    assert_one_line_error(code, err, "--data")
    code, _, err = run(capsys, "eval", "--predictions", tmp_path / "missing.h5")
    assert_one_line_error(code, err, "no such predictions file")


def test_eval_refuses_to_replace_outputs_without_overwrite(capsys, tmp_path, friss_dir):
    args = ["eval", "--data", friss_dir, "--split", "test", "--limit", 2, "--json", tmp_path / "r.json",
            "--plots", tmp_path / "plots"]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    first = (tmp_path / "r.json").read_bytes()
    (tmp_path / "r.json").write_text("keep me")
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, "--overwrite")
    assert (tmp_path / "r.json").read_text() == "keep me"
    (tmp_path / "r.json").unlink()
    code, _, err = run(capsys, *args)   # the plots of the first run are still there
    assert_one_line_error(code, err, "oracle-confusion.png")
    assert not (tmp_path / "r.json").exists()
    code, _, err = run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_bytes())["results"] == json.loads(first)["results"]


def test_every_command_has_an_example_and_quiet(capsys):
    """One meaning per flag across commands starts with every command offering the same basics."""
    from sketchkit.cli.app import app

    for command in app.registered_commands:
        if command.hidden:
            continue
        name = command.name
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Example:" in text or "Examples:" in text, name
        assert "--quiet" in text, name
