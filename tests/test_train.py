"""Training: loss formulas on hand-made embeddings, what trains and what stays frozen, exact
resume, DDP (2 gloo processes) = one process, a smoke run on FrISS whose adapter the segment and
eval paths load, config files, and import-checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sketchkit.errors import UsageError
from sketchkit.training import (
    BEST_FILE,
    LAST_FILE,
    METRICS_FILE,
    STATE_FILE,
    Step,
    TrainConfig,
    TrainItem,
    load_train_config,
    read_metrics,
    read_train_state,
    train,
)
from sketchkit.training.data import micro_batches
from sketchkit.training.losses import (
    TextBank,
    batch_targets,
    embedding_distance,
    hardest_negatives,
    micro_batch_losses,
    triplet_terms,
)
from sketchkit.training.state import flatten_optimizer_state, unflatten_optimizer_state

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- loss formulas

A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two anchors
CAND = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])  # texts with keys 0, 1, 2
KEYS = torch.tensor([0, 1, 2])


def test_cosine_triplet_matches_hand_computation():
    # anchor 0, positive key 0: d+ = 1 - 0.6 = 0.4; negatives d(key1) = 0.2, d(key2) = 1.0 -> hardest key 1
    #   hinge = 0.4 - 0.2 + 0.3 = 0.5
    # anchor 1, positive key 2: d+ = 0; negatives d(key0) = 0.2, d(key1) = 0.4 -> hardest key 0
    #   hinge = 0 - 0.2 + 0.3 = 0.1
    anchor_keys = torch.tensor([0, 2])
    terms, valid = triplet_terms(A, CAND[anchor_keys], anchor_keys, CAND, KEYS, margin=0.3, distance="cosine")
    torch.testing.assert_close(terms, torch.tensor([0.5, 0.1]), atol=1e-6, rtol=0)
    assert valid.tolist() == [True, True]
    index, _ = hardest_negatives(embedding_distance(A, CAND), anchor_keys, KEYS)
    assert index.tolist() == [1, 0]


def test_l1_triplet_matches_hand_computation():
    # anchor 0: d+ = |1-0.6| + |0-0.8| = 1.2; d(key1) = 0.2 + 0.6 = 0.8; d(key2) = 2.0 -> 1.2 - 0.8 + 0.5 = 0.9
    # anchor 1 (positive key 2): d+ = 0; d(key0) = 0.6 + 0.2 = 0.8, d(key1) = 0.8 + 0.4 = 1.2 -> max(0, -0.8 + 0.5) = 0
    anchor_keys = torch.tensor([0, 2])
    terms, _ = triplet_terms(A, CAND[anchor_keys], anchor_keys, CAND, KEYS, margin=0.5, distance="l1")
    torch.testing.assert_close(terms, torch.tensor([0.9, 0.0]), atol=1e-6, rtol=0)


def test_hardest_negative_skips_same_text_even_when_closest():
    # key 0 twice: the second copy sits exactly on the anchor but shares the positive's text
    cand = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    keys = torch.tensor([0, 0, 2])
    index, valid = hardest_negatives(embedding_distance(A[:1], cand), torch.tensor([0]), keys)
    assert index.tolist() == [2] and valid.tolist() == [True]
    terms, _ = triplet_terms(A[:1], cand[:1], torch.tensor([0]), cand, keys, margin=0.3)
    torch.testing.assert_close(terms, torch.tensor([max(0.0, 0.4 - 1.0 + 0.3)]))


def test_no_negative_when_every_candidate_shares_the_key():
    terms, valid = triplet_terms(A, CAND[:2], torch.tensor([5, 5]), CAND[:1], torch.tensor([5]), margin=0.3)
    assert valid.tolist() == [False, False]
    assert terms.tolist() == [0.0, 0.0]


def test_gradient_reaches_anchor_through_the_chosen_negative():
    anchor = A[:1].clone().requires_grad_(True)
    terms, _ = triplet_terms(anchor, CAND[:1], torch.tensor([0]), CAND, KEYS, margin=0.3)
    terms.sum().backward()
    # d/da [(1 - a.p) - (1 - a.n)] = n - p with n = CAND[1]
    torch.testing.assert_close(anchor.grad, (CAND[1] - CAND[0])[None])


class FakeBank(TextBank):
    """Text bank with fixed 2-d embeddings (no text tower): texts -> rows of a table."""

    def __init__(self, table):
        self.table = table

    def __call__(self, texts):
        return torch.stack([self.table[t] for t in texts])


def test_batch_targets_counts_and_identical_captions():
    table = {"a cat": torch.tensor([1.0, 0.0]), "a dog": torch.tensor([0.0, 1.0]),
             "A sketch of a cat.": torch.tensor([1.0, 0.0]), "A sketch of a dog.": torch.tensor([0.0, 1.0])}
    bank = FakeBank(table)
    same = [TrainItem("x", "a cat", ("cat",)), TrainItem("y", "a cat", ("cat",))]
    targets = batch_targets(same, bank, use_categories=True)
    assert targets.captions == ["a cat"] and targets.holistic_count == 0 and targets.category_count == 0
    mixed = same + [TrainItem("z", "a dog", ("dog", "cat"))]
    targets = batch_targets(mixed, bank, use_categories=True)
    assert targets.captions == ["a cat", "a dog"] and targets.names == ["cat", "dog"]
    assert targets.holistic_count == 3 and targets.category_count == 4
    assert targets.name_emb.shape == (2, 2)


def test_micro_batches_cover_the_global_batch_once():
    for length, world, acc in [(16, 2, 1), (16, 1, 2), (5, 2, 2), (3, 2, 2)]:
        shares = [s for rank in range(world) for s in micro_batches(length, world, acc, rank)]
        assert len(shares) == world * acc
        assert sorted(int(i) for s in shares for i in s) == list(range(length))
    # one process with accumulation 2 and two processes split the batch identically
    assert [s.tolist() for s in micro_batches(8, 1, 2, 0)] == [s.tolist() for r in (0, 1) for s in micro_batches(8, 2, 1, r)]


def test_optimizer_state_round_trip_without_pickle():
    p = torch.nn.Parameter(torch.randn(3))
    q = torch.nn.Parameter(torch.randn(2, 2))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1e-3}, {"params": [q], "lr": 1e-2, "name": "threshold"}])
    (p.sum() + (q**2).sum()).backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)  # the structure part is plain JSON
    assert set(tensors) == {f"optim.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    fresh = torch.optim.AdamW([{"params": [p], "lr": 0.0}, {"params": [q], "lr": 0.0}])
    fresh.load_state_dict(restored)
    assert fresh.param_groups[1]["lr"] == 1e-2 and fresh.param_groups[1]["name"] == "threshold"
    torch.testing.assert_close(fresh.state[q]["exp_avg_sq"], opt.state[q]["exp_avg_sq"])


# ---------------------------------------------------------------------------- config


def test_config_file_then_flags(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('data = "fscoco"\nepochs = 5\nmargin = 1\ntaps = [12]\n[unused]\n', encoding="utf-8")
    with pytest.raises(UsageError, match="unknown key"):
        load_train_config(toml)
    toml.write_text('[train]\ndata = "fscoco"\nepochs = 5\nmargin = 1\ntaps = [12]\n', encoding="utf-8")
    cfg = load_train_config(toml, {"epochs": 2, "lr": None})
    assert (cfg.data, cfg.epochs, cfg.margin, cfg.taps, cfg.lr) == ("fscoco", 2, 1.0, (12,), 1e-6)
    js = tmp_path / "exp.json"
    js.write_text(json.dumps({"data": "x", "global_batch": "16"}))
    with pytest.raises(UsageError, match="global_batch"):
        load_train_config(js)
    with pytest.raises(UsageError, match="nothing to train"):
        TrainConfig(data="x", holistic=False, category_level=False).validated()


def _local_app():
    """A small app with this module's command (the real app.py registers it too)."""
    import typer

    from cli import train as train_cli

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that "train" is a sub-command even when it is the only one
    app.command("train")(train_cli.train)
    return app


