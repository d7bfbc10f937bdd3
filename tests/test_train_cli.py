"""`sketchkit train` / `import-checkpoint` flags and output, and the typed training events, on the
repository's example sketches (no shared data needed)."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import typer

from cli import train as train_cli
from cli._errors import HINT_FLAGS
from sketchkit.cli.app import main
from sketchkit.errors import HINTS, UsageError
from sketchkit.training import (EpochEnd, EpochStart, Saved, Setup, Step, TrainConfig, Validation, ValidationProgress,
                                ValidationStart, config_from_dict, read_metrics, train)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TINY = dict(backbone="tiny-random", device="cpu", global_batch=2, epochs=1, eval_size=64, lr=3e-5)
CONFIG_ONLY = {"holistic_weight", "category_weight", "sharpness", "detach_maps", "weight_decay", "scheduler", "warmup_steps",
               "log_every"}
"""TrainConfig keys set only in a config file; every other key is a `train` flag of the same name."""


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def last_line(err: str) -> str:
    return [line for line in err.strip().splitlines() if line.strip()][-1]


class Recorder:
    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


@pytest.fixture(scope="module")
def examples_run(tmp_path_factory):
    """One step on two example sketches; the third (held out) validates by mIoU."""
    recorder = Recorder()
    out = tmp_path_factory.mktemp("examples-run")
    report = train(TrainConfig(data=str(EXAMPLES), out=str(out), **TINY), recorder)
    return report, recorder.events


# ---------------------------------------------------------------------------- flags


def _train_command():
    app = typer.Typer()
    app.command("train")(train_cli.train)
    app.command("import-checkpoint")(train_cli.import_checkpoint)
    return typer.main.get_command(app).commands["train"]


def test_every_flag_is_a_config_key_of_the_same_name():
    keys = {f.name for f in fields(TrainConfig)}
    flagged = set()
    for param in _train_command().params:
        if param.name in ("config", "last_layer_only", "quiet"):
            continue
        assert param.name in keys, f"{param.opts} sets no config key of its name"
        assert "--" + param.name.replace("_", "-") in param.opts, f"config key {param.name} is set by {param.opts}"
        flagged.add(param.name)
    assert keys - flagged == CONFIG_ONLY


def test_renamed_flags_and_keys(capsys):
    code, _, err = run(capsys, "train", "--data", EXAMPLES, "--batch-size", "4")
    assert code == 2 and "--batch-size" in err, "train's batch is --global-batch: --batch-size is eval's encode batch"
    code, _, err = run(capsys, "train", "--data", EXAMPLES, "--val-eval-size", "64")
    assert code == 2
    with pytest.raises(UsageError, match="batch_size is now global_batch; val_eval_size is now eval_size"):
        config_from_dict({"batch_size": 4, "val_eval_size": 64})


def test_help_shows_one_example(capsys):
    for command in ("train", "import-checkpoint"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and out.count("Example: sketchkit " + command) == 1, out
        assert "--quiet" in out


# ---------------------------------------------------------------------------- events


def test_events_arrive_typed_and_in_order(examples_run):
    report, events = examples_run
    kinds = [type(e) for e in events if not isinstance(e, ValidationProgress)]
    assert kinds == [Setup, EpochStart, Step, ValidationStart, Validation, Saved, EpochEnd, Saved]
    setup = events[0]
    assert (setup.train, setup.val, setup.steps_per_epoch, setup.total_steps, setup.resumed) == (2, 1, 1, 1, False)
    assert sum(e.advance for e in events if isinstance(e, ValidationProgress)) == 1
    step = next(e for e in events if isinstance(e, Step))
    validation = next(e for e in events if isinstance(e, Validation))
    assert read_metrics(report.metrics_path) == [step.record(), validation.record()]
    assert validation.metric == "val_miou" and validation.best and validation.eval_size == 64
    assert events[-1].step == 1 and events[-1].path == report.state_path


def test_threshold_starts_at_the_reference_value_and_theta_init_switches_it(examples_run, tmp_path):
    report, _ = examples_run
    assert report.threshold[0] == pytest.approx(0.4 + 0.5 * torch.sigmoid(torch.tensor(0.4)).item(), abs=1e-3)
    other = train(TrainConfig(data=str(EXAMPLES), out=str(tmp_path), theta_init=0.0, **TINY))
    assert other.threshold[0] == pytest.approx(0.65, abs=1e-3)
    assert json.loads((tmp_path / "config.json").read_text())["theta_init"] == 0.0


# ---------------------------------------------------------------------------- messages


def test_library_messages_name_no_flags_and_the_cli_adds_them(capsys, tmp_path, examples_run):
    assert set(HINTS) <= set(HINT_FLAGS)
    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    for source in EXAMPLES.glob("*.svg"):
        text = source.read_text(encoding="utf-8")
        meta = json.loads(text.split("<metadata>")[1].split("</metadata>")[0])
        del meta["sketchkit"]["caption"]
        (uncaptioned / source.name).write_text(text.replace(text.split("<metadata>")[1].split("</metadata>")[0], json.dumps(meta)))
    with pytest.raises(UsageError) as caught:
        train(TrainConfig(data=str(uncaptioned), out=str(tmp_path / "a"), **TINY))
    assert caught.value.hint == "captions" and "--" not in str(caught.value)
    code, _, err = run(capsys, "train", "--data", uncaptioned, "--out", tmp_path / "a", "--backbone", "tiny-random")
    assert code == 2 and "--captions-from-labels" in last_line(err), err

    code, _, err = run(capsys, "train", "--data", EXAMPLES, "--out", examples_run[0].out, "--backbone", "tiny-random")
    assert code == 2 and "already holds a training run" in err and "--resume" in err and "--overwrite" in err, err
    code, _, err = run(capsys, "train", "--out", tmp_path / "b")
    assert code == 2 and "no training data given (pass --data" in last_line(err), err


def test_output_is_plain_text_and_notes_carry_their_flags(capsys, tmp_path):
    data = tmp_path / "data[red]"
    shutil.copytree(EXAMPLES, data)
    out = tmp_path / "run[bold]"
    code, stdout, err = run(capsys, "train", "--data", data, "--out", out, "--backbone", "tiny-random", "--device", "cpu",
                            "--global-batch", "3", "--val-fraction", "0", "--epochs", "1")
    assert code == 0, err
    assert f"best adapter: {out / 'best.safetensors'}" in stdout, "paths print verbatim, never as Rich markup"
    assert f"held out of {data}" in err and "no validation sketches" in err and "--val-data" in err


def test_import_checkpoint_quiet_prints_only_the_imported_file(capsys, tmp_path):
    fixtures = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference_tiny"
    if not (fixtures / "reference_finetuned.pth").is_file():
        pytest.skip(f"reference fixtures absent: {fixtures}")
    out = tmp_path / "imported[1].safetensors"
    code, stdout, err = run(capsys, "import-checkpoint", fixtures / "reference_finetuned.pth", out, "--weights",
                            fixtures / "base_openai_state_dict.pt", "--quiet")
    assert code == 0, err
    assert stdout.strip() == str(out) and err == ""
    code, stdout, err = run(capsys, "import-checkpoint", fixtures / "reference_finetuned.pth", out, "--weights",
                            fixtures / "base_openai_state_dict.pt")
    assert code == 2 and "exists" in err and "--overwrite" in err