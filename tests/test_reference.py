"""Reference mode against the reference code's own recorded outputs (../shared/fixtures/reference_tiny).

The fixture README lists what the reference `test.py` computed on six FrISS scenes with a tiny
random CLIP (width 64, one head) and a checkpoint in train.py's format. Here the checkpoint is
imported, the FrISS scenes are read with sketchkit's reader, and every recorded step is compared:
frame, footprints, image, input tensor (exact), text and visual features and maps (<= 1e-4),
labels (>= 99.9 % equal) and metrics (+-0.01). The geometry helpers are also checked against
transcriptions of the code they replace (the `bresenham` package's loop, scipy's dilation).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchkit.errors import WeightsError
from sketchkit.reference import ReferenceScorer, reference_input
from sketchkit.reference import evaluate as ref_eval
from sketchkit.reference import frame, scoring

# ../shared beside the repository; SKETCHKIT_SHARED names another place (a git worktree elsewhere)
SHARED = Path(os.environ.get("SKETCHKIT_SHARED") or Path(__file__).parents[1] / ".." / "shared")
FIXTURES = SHARED / "fixtures" / "reference_tiny"
FRISS = SHARED / "data" / "friss"
SCENES = ["scene_1class", "scene_2class", "scene_3class", "scene_4class", "scene_5class", "scene_7class"]
TOL = 1e-4


def _need_fixtures() -> Path:
    if not (FIXTURES / "reference_finetuned.pth").exists():
        pytest.skip(f"reference fixtures absent: {FIXTURES.resolve()} (expects ../shared/fixtures beside the repo)")
    return FIXTURES


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return _need_fixtures()


@pytest.fixture(scope="module")
def imported(fixtures, tmp_path_factory):
    """(report, model, scorer) of the tiny checkpoint imported onto its base."""
    from sketchkit.model.import_checkpoint import import_checkpoint, load_reference_model

    out = tmp_path_factory.mktemp("reference") / "tiny_reference.safetensors"
    report = import_checkpoint(fixtures / "reference_finetuned.pth", out, backbone=None,
                               weights=fixtures / "base_openai_state_dict.pt")
    model = load_reference_model(out, weights=fixtures / "base_openai_state_dict.pt")
    return report, model, ReferenceScorer(model)


@pytest.fixture(scope="module")
def scenes(fixtures):
    """name -> (npz arrays, Sketch read from the FrISS json the npz names)."""
    from sketchkit.io import read_sketch

    if not FRISS.exists():
        pytest.skip(f"FrISS data absent: {FRISS.resolve()}")
    out = {}
    for name in SCENES:
        z = dict(np.load(fixtures / f"{name}.npz", allow_pickle=False))
        out[name] = (z, read_sketch(FRISS / str(z["friss_split"]) / f"{z['scene_id']}.json"))
    return out


def _max_diff(a, b) -> float:
    return float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())


# ------------------------------------------------------------------------------------------ import


def test_import_accounts_for_every_key(imported, fixtures):
    report, _, _ = imported
    checkpoint = torch.load(fixtures / "reference_finetuned.pth", weights_only=True)
    keys = {k[len("module."):] for k in checkpoint}
    groups = [report.carried, report.equal_to_base, report.aliases, report.unused]
    assert sum(len(g) for g in groups) == report.total == len(keys) == 407
    assert set().union(*map(set, groups)) == keys  # every key in exactly one group
    assert (len(report.carried), len(report.equal_to_base), len(report.aliases), len(report.unused)) == (171, 150, 4, 82)
    # the visual tower (all of it, qkv/proj included), prompts and the used cross-attention are carried
    assert all(k.startswith("visual.") for k in report.carried)
    assert "visual.transformer.resblocks.6.attn.qkv.weight" in report.carried
    assert report.carried["visual.prompt_embeddings"] == "encoder.prompts"
    assert sum(k.startswith("visual.transformer.ca.encoder.layer2.0.") for k in report.carried) == 16
    # the text tower equals the base; the unused keys are exactly the never-called layers
    assert all(not k.startswith("visual.") for k in report.equal_to_base)
    assert all(".layers.0." in k or ".layer1.0." in k or k.startswith("transformer.ca.") for k in report.unused)
    assert set(report.aliases.values()) == {f"visual.transformer.resblocks.6.attn.{n}" for n in
                                            ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")}
    # float16 checkpoint: every carried tensor is stored exactly as float16
    assert (report.fp16, report.fp32) == (171, 0)
    text = report.summary()
    assert "approximat" not in text
    for count in ("carried         171", "equal to base   150", "aliases           4", "unused           82"):
        assert count in text


def test_imported_file_records_origin_and_refuses_other_bases(imported, fixtures, tmp_path):
    from sketchkit.model.adapter import load_adapter, read_adapter
    from sketchkit.model.factory import create_encoder
    from sketchkit.model.import_checkpoint import is_reference_file, load_reference_model

    report, model, _ = imported
    tensors, config = read_adapter(report.out)
    assert config["origin"] == "reference" and config["scoring"] == "reference" and is_reference_file(report.out)
    assert config["sizes"]["vision_heads"] == 1 and config["sizes"]["ca_width"] == 64
    assert config["import"]["carried"] == len(tensors) == 171
    assert json.loads(report.out.with_suffix(".json").read_text())["weights_fingerprint"] == config["weights_fingerprint"]
    base = torch.load(fixtures / "base_openai_state_dict.pt", weights_only=True)
    base["visual.conv1.weight"] = base["visual.conv1.weight"] + 1
    other = tmp_path / "other_base.pt"
    torch.save(base, other)
    with pytest.raises(WeightsError, match="other base weights"):
        load_reference_model(report.out, weights=other)
    with pytest.raises(WeightsError, match="load_reference_model"):
        load_adapter(create_encoder("tiny-random"), report.out)


def test_plain_and_prefixed_checkpoints_import_alike(imported, fixtures, tmp_path):
    from safetensors.torch import load_file

    from sketchkit.model.import_checkpoint import import_checkpoint

    report, _, _ = imported
    plain = {k[len("module."):]: v for k, v in torch.load(fixtures / "reference_finetuned.pth", weights_only=True).items()}
    torch.save(plain, tmp_path / "plain.pth")
    again = import_checkpoint(tmp_path / "plain.pth", tmp_path / "plain.safetensors", backbone=None,
                              weights=fixtures / "base_openai_state_dict.pt")
    first, second = load_file(str(report.out)), load_file(str(again.out))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_import_refuses_a_malicious_pickle_without_running_it(fixtures, tmp_path):
    from sketchkit.model.import_checkpoint import import_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"module.visual.proj": torch.zeros(2), "payload": Payload()}, evil)
    with pytest.raises(WeightsError) as info:
        import_checkpoint(evil, tmp_path / "out.safetensors", backbone=None, weights=fixtures / "base_openai_state_dict.pt")
    assert not marker.exists()
    assert "\n" not in str(info.value) and "pickled Python objects" in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()


def test_import_refuses_inconsistent_checkpoints(fixtures):
    from sketchkit.model.import_checkpoint import plan_import

    base = torch.load(fixtures / "base_openai_state_dict.pt", weights_only=True)
    state = {k[len("module."):]: v for k, v in torch.load(fixtures / "reference_finetuned.pth", weights_only=True).items()}
    plan_import(state, base)  # as saved: fine
    cases = {
        "differs from": {**state, "visual.attn.qkv.bias": state["visual.attn.qkv.bias"] + 1},
        "unknown cross-attention key": {**state, "visual.transformer.ca.extra.weight": torch.zeros(1)},
        "missing": {k: v for k, v in state.items() if k != "ln_final.weight"},
        "no counterpart": {**state, "visual.new_thing": torch.zeros(1)},
        "shape": {**state, "visual.ln_post.weight": torch.zeros(65)},
    }
    for message, broken in cases.items():
        with pytest.raises(WeightsError, match=message):
            plan_import(broken, base)


# ------------------------------------------------------------------------------------- geometry


def test_frame_footprints_image_and_input_are_the_references(scenes):
    for name, (z, sketch) in scenes.items():
        assert list(sketch.labels) == [str(s) for s in z["stroke_labels"]], name
        strokes = frame.to_frame(sketch)
        lifts = np.zeros(sum(len(s) for s in strokes))
        lifts[np.cumsum([len(s) for s in strokes]) - 1] = 1
        assert np.array_equal(np.c_[np.concatenate(strokes), lifts], z["pen_state"]), name
        view = reference_input(sketch)
        assert np.array_equal(view.footprints.masks(), z["strokes_seg"]), name
        assert np.array_equal(np.repeat(view.image[:, :, None], 3, axis=2), z["sketch_512"]), name
        assert torch.equal(view.tensor, torch.from_numpy(z["image_tensor"])), name
        # sketchkit's Transform states the same canvas -> 512-px mapping (pixel = floor of the raster point)
        points = np.concatenate(sketch.strokes)
        by_transform = np.floor(view.transform.to_raster(points)).astype(np.int64)
        by_reference = frame.to_pixels(np.concatenate(strokes))
        assert (by_transform == by_reference).mean() > 0.999, name


def _package_bresenham(x0, y0, x1, y1):
    """The `bresenham` package's algorithm (0.2.x), transcribed as the specification."""
    dx, dy = x1 - x0, y1 - y0
    xsign, ysign = (1 if dx > 0 else -1), (1 if dy > 0 else -1)
    dx, dy = abs(dx), abs(dy)
    if dx > dy:
        xx, xy, yx, yy = xsign, 0, 0, ysign
    else:
        dx, dy = dy, dx
        xx, xy, yx, yy = 0, ysign, xsign, 0
    d, y = 2 * dy - dx, 0
    for x in range(dx + 1):
        yield x0 + x * xx + y * yx, y0 + x * xy + y * yy
        if d >= 0:
            y += 1
            d -= 2 * dx
        d += 2 * dy