# ---------------------------------------------------------------------------- gradients per ablation


@pytest.fixture(scope="module")
def friss_batch(friss_dir):
    """Two real FrISS train sketches as 224 px images with name-built captions."""
    from sketchkit.io import read_sketch
    from sketchkit.raster import rasterize
    from sketchkit.training import caption_for_training

    parts = json.loads((friss_dir / "data_partitions.json").read_text())
    paths = [friss_dir / "train" / f"{name}.json" for name in parts["train"][:2]]
    sketches = [read_sketch(p) for p in paths]
    images = torch.from_numpy(np_stack([rasterize(s, 224).image for s in sketches]))
    items = []
    for path, sketch in zip(paths, sketches):
        names = tuple(dict.fromkeys(n for n in sketch.labels if n))[:2]
        items.append(TrainItem(str(path), caption_for_training(sketch, True), names))
    assert len({i.caption for i in items}) == 2 and len({n for i in items for n in i.categories}) >= 2
    return images, items


def np_stack(arrays):
    import numpy as np

    return np.stack(arrays).astype("float32")


def _grads(cfg: TrainConfig, images, items, num_prompts=None):
    from sketchkit.model.factory import create_encoder

    model = create_encoder("tiny-random")
    if num_prompts is not None:
        model.set_num_prompts(num_prompts)
    model.freeze_for_finetuning()
    if not cfg.learn_threshold:
        model.theta.requires_grad_(False)
    targets = batch_targets(items, TextBank(model), use_categories=cfg.category_level)
    sums = micro_batch_losses(model, images, items, targets, cfg, nullcontext)
    (sums.holistic + sums.category).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen, f"frozen parameters got gradients: {frozen[:3]}"
    return sums, grads


