"""Signals, full disks and odd text (issue 14, round 2; docs/limits.md "Signals, full disks and odd text").

Every case is made here. In-process runs go through `cli.app.main`; signals (SIGTERM, kill -9) and a
real full filesystem (a 2 MiB tmpfs, root only) run `python -m sketchkit.cli` in a subprocess. Each
failure must be exit 2 with one `Error:` line, never "unexpected" (exit 1) or a traceback, and leave
no temporary, claim or partial output file.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from sketchkit.cli.app import main

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">{}</svg>'
LINE = '<path d="M 10 10 L 90 90" stroke="black"{}/>'
ORACLE = ["--model", "oracle"]


def scene(names=("tree", "house"), **extra) -> dict:
    """A FrISS scene of two strokes, one object each."""
    doc = {"img_id": "s", "img_w": 100, "img_h": 100, "object_divisions": [0, 1, 2],
           "scene_strokes": [[10, 10, 0], [20, 20, 1], [50, 50, 0], [60, 70, 1]], "gt_class_names": list(names)}
    return {**doc, **extra}


def write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def run(capsys, *args) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def one_error(code: int, lines: list[str], *fragments: str) -> str:
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (code, lines)
    assert "unexpected" not in lines[0] and "Traceback" not in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Hidden files (temp files `.x.tmp-*`, claims `.x.claim`) under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# ------------------------------------------------------------------------------- 1. Rich markup


def test_rich_markup_in_messages_and_labels_never_breaks_the_printer(tmp_path, capsys):
    bad_transform = write(tmp_path / "t.svg", SVG.format(LINE.format(' transform="[/]"')))
    code, _, lines = run(capsys, "convert", bad_transform, tmp_path / "t.json")
    one_error(code, lines, "[/]")
    key = write(tmp_path / "k.json", {"[/]": 1, "[red]x": 2})
    one_error(*run(capsys, "convert", key, tmp_path / "k.svg")[::2], "[/], [red]x")
    bad_id = write(tmp_path / "i.svg", SVG.format('<path id="[red]" d="M 0 0 L 10 10 Q" stroke="black"/>'))
    one_error(*run(capsys, "convert", bad_id, tmp_path / "i.json")[::2], "[red]")
    good = write(tmp_path / "g.json", scene())
    code, out, _ = run(capsys, "segment", good, *ORACLE, "--labels", "[/],[red]", "--out", tmp_path / "o")
    assert code == 0 and "[/]" in out
    code, _, lines = run(capsys, "segment", bad_transform, key, good, *ORACLE, "--labels", "[/]", "--out", tmp_path / "b")
    assert code == 2 and sum(line.startswith("Error: ") for line in lines) == 2, lines


# ----------------------------------------------------------------------- 2. unexpected exceptions


BIG = "9" * 5000


def test_integers_past_python_digit_limit_are_not_valid_json(tmp_path, capsys):
    doc = json.dumps(scene()).replace('"img_w": 100', f'"img_w": {BIG}')
    one_error(*run(capsys, "convert", write(tmp_path / "w.json", doc), tmp_path / "w.svg")[::2], "digits")
    lines = '{"word": "cat", "drawing": [[[0, 10], [0, 10]]]}\n{"word": "cat", "drawing": [[[0, %s], [0, 9]]]}\n' % BIG
    code, _, err = run(capsys, "segment", write(tmp_path / "q.ndjson", lines), *ORACLE, "--out", tmp_path / "q", "-q")
    assert code == 2 and [e for e in err if e.startswith("Error:")] == [
        f"Error: {tmp_path / 'q.ndjson'}: line 2: not valid JSON (a number with more than the 4,300 digits Python "
        "converts)"], err


def test_summary_parts_with_long_integers_are_refused(tmp_path):
    from sketchkit.errors import InputError
    from sketchkit.io.summary import merge_summary_parts

    parts = tmp_path / ".segmentation.csv.parts"
    parts.mkdir()
    write(parts / "r00000.jsonl", '{"order": [%s, 0], "csv": [], "coco": null}\n' % BIG)
    with pytest.raises(InputError, match="digits"):
        merge_summary_parts(parts, csv_path=tmp_path / "segmentation.csv")
    assert not (tmp_path / "segmentation.csv").exists() and not list(tmp_path.rglob("*.tmp-*"))


def test_lone_surrogates_refused_in_labels_and_captions_escaped_in_file_names(tmp_path, capsys):
    surrogate_label = write(tmp_path / "s.json", json.dumps(scene(["\ud800x", "house"])))
    one_error(*run(capsys, "convert", surrogate_label, tmp_path / "s.svg")[::2], "\\ud800x", "lone surrogate")
    bad = "a\udcff"  # what Python makes of the argument bytes b"a\xff"
    one_error(*run(capsys, "segment", write(tmp_path / "g.json", scene()), *ORACLE, "--labels", bad)[::2], "\\udcff")
    one_error(*run(capsys, "segment", tmp_path / "g.json", *ORACLE, "--caption", bad)[::2], "caption")
    odd = tmp_path / "n\udcff.json"  # a file name that is not UTF-8
    write(odd, scene())
    code, out, _ = run(capsys, "segment", odd, *ORACLE, "--out", tmp_path / "o", "--format", "svg,json,png")
    assert code == 0 and "\\udcff" in out
    svg = (tmp_path / "o" / "n\udcff.svg").read_bytes()
    svg.decode("utf-8")  # still UTF-8
    write(tmp_path / "b\udcff.json", "{")
    one_error(*run(capsys, "convert", tmp_path / "b\udcff.json", tmp_path / "b.svg")[::2], "b\\udcff.json")


def test_file_names_that_are_not_utf8_reach_every_output(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "n\udcff.json", scene(["$\\frac{", "a\x07b\nc"]))  # mathtext and controls in labels too
    code, _, err = run(capsys, "eval", "--data", folder, *ORACLE, "--json", tmp_path / "r.json", "--csv",
                       tmp_path / "r.csv", "--plots", tmp_path / "plots", "--save-predictions", tmp_path / "p.h5")
    assert code == 0 and "Error" not in "".join(err) and "Warning" not in "".join(err), err
    assert run(capsys, "eval", "--predictions", tmp_path / "p.h5")[0] == 0
    code, _, err = run(capsys, "segment", folder, *ORACLE, "--labels", "x", "--out", tmp_path / "o", "--format",
                       "json,csv,coco")
    assert code == 0, err
    assert "n\\udcff.json" in (tmp_path / "o" / "segmentation.csv").read_text(encoding="utf-8")


def test_control_characters_in_labels_are_escaped_in_png_overlays_and_nul_is_refused(tmp_path, capsys):
    from sketchkit.text import printable

    assert printable("a\nb\x07\udcff") == "a\\nb\\x07\\udcff"
    odd = write(tmp_path / "nl.json", scene(["air\nplane", "t\ta\x07b"]))
    code, _, lines = run(capsys, "convert", odd, tmp_path / "nl.png")
    assert code == 0 and not lines and (tmp_path / "nl.png").stat().st_size > 0
    nul = write(tmp_path / "nul.json", scene(["air\x00plane", "house"]))
    for target in ("nul.h5", "nul.svg"):
        one_error(*run(capsys, "convert", nul, tmp_path / target)[::2], "air\\x00plane", "NUL")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nl.json", "nl.png", "nul.json"]


def test_huge_data_instance_and_python2_npy_header_are_valid_input(tmp_path, capsys):
    huge = LINE.format(f' data-label="cat" data-instance="{"9" * 400}"')
    code, _, lines = run(capsys, "convert", write(tmp_path / "i.svg", SVG.format(huge)), tmp_path / "i.json")
    assert code == 0 and not lines
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 3L), }"
    header += " " * (117 - len(header)) + "\n"
    rows = np.array([[0, 0, 0], [10, 10, 1], [5, 5, 0]], dtype="<f4")
    npy = write(tmp_path / "py2.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
                + rows.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, lines = run(capsys, "convert", npy, tmp_path / "py2.svg")
    assert code == 0 and not lines


def test_symbolic_link_loops(tmp_path, capsys):
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    one_error(*run(capsys, "convert", tmp_path / "loop-a", tmp_path / "x.svg")[::2], "symbolic links")
    one_error(*run(capsys, "segment", tmp_path / "loop-a", *ORACLE, "--out", tmp_path / "o")[::2], "symbolic links")
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.json", scene())
    os.symlink("self.json", folder / "self.json")
    os.symlink("..", folder / "up")
    code, _, _ = run(capsys, "segment", folder, *ORACLE, "--out", tmp_path / "o2", "-q")
    assert code == 0 and sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["a.json", "a.svg"]


def test_names_too_long_for_outputs_get_a_stable_hash(tmp_path, capsys):
    from sketchkit.files import NAME_MAX

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["n" * 240 + "a.json", "n" * 240 + "b.json"]
    for name in names:
        write(folder / name, scene())
    out = tmp_path / "out"
    args = ["segment", folder, *ORACLE, "--out", out, "--format", "svg,json,png,masks", "-q"]
    code, _, lines = run(capsys, *args)
    assert code == 0, lines
    made = sorted(p.name for p in out.iterdir())
    assert len(made) == 8 and all(len(n.encode()) <= NAME_MAX for n in made) and not leftovers(out), made
    code, out_text, _ = run(capsys, *args, "--skip-existing")
    assert code == 0 and sorted(p.name for p in out.iterdir()) == made  # the same names again: skipped
    long_target = tmp_path / ("t" * 250 + ".svg")
    code, _, _ = run(capsys, "convert", folder / names[0], long_target)
    assert code == 0 and long_target.exists() and not leftovers(tmp_path)


def test_out_an_existing_file_and_batch_size_zero_are_usage_errors(tmp_path, capsys):
    good = write(tmp_path / "g.json", scene())
    other = write(tmp_path / "h.json", scene())
    blocker = write(tmp_path / "blocker", "x")
    one_error(*run(capsys, "segment", good, other, *ORACLE, "--out", blocker)[::2], "not a folder")
    one_error(*run(capsys, "segment", good, *ORACLE, "--out", blocker / "sub")[::2])
    code, _, lines = run(capsys, "segment", good, *ORACLE, "--batch-size", "0")
    assert code == 2 and any("--batch-size" in line for line in lines)
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------------------------ 3. messages


def test_single_input_failures_print_one_line(tmp_path, capsys):
    plain = write(tmp_path / "plain.svg", SVG.format(LINE.format("")))
    one_error(*run(capsys, "segment", plain, *ORACLE, "--out", tmp_path / "o")[::2], "no labels")
    one_error(*run(capsys, "segment", plain, *ORACLE, "--caption", "zzqx blorp", "--out", tmp_path / "o")[::2],
              "no known category")
    captioned = write(tmp_path / "cap.svg", SVG.format(LINE.format("")))
    write(tmp_path / "cap.txt", b"a \xff cat")
    one_error(*run(capsys, "segment", captioned, *ORACLE, "--out", tmp_path / "o")[::2], "not UTF-8")
    newline = write(tmp_path / "new\nline.json", "{")
    one_error(*run(capsys, "convert", newline, tmp_path / "x.svg")[::2], "new\\nline.json")
    one_error(*run(capsys, "segment", write(tmp_path / "g.json", scene()), *ORACLE, "--labels", "")[::2], "no labels")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("caption,fragment", [("", "no caption"), ("  ", "no caption"), ("zzqx blorp", "no known"),
                                              ("a [red]\ud800", "lone surrogate")])
def test_labels_command_errors_are_one_line(capsys, caption, fragment):
    one_error(*run(capsys, "labels", caption)[::2], fragment)


@pytest.mark.parametrize("label", ["a\x00b", "[/]\ud800"])
def test_eval_of_one_unreadable_file_prints_one_line(tmp_path, capsys, label):
    bad = write(tmp_path / "bad.json", scene(names=("tree", label)))
    one_error(*run(capsys, "eval", "--data", bad, *ORACLE, "--save-predictions", tmp_path / "p.h5")[::2], "bad.json")
    assert not (tmp_path / "p.h5").exists()


# ----------------------------------------------------------------------------- 5. full disks


class _FailingFile:
    """A file whose write raises ENOSPC once `budget` writes are spent (shared by every file opened)."""

    def __init__(self, handle, budget: list[int]):
        self._handle, self._budget = handle, budget

    def write(self, data):
        self._budget[0] -= 1
        if self._budget[0] < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


def test_a_full_disk_under_safetensors_is_one_line(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        write(data / f"s{i}.json", scene(["tree", "house"]))
    code, _, lines = run(capsys, "train", "--data", data, "--out", tmp_path / "run", "--backbone", "tiny-random",
                         "--captions-from-labels", "--max-steps", "1", "--epochs", "1", "--val-limit", "1",
                         "--eval-size", "64", "-q")
    errors = [line for line in lines if line.startswith("Error")]
    assert code == 2 and len(errors) == 1 and "no space left on device" in errors[0], lines
    assert not leftovers(tmp_path / "run")


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_over(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        write(data / f"s{i}.json", scene(["tree", "house"]))
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    write(run_folder / "config.json", {"data": str(data)})  # what a run killed before its first checkpoint leaves
    write(run_folder / "metrics.jsonl", "")
    args = ["train", "--data", data, "--out", run_folder, "--backbone", "tiny-random", "--captions-from-labels",
            "--max-steps", "1", "--epochs", "1", "--val-limit", "1", "--eval-size", "64", "-q"]
    code, _, lines = run(capsys, *args, "--resume")
    assert code == 0 and (run_folder / "train_state.safetensors").is_file(), lines
    one_error(*run(capsys, *args[:4], tmp_path / "none", *args[5:], "--resume")[::2], "nothing to resume")


@pytest.mark.parametrize("nth", [0, 1, 3])
def test_disk_full_at_the_nth_write_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, nth):
    import builtins

    from sketchkit import files

    budget = [nth]
    monkeypatch.setattr(files, "open", lambda *a, **k: _FailingFile(builtins.open(*a, **k), budget), raising=False)
    inputs = [write(tmp_path / f"s{i}.json", scene()) for i in range(3)]
    out = tmp_path / "out"
    code, _, lines = run(capsys, "segment", *inputs, *ORACLE, "--out", out, "--format", "svg,json,png", "-q")
    errors = [line for line in lines if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and "no space left on device" in errors[0], lines
    assert not leftovers(out)
    stems = [p.stem for p in out.iterdir()]
    assert all(stems.count(s) == 3 for s in stems), "whole output sets only"


def test_hdf5_writes_check_free_space_and_map_hdf5_errors(tmp_path, capsys, monkeypatch):
    from sketchkit.io import hdf5_columnar

    good = write(tmp_path / "g.json", scene())
    real = os.statvfs

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    one_error(*run(capsys, "convert", good, tmp_path / "g.h5")[::2], "no space left on device", "MiB free")
    code, _, lines = run(capsys, "segment", good, *ORACLE, "--format", "h5", "--out", tmp_path / "o")
    one_error(code, lines, "no space left on device")
    monkeypatch.setattr(os, "statvfs", real)

    def full_hdf5(*args, **kwargs):  # what h5py raises when the disk fills up under HDF5
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")

    monkeypatch.setattr(hdf5_columnar._ColumnFile, "append", full_hdf5)
    code, _, lines = run(capsys, "segment", good, *ORACLE, "--format", "h5", "--out-h5", tmp_path / "all.h5",
                         "--out", tmp_path / "o2")
    assert code == 2 and "no space left on device" in lines[-1], lines
    assert not (tmp_path / "all.h5").exists() and not leftovers(tmp_path / "o2")
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def test_atomic_writes_remove_their_temp_file_on_interrupt_and_errors(tmp_path):
    import h5py

    from sketchkit.files import atomic_path, atomic_write

    for failure in (KeyboardInterrupt, RuntimeError, OSError):
        with pytest.raises(Exception if failure is not KeyboardInterrupt else KeyboardInterrupt):
            with atomic_write(tmp_path / "a.svg", "w") as handle:
                handle.write("<svg/>")
                raise failure("stop")
        with pytest.raises(BaseException):
            with atomic_path(tmp_path / "a.h5") as tmp, h5py.File(tmp, "w") as h5:
                h5["x"] = np.zeros(10)
                raise failure("stop")
    assert not list(tmp_path.iterdir())


def _mount_tmpfs(folder: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a real full filesystem needs root to mount a tmpfs")
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")


def test_real_full_tmpfs(tmp_path, capsys):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk)
    try:
        (disk / "filler").write_bytes(b"\0" * (3 << 19))  # 1.5 of the 2 MiB
        inputs = tmp_path / "in"
        inputs.mkdir()
        for i in range(40):
            write(inputs / f"s{i:02d}.json", scene())
        code, _, err = run(capsys, "convert", inputs / "s00.json", disk / "s.h5")  # refused before HDF5 starts
        assert code == 2 and len(err) == 1 and err[0].startswith(f"Error: {disk}: no space left on device"), err
        code, _, err = run(capsys, "segment", inputs, *ORACLE, "--out", disk / "seg", "--format", "svg,json,png", "-q")
        assert code == 2 and len(err) == 1 and "no space left on device" in err[0], err
        assert leftovers(disk) == [] and sorted(os.listdir(disk)) == ["filler", "seg"]
        stems = [p.stem for p in (disk / "seg").iterdir()]
        assert stems and all(stems.count(s) == 3 for s in stems), "whole output sets only"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------------- 4, 6. signals and kills


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
INTERRUPTED = (130,)
"""Exit status of an interrupted command (cli.app.run makes it final even where CPython would end by SIGINT)."""


def _cli(*args) -> tuple[int, str, list[str]]:
    done = subprocess.run([sys.executable, "-m", "sketchkit.cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, errors="replace", timeout=240)
    return done.returncode, done.stdout, [line for line in done.stderr.splitlines() if line.strip()]


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sketchkit.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")


def _wait_for(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never got going: {process.communicate()[1][-2000:]}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """12 scenes of 400 strokes: a few seconds of `segment --model oracle` with png and h5 outputs."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.uniform(-3, 3, (2000, 2)), (np.arange(2000) % 5 == 4)[:, None]], axis=1)
    rows[0, :2] = [500, 500]
    for i in range(12):
        write(folder / f"s{i:02d}.json", scene(["tree", "house"], img_w=1000, img_h=1000,
                                               object_divisions=[0, 200, 400], scene_strokes=rows.tolist()))
    return folder