def test_bresenham_is_the_packages():
    rng = np.random.default_rng(0)
    ends = rng.integers(-40, 560, size=(400, 4))
    ends[:40, 2:] = ends[:40, :2]  # zero length
    ends[40:80, 2] = ends[40:80, 0] + (ends[40:80, 3] - ends[40:80, 1])  # exact diagonals
    for x0, y0, x1, y1 in ends:
        assert frame.bresenham_line(x0, y0, x1, y1).tolist() == [list(p) for p in _package_bresenham(x0, y0, x1, y1)]
    pixels, segment = frame.bresenham_segments(ends[:, :2], ends[:, 2:], clip=512)
    expected = [(i, p) for i, (x0, y0, x1, y1) in enumerate(ends) for p in _package_bresenham(x0, y0, x1, y1)
                if 0 < p[0] < 512 and 0 < p[1] < 512]
    assert segment.tolist() == [i for i, _ in expected]
    assert pixels.tolist() == [list(p) for _, p in expected]
    # a segment from outside: clipping before generating gives exactly the visible pixels of the full line
    start, end = np.array([[-10**6, 5 * 10**5]]), np.array([[700, 100]])
    full, _ = frame.bresenham_segments(start, end, clip=None)
    visible = full[(full[:, 0] > 0) & (full[:, 0] < 512) & (full[:, 1] > 0) & (full[:, 1] < 512)]
    assert np.array_equal(frame.bresenham_segments(start, end, clip=512)[0], visible)
    # from very far (exact integer path): only visible pixels are generated, each on the ideal line
    start, end = np.array([[-10**13, 3 * 10**12]]), np.array([[700, 100]])
    far, _ = frame.bresenham_segments(start, end, clip=512)
    assert 0 < len(far) <= 512
    slope = (100 - 3 * 10**12) / (700 + 10**13)
    assert all(abs(y - (100 + (x - 700) * slope)) <= 0.5 + 1e-6 for x, y in far.tolist())