def _nonzero(grad) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


def test_gradients_reach_threshold_prompts_and_cross_attention(friss_batch):
    images, items = friss_batch
    sums, grads = _grads(TrainConfig(data="x"), images, items)
    assert float(sums.holistic.detach()) > 0 and float(sums.category.detach()) > 0
    assert _nonzero(grads["theta"]), "the soft cut must pass a gradient to theta"
    assert _nonzero(grads["prompts"]) and _nonzero(grads["clip.visual.ln_pre.weight"])
    assert all(_nonzero(grads[f"cross_attn.{t}.q_proj.weight"]) for t in (7, 10, 12))


@pytest.mark.parametrize(
    "switch, check",
    [
        ({"learn_threshold": False}, lambda g: g["theta"] is None and _nonzero(g["prompts"])),
        ({"cross_attention": False}, lambda g: g["cross_attn.7.q_proj.weight"] is None and _nonzero(g["theta"])),
        ({"category_level": False}, lambda g: g["theta"] is None and g["cross_attn.12.q_proj.weight"] is None and _nonzero(g["prompts"])),
        ({"holistic": False, "vv": False}, lambda g: _nonzero(g["theta"]) and _nonzero(g["clip.visual.ln_post.weight"])),
        ({"taps": (12,)}, lambda g: g["cross_attn.7.q_proj.weight"] is None and _nonzero(g["cross_attn.12.q_proj.weight"])),
        ({"distance": "l1", "margin": 0.5}, lambda g: _nonzero(g["theta"])),
        ({"isolation": "scaled"}, lambda g: _nonzero(g["theta"]) and _nonzero(g["cross_attn.7.q_proj.weight"])),
        ({"tap_reduction": "mean"}, lambda g: _nonzero(g["theta"]) and _nonzero(g["cross_attn.10.q_proj.weight"])),
        ({"learn_threshold": False, "isolation": "scaled"}, lambda g: g["theta"] is None and _nonzero(g["prompts"])),
    ],
)
def test_ablation_switches_route_gradients(friss_batch, switch, check):
    images, items = friss_batch
    sums, grads = _grads(TrainConfig(data="x", **switch), images, items)
    assert check(grads)
    if not switch.get("holistic", True):
        assert float(sums.holistic) == 0.0
    if not switch.get("category_level", True):
        assert float(sums.category) == 0.0


def test_zero_prompts_trains(friss_batch):
    images, items = friss_batch
    _, grads = _grads(TrainConfig(data="x"), images, items, num_prompts=0)
    assert grads["prompts"] is None or grads["prompts"].numel() == 0
    assert _nonzero(grads["theta"])


# ---------------------------------------------------------------------------- fidelity defaults


@pytest.fixture(scope="module")
def examples_batch():
    """The repository's three example sketches as 224 px images with their own captions (no shared data needed)."""
    from sketchkit.io import read_sketch
    from sketchkit.raster import rasterize

    paths = sorted((REPO / "examples").glob("*.svg"))
    sketches = [read_sketch(p) for p in paths]
    images = torch.from_numpy(np_stack([rasterize(s, 224).image for s in sketches]))
    items = [TrainItem(str(p), s.caption, tuple(s.label_names())[:2]) for p, s in zip(paths, sketches)]
    assert len({i.caption for i in items}) == 3 and len({n for i in items for n in i.categories}) >= 4
    return images, items