def _complete_sets(out: Path, formats: list[str]) -> set[str]:
    stems = [p.name.rsplit(".", 1)[0] for p in out.iterdir() if not p.name.startswith(".")]
    assert all(stems.count(s) == len(formats) for s in stems), "a partial output set"
    return set(stems)


SEGMENT_FORMATS = ["svg", "json", "png", "h5"]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_segment_stopped_at_a_random_point_then_skip_existing_finishes(many, tmp_path, how):
    out = tmp_path / "out"
    args = ["segment", many, *ORACLE, "--out", out, "--format", ",".join(SEGMENT_FORMATS), "-q"]
    process = _start(*args)
    _wait_for(process, lambda: out.is_dir() and len(os.listdir(out)) > 0)
    time.sleep(random.uniform(0.0, 0.5))
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0, "the signal came with 11 of 12 scenes to go: it must stop the run"
    if how == signal.SIGTERM:
        assert process.returncode in INTERRUPTED and err.strip().splitlines()[-1] == "Interrupted", err[-2000:]
        assert not leftovers(out), "no temp or claim file after SIGTERM"
        _complete_sets(out, SEGMENT_FORMATS)
    else:
        assert process.returncode == -signal.SIGKILL
    code, _, lines = _cli(*args, "--skip-existing")
    assert code == 0, lines
    assert _complete_sets(out, SEGMENT_FORMATS) == {f"s{i:02d}" for i in range(12)}
    assert not leftovers(out)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_summaries_and_results_file_resume_without_leftovers(many, tmp_path, how):
    out = tmp_path / "out"
    args = ["segment", many, *ORACLE, "--out", out, "--format", "png,csv,coco", "--out-h5", out / "all.h5", "-q"]
    process = _start(*args)
    _wait_for(process, lambda: out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()))
    process.send_signal(how)
    process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("segment finished before the signal")
    if how == signal.SIGTERM:
        assert not leftovers(out), "the results file's claim is released too"
    code, _, lines = _cli(*args, "--skip-existing")
    assert code == 0, lines
    assert not leftovers(out), "a killed writer's summary temp files are removed"
    assert {"segmentation.csv", "segmentation.coco.json", "all.h5"} <= set(os.listdir(out))


def test_skip_existing_over_a_finished_run_keeps_its_summaries(many, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["segment", many, *ORACLE, "--out", out, "--format", "json,csv,coco", "-q"]
    assert run(capsys, *args)[0] == 0
    summaries = {name: (out / name).read_bytes() for name in ("segmentation.csv", "segmentation.coco.json")}
    code, _, lines = run(capsys, *args, "--skip-existing")
    assert code == 0 and lines == [], lines
    assert {name: (out / name).read_bytes() for name in summaries} == summaries


def test_eval_sigterm_exits_130_and_removes_its_temp_file(many, tmp_path):
    saved = tmp_path / "pred.h5"
    args = ["eval", "--data", many, *ORACLE, "--save-predictions", saved, "--quiet"]
    process = _start(*args)
    _wait_for(process, lambda: any(".tmp-" in p.name for p in tmp_path.iterdir()))
    time.sleep(random.uniform(0.0, 0.3))
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("eval finished before the signal")
    assert process.returncode in INTERRUPTED and "Traceback" not in err, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "neither the predictions nor their temp file"
    code, _, lines = _cli(*args)
    assert code == 0 and saved.exists(), lines