def test_footprints_match_a_dense_rendering_with_scipy_dilation():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    strokes = [rng.uniform(-20, 276, size=(int(n), 2)) for n in rng.integers(1, 9, size=30)]
    strokes[0] = np.array([[0.0, 0.0], [0.25, 0.25]])  # on the raster's edge: row/column 0 get no line pixel
    fp = frame.stroke_footprints(strokes)
    for i, stroke in enumerate(strokes):
        pts = frame.to_pixels(stroke)
        raster = np.zeros((512, 512), dtype=bool)
        pairs = zip(pts[:-1], pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
        for a, b in pairs:
            for x, y in _package_bresenham(int(a[0]), int(a[1]), int(b[0]), int(b[1])):
                if 0 < x < 512 and 0 < y < 512:
                    raster[y, x] = True
        assert np.array_equal(fp.masks()[i], ndimage.binary_dilation(raster)), i


def test_ground_truth_and_votes_break_ties_like_the_reference():
    # three strokes over one pixel region: classes 1, 1, 0 -> class 1 (most strokes); 0 vs 1 once each -> 0
    fp = frame.Footprints(pixels=np.array([5, 6, 5, 6, 5, 7]), offsets=np.array([0, 2, 4, 6]), side=4)
    truth = ref_eval.gt_pixel_classes(fp, np.array([1, 1, 0]), 2).reshape(-1)
    assert truth[5] == 1 and truth[6] == 1 and truth[7] == 0 and truth[0] == -1
    labels = np.full(16, 2)
    labels[[5, 6, 7]] = [1, 0, 3]
    votes = ref_eval.stroke_votes(labels.reshape(4, 4), fp)
    assert votes.tolist() == [0, 0, 1]  # ties to the smallest label
    empty = frame.Footprints(pixels=np.array([3]), offsets=np.array([0, 0, 1]), side=4)
    assert ref_eval.stroke_votes(np.zeros((4, 4), dtype=int), empty).tolist() == [-1, 0]


# ---------------------------------------------------------------------------------- model, scoring


def test_text_tokens_and_features(imported, scenes):
    from sketchkit.model import openclip_seam as seam

    _, model, scorer = imported
    z = scenes["scene_3class"][0]
    tokens = seam.openai_tokenizer(77)(scoring.prompts(str(z["classes"][0])))
    assert torch.equal(tokens.to(torch.int32), torch.from_numpy(z["spot_text_tokens"]))
    with torch.no_grad():
        assert _max_diff(model.encode_text_raw(scoring.prompts(str(z["classes"][0]))), z["spot_text_encode_raw"]) <= TOL
    for name, (z, _) in scenes.items():
        classes = [str(c) for c in z["classes"]]
        assert _max_diff(scorer.text(classes), z["text_features_minus_redundant"]) <= TOL, name
        assert _max_diff(scorer._text[""], z["redundant_features"][0]) <= TOL
    # cached per name: order of the request does not matter
    assert torch.equal(scorer.text(["sheep", "river"]), scorer.text(["river", "sheep"]).flip(0))


def test_blocks_and_cross_attention_spot_check(imported, scenes):
    _, model, _ = imported
    z = scenes["scene_3class"][0]
    with torch.no_grad():
        out = model.encoder.forward_tokens(torch.from_numpy(z["image_tensor"]))
        assert _max_diff(out.tokens[0], z["spot_block12_out_ori"]) <= TOL
        assert _max_diff(out.tokens_vv[0], z["spot_block12_out_vv"]) <= TOL
        assert _max_diff(model.cross_attention(out.tokens)[0], z["spot_ca_out_ori_copy0"]) <= TOL
        assert _max_diff(model.cross_attention(out.tokens_vv)[0], z["spot_ca_out_vv_copy0"]) <= TOL


def test_cross_attention_closed_form_equals_the_literal_one(imported):
    _, model, _ = imported
    ca = model.cross_attention
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 200, 64, generator=g)
    with torch.no_grad():
        fast = ca(tokens)
        for _ in range(3):  # any text, any class: the same output
            text = torch.randn(2, 512, generator=g) * 10
            torch.testing.assert_close(ca.forward_literal(tokens, text), fast, atol=1e-5, rtol=1e-5)