def test_defaults_follow_the_reference():
    cfg = TrainConfig()
    assert (cfg.isolation, cfg.tap_reduction, cfg.theta_init, cfg.taps) == ("binary", "sum", None, (7, 10, 12))
    for key, value in (("isolation", "soft"), ("tap_reduction", "max")):
        with pytest.raises(UsageError, match=key):
            TrainConfig(data="x", **{key: value}).validated()


def test_category_loss_is_the_sum_over_the_taps(examples_batch):
    """Summed over taps 7, 10, 12 (the reference's) it is exactly three times the mean, and the holistic loss is untouched."""
    images, items = examples_batch
    summed, _ = _grads(TrainConfig(data="x"), images, items)
    mean, _ = _grads(TrainConfig(data="x", tap_reduction="mean"), images, items)
    assert float(summed.category.detach()) > 0
    torch.testing.assert_close(summed.category.detach(), 3 * mean.category.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(summed.holistic.detach(), mean.holistic.detach(), rtol=0, atol=0)


def test_isolation_switch_changes_what_the_second_pass_sees(examples_batch):
    images, items = examples_batch
    binary, grads = _grads(TrainConfig(data="x"), images, items)
    scaled, _ = _grads(TrainConfig(data="x", isolation="scaled"), images, items)
    assert _nonzero(grads["theta"]), "binary ink x soft cut still trains the threshold"
    assert float(binary.category.detach()) != pytest.approx(float(scaled.category.detach()), rel=1e-4)
    torch.testing.assert_close(binary.holistic.detach(), scaled.holistic.detach(), rtol=0, atol=0)


# ---------------------------------------------------------------------------- runs on FrISS

RUN = dict(captions_from_labels=True, backbone="tiny-random", device="cpu", global_batch=4, limit=6, epochs=2, max_steps=3,
           val_limit=1, eval_size=64, lr=3e-5, scheduler="cosine", save_every=1)


@pytest.fixture(scope="module")
def straight(friss_dir, tmp_path_factory):
    """3 uninterrupted steps (6 sketches, batch 4: an epoch boundary with validation at step 2)."""
    out = tmp_path_factory.mktemp("straight")
    return train(TrainConfig(data=str(friss_dir), out=str(out), **RUN))


def _state(out) -> tuple[dict, dict]:
    return read_train_state(Path(out) / STATE_FILE)


def _assert_same_training(a_out, b_out):
    ta, ma = _state(a_out)
    tb, mb = _state(b_out)
    assert set(ta) == set(tb)
    assert (ma["global_step"], ma["epoch"], ma["step_in_epoch"]) == (mb["global_step"], mb["epoch"], mb["step_in_epoch"])
    for key in ta:
        if key.startswith("param."):
            torch.testing.assert_close(tb[key], ta[key], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
        elif key.endswith(".step"):
            assert torch.equal(ta[key], tb[key])
        else:  # AdamW moments: sensitive to the gradient's scale, not only its sign
            torch.testing.assert_close(tb[key], ta[key], rtol=1e-3, atol=1e-9, msg=lambda m: f"{key}: {m}")
    assert ma["scheduler"]["last_epoch"] == mb["scheduler"]["last_epoch"] == 3


def test_run_trains_only_the_adapter_and_writes_its_files(straight):
    from sketchkit.model.adapter import read_adapter
    from sketchkit.model.factory import create_encoder

    fresh = create_encoder("tiny-random")
    trainable = set(fresh.trainable_names())
    before, after = fresh.state_dict(), straight.model.state_dict()
    for name, value in before.items():
        if name in trainable:
            assert not torch.equal(after[name], value), f"{name} did not train"
        else:
            assert torch.equal(after[name], value), f"frozen {name} changed"
    assert straight.steps == 3 and straight.epochs_completed == 1 and len(straight.threshold) == 3
    assert straight.threshold[-1] != pytest.approx(0.65, abs=1e-7), "the threshold must move"
    tensors, config = read_adapter(straight.best_path)
    assert set(tensors) == trainable and config["training"]["global_batch"] == 4
    assert config["step"] in (2, 3) and straight.best_metric == "val_miou"
    records = read_metrics(straight.metrics_path)
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "validation"] == [2, 3]
    assert straight.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (straight.out / LAST_FILE).is_file() and (straight.out / "config.json").is_file()


def test_killed_run_resumes_to_the_same_parameters(straight, friss_dir, tmp_path):
    out = tmp_path / "killed"
    cfg = TrainConfig(data=str(friss_dir), out=str(out), **RUN)

    class Killed(Exception):
        pass

    class KillDuringStep2:
        def on_event(self, event):
            if isinstance(event, Step) and event.step == 2:
                raise Killed  # after step 2 ran, before its checkpoint: the process dies here

    with pytest.raises(Killed):
        train(cfg, KillDuringStep2())
    _, meta = _state(out)
    assert (meta["global_step"], meta["epoch"], meta["step_in_epoch"]) == (1, 0, 1)
    with pytest.raises(UsageError, match="already holds a training run"):
        train(cfg)
    with pytest.raises(UsageError, match="global_batch=4"):
        train(replace(cfg, resume=True, global_batch=2))
    report = train(replace(cfg, resume=True))
    assert report.steps == 3
    _assert_same_training(straight.out, out)
    steps = [r["step"] for r in read_metrics(out / METRICS_FILE) if r["kind"] == "step"]
    assert steps == [1, 2, 3], "the log keeps one record per step across the resume"


def test_two_gloo_processes_match_one_process(straight, friss_dir, tmp_path):
    out = tmp_path / "ddp"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TrainConfig(data=str(friss_dir), out=str(out), **RUN).to_dict()}))
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import json, sys\n"
        "from sketchkit.training import config_from_dict, train\n"
        "train(config_from_dict(json.load(open(sys.argv[1]))))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker), str(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_training(straight.out, out)