def test_normalisation_quirk_is_sign_over_sqrt_copies():
    x = torch.randn(200, 512, generator=torch.Generator().manual_seed(0))
    assert torch.equal(scoring.normalise_over_copies(x, 1), torch.sign(x))
    for copies in (2, 3, 7):
        torch.testing.assert_close(scoring.normalise_over_copies(x, copies), torch.sign(x) / copies**0.5, atol=1e-6, rtol=0)


def test_features_maps_labels_and_metrics_reproduce_test_py(imported, scenes, fixtures):
    _, model, scorer = imported
    all_classes = json.loads((fixtures / "manifest.json").read_text())["all_classes"]
    for name, (z, sketch) in scenes.items():
        view = reference_input(sketch)
        features = scorer.encode(view)
        classes = [str(c) for c in z["classes"]]
        assert _max_diff(features, z["visual_features_raw_copy0"]) <= TOL, name
        normalised = scoring.normalise_over_copies(features, len(classes))
        assert _max_diff(normalised, z["visual_features_normalized_copy0"]) <= TOL, name
        score, prediction, truth = scorer.evaluate(sketch, view, features=features)
        assert list(prediction.classes) == classes
        rows, cols = z["ink_yx"][:, 0].astype(int), z["ink_yx"][:, 1].astype(int)
        assert _max_diff(prediction.maps[:, rows, cols], z["pixel_similarity_at_ink"]) <= TOL, name
        assert (prediction.pixel_labels == z["pred_argmax_local"]).mean() >= 0.999, name
        to_global = np.array([all_classes.index(c) for c in classes])
        assert np.array_equal(np.where(truth >= 0, to_global[np.maximum(truth, 0)], 0), z["gt_sketch_seg"]), name
        assert (to_global[prediction.stroke_labels] == z["pred_strokes"]).mean() >= 0.9, name
        for ours, key in ((score.acc_p, "pixel_accuracy"), (score.acc_s, "stroke_accuracy"), (score.miou, "miou")):
            assert abs(ours - float(z[key])) <= 0.01, (name, key)
    # the one-shot function gives the scorer's prediction
    from sketchkit.reference import reference_predict

    z, sketch = scenes["scene_1class"]
    view = reference_input(sketch)
    once = reference_predict(model, view, ["airplane"])
    assert np.array_equal(once.pixel_labels, scorer.predict(view, ["airplane"]).pixel_labels)
    assert (once.ink_labels(view)[view.ink] == 0).all() and (once.ink_labels(view)[~view.ink] == -1).all()


def test_metrics_on_the_references_own_predictions_are_exact(scenes):
    """Geometry and metrics alone, fed test.py's stored prediction: equal to its metrics to 1e-9."""
    for name, (z, sketch) in scenes.items():
        view = reference_input(sketch)
        classes = ref_eval.reference_classes(sketch.labels)
        truth_strokes = ref_eval.stroke_classes(sketch.labels, classes)
        truth = ref_eval.gt_pixel_classes(view.footprints, truth_strokes, len(classes))
        assert np.array_equal(truth + 1, z["gt_sketch_seg_local"]), name
        predicted = z["pred_argmax_local"].astype(np.int64)
        votes = ref_eval.stroke_votes(np.where(truth >= 0, predicted, -1), view.footprints)
        score = ref_eval.score(predicted, truth, votes, truth_strokes, len(classes))
        assert abs(score.acc_p - float(z["pixel_accuracy"])) <= 1e-9, name
        assert abs(score.acc_s - float(z["stroke_accuracy"])) <= 1e-9, name
        assert abs(score.miou - float(z["miou"])) <= 1e-9, name


# ---- through the CLI: import-checkpoint, then eval --protocol reference and segment --scoring reference ----


def test_cli_import_then_eval_reproduces_test_py_per_scene(tmp_path, fixtures, capsys):
    """The path a user takes with the released checkpoint: the per-scene metrics of the reference's own
    test.py (recorded in the fixtures) come back from `sketchkit eval`, and the aggregate too."""
    import json
    import shutil

    from sketchkit.cli.app import main

    base = fixtures / "base_openai_state_dict.pt"
    imported = tmp_path / "reference.safetensors"
    code = main(["import-checkpoint", str(fixtures / "reference_finetuned.pth"), str(imported), "--weights", str(base),
                 "-q"])
    assert code == 0, capsys.readouterr().err
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    manifest = json.loads((fixtures / "manifest.json").read_text())
    for scene in manifest["scenes"]:
        shutil.copy(FRISS / scene["friss_split"] / f"{scene['scene_id']}.json", data / "test")
    (data / "data_partitions.json").write_text(json.dumps({"test": [s["scene_id"] for s in manifest["scenes"]]}))
    code = main(["eval", "--data", str(data), "--split", "test", "--model", "sketchkit", "--adapter", str(imported),
                 "--weights", str(base), "--protocol", "all", "--json", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "r.json").read_text())["results"]["sketchkit"]
    assert result["scoring"] == "reference"
    aggregate = manifest["test_py_aggregate"]
    assert result["reference"]["acc_p"] == pytest.approx(100 * aggregate["P_value"], abs=1e-6)
    assert result["reference"]["acc_s"] == pytest.approx(100 * aggregate["C_value"], abs=1e-6)
    assert result["reference"]["miou"] == pytest.approx(100 * aggregate["miou_value"], abs=1e-6)

    from sketchkit.evaluation import evaluate
    from sketchkit.inference import ModelSpec, build_segmenter

    segmenter = build_segmenter(ModelSpec("sketchkit", adapter=str(imported), weights=str(base), device="cpu"))
    sketches = [sketchkit_read(FRISS / s["friss_split"] / f"{s['scene_id']}.json") for s in manifest["scenes"]]
    report = evaluate(sketches, [segmenter], protocols=("per_sketch", "dataset", "reference"))
    for scene, score in zip(manifest["scenes"], report.models[0].reference):
        assert score.acc_p == pytest.approx(scene["pixel_accuracy"], abs=1e-4)
        assert score.acc_s == pytest.approx(scene["stroke_accuracy"], abs=1e-4)
        assert score.miou == pytest.approx(scene["miou"], abs=1e-4)