def test_cli_smoke_run_adapter_loads_in_segment_and_eval(friss_dir, friss_test_files, tmp_path):
    from typer.testing import CliRunner

    from cli.app import app

    runner = CliRunner()
    out = tmp_path / "smoke"
    base = ["train", "--data", str(friss_dir), "--backbone", "tiny-random", "--epochs", "1", "--global-batch", "4",
            "--limit", "4", "--val-limit", "2", "--eval-size", "64", "--out", str(out)]
    refused = runner.invoke(_local_app(), base + ["--max-steps", "1"])
    assert isinstance(refused.exception, UsageError) and refused.exception.hint == "captions"
    assert "--" not in str(refused.exception), "library messages name no flags"
    result = runner.invoke(_local_app(), base + ["--captions-from-labels", "--max-steps", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    best = Path(result.output.strip().splitlines()[-1])
    assert best == out / BEST_FILE and best.is_file()

    segmented = runner.invoke(app, ["segment", str(friss_test_files[0]), "--adapter", str(best), "--backbone", "tiny-random",
                                    "--out", str(tmp_path / "seg"), "--format", "json", "--quiet"])
    assert segmented.exit_code == 0, segmented.output
    evaluated = runner.invoke(app, ["eval", "--data", str(friss_dir), "--split", "test", "--limit", "2", "--model", "sketchkit",
                                    "--adapter", str(best), "--backbone", "tiny-random", "--eval-size", "64"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "sketchkit" in evaluated.output


def test_fscoco_layout_without_labels_validates_by_loss(friss_dir, tmp_path):
    """FS-COCO layout made here: vector_sketches/<user>/<id>.npy [x, y, pen_flag] + text/<user>/<id>.txt;
    no stroke labels, so the held-out fraction gives a validation loss, not mIoU."""
    import numpy as np

    from sketchkit.io import read_sketch

    captions = [
        "A giraffe and a zebra are standing on the grass.",
        "A man flies a kite near a tree.",
        "Two cows under a tree beside a house.",
        "A car parked next to a house.",
        "A dog runs after a ball on the grass.",
        "An airplane flies over the clouds.",
    ]
    parts = json.loads((friss_dir / "data_partitions.json").read_text())
    for index, caption in enumerate(captions):
        sketch = read_sketch(friss_dir / "train" / f"{parts['train'][index]}.json")
        rows = [np.column_stack([s, np.r_[np.zeros(len(s) - 1), 1.0]]) for s in sketch.strokes]
        user = f"user{index % 2}"
        (tmp_path / "fscoco" / "vector_sketches" / user).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fscoco" / "text" / user).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "fscoco" / "vector_sketches" / user / f"{index}.npy", np.concatenate(rows))
        (tmp_path / "fscoco" / "text" / user / f"{index}.txt").write_text(caption + "\n")
    report = train(TrainConfig(data=str(tmp_path / "fscoco"), out=str(tmp_path / "run"), backbone="tiny-random", device="cpu",
                               global_batch=4, epochs=1, val_fraction=0.34))
    assert (report.train_count, report.val_count) == (4, 2)
    assert report.best_metric == "val_loss" and report.best_value > 0
    assert any("validation loss" in note for note in report.notes)
    assert report.steps == 1 and report.best_path.is_file()