def sketchkit_read(path):
    from sketchkit.io import read_sketch

    return read_sketch(path)


def test_segment_with_reference_scoring_labels_strokes_as_test_py(tmp_path, fixtures, capsys):
    import json

    import numpy as np

    from sketchkit.cli.app import main
    from sketchkit.model.import_checkpoint import import_checkpoint

    base = fixtures / "base_openai_state_dict.pt"
    imported = tmp_path / "reference.safetensors"
    import_checkpoint(fixtures / "reference_finetuned.pth", imported, backbone=None, weights=base)
    scene = np.load(fixtures / "scene_4class.npz")
    source = FRISS / str(scene["friss_split"]) / f"{scene['scene_id']}.json"
    classes = [str(c) for c in scene["classes"]]
    code = main(["segment", str(source), "--adapter", str(imported), "--weights", str(base), "--labels",
                 ",".join(classes), "--out", str(tmp_path / "out.json"), "--format", "json,svg", "-q"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["scoring"] == "reference" and doc["labels"] == classes
    all_classes = json.loads((fixtures / "manifest.json").read_text())["all_classes"]
    want = [all_classes[i] if i > 0 else None for i in scene["pred_strokes"]]
    assert [s["label"] for s in doc["strokes"]] == want
    code = main(["segment", str(source), "--model", "clip-surgery", "--scoring", "reference", "--backbone",
                 "tiny-random", "--labels", "a", "--out", str(tmp_path / "x.json")])
    assert code == 2 and "reference scoring runs an imported reference model" in capsys.readouterr().err
