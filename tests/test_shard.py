"""Several processes (torchrun, gloo on CPU): `segment` and `eval` split the inputs by rank and give exactly
what one process gives; a killed rank's work is finished by a rerun with --skip-existing; the ranks' parts of
--out-h5 merge into one file that reads back every sketch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sketchkit.cli.app import main
from sketchkit.inference.shard import JobCounter, Shard

TINY = ["--backbone", "tiny-random", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def torchrun(*args: str, processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "sketchkit.cli", *args]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, friss_test_files) -> Path:
    """40 FrISS test scenes in one folder."""
    folder = tmp_path_factory.mktemp("scenes")
    for path in friss_test_files[:40]:
        shutil.copy(path, folder / path.name)
    return folder


def _stroke_labels(out: Path) -> dict[str, list]:
    return {p.stem: [s["label"] for s in json.loads(p.read_text())["strokes"]] for p in sorted(out.glob("*.json"))
            if not p.name.startswith("segmentation")}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def test_the_split_is_stable_and_counts_are_one_process_s_without_a_group():
    shards = [Shard(rank, 3) for rank in range(3)]
    assert [[u for u in range(10) if s.owns(u)] for s in shards] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    counter = JobCounter(Shard())
    seen = []
    counter.on_sync = seen.append
    counter.tick(done=2)
    counter.tick(skipped=1)
    assert counter.finish() == {"done": 2, "failed": 0, "skipped": 1, "finished": 1} and len(seen) == 3


def test_two_gloo_processes_segment_as_one_process(scenes, tmp_path, capsys):
    from sketchkit.io.hdf5 import read_results_h5

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["segment", str(scenes), *TINY, "--out", str(one), "--format", "json,csv,coco", "--out-h5",
                 str(one / "all.h5"), "--quiet"]) == 0
    capsys.readouterr()
    done = subprocess.run(torchrun("segment", str(scenes), *TINY, "--out", str(two), "--format", "json,csv,coco",
                                   "--out-h5", str(two / "all.h5")), env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "40 segmented, 0 skipped, 0 failed (2 processes)" in done.stderr
    assert done.stderr.count("segmenting") <= 2, "one progress bar, from rank 0"
    labels = _stroke_labels(one)
    assert len(labels) == 40 and _stroke_labels(two) == labels, "the same per-stroke labels"
    for summary in ("segmentation.csv", "segmentation.coco.json"):  # the ranks' parts joined in input order
        assert (two / summary).read_bytes() == (one / summary).read_bytes(), summary
    merged, single = read_results_h5(two / "all.h5"), read_results_h5(one / "all.h5")
    assert [s.name for s in merged] == [s.name for s in single], "the ranks' parts merge back into input order"
    for a, b in zip(merged, single):
        assert a.labels == b.labels and np.array_equal(a.stroke_labels, b.stroke_labels)
        assert np.array_equal(a.pixel_labels, b.pixel_labels) and a.gt_labels == b.gt_labels
    assert _leftovers(two) == []


def _worker_pids(launcher: int) -> dict[int, int]:
    """Rank -> pid of the worker processes a torchrun process started (Linux /proc)."""
    found, todo = {}, [launcher]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        try:
            environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        except OSError:
            continue
        if pid != launcher and "RANK" in environ and "sketchkit.cli" in Path(f"/proc/{pid}/cmdline").read_text():
            found[int(environ["RANK"])] = pid
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through Linux /proc")
def test_killing_one_rank_then_skip_existing_completes_every_output(scenes, tmp_path):
    from sketchkit.io.hdf5 import read_results_h5

    out = tmp_path / "out"
    args = ["segment", str(scenes), *TINY, "--out", str(out), "--format", "json,svg", "--out-h5", str(out / "all.h5"),
            "--h5-part-size", "3", "--batch-size", "2"]
    launcher = subprocess.Popen(torchrun(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    workers = {}
    while time.monotonic() < deadline and launcher.poll() is None:
        workers = _worker_pids(launcher.pid) or workers
        if len(list(out.glob("*.svg"))) >= 8 and 1 in workers:
            break
        time.sleep(0.05)
    assert 1 in workers and launcher.poll() is None, "both ranks running"
    os.kill(workers[1], signal.SIGKILL)
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert len(list(out.glob("*.json"))) < 40, "killed mid-run"
    rerun = subprocess.run(torchrun(*args, "--skip-existing"), env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "0 failed (2 processes)" in rerun.stderr
    stems = sorted(p.stem for p in scenes.iterdir())
    assert sorted(_stroke_labels(out)) == stems
    for stem in stems:
        assert (out / f"{stem}.svg").read_text().rstrip().endswith("</svg>")
    assert _leftovers(out) == [], "no claim, temp or part file left"
    stored = read_results_h5(out / "all.h5")
    assert sorted(s.name for s in stored) == stems, "every sketch once in the merged file"


def _numbers(tree, path=""):
    """Every number of a report, by its path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _numbers(value, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{path}[{i}]").items()}
    return {path: tree}


def test_two_gloo_processes_evaluate_as_one_process(friss_dir, tmp_path, capsys):
    args = ["eval", "--data", str(friss_dir), "--split", "test", "--limit", "40", "--model", "clip-surgery,oracle",
            *TINY, "--protocol", "all", "--eval-size", "128", "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert main([*args, "--json", str(one / "r.json"), "--save-predictions", str(one / "p.h5")]) == 0
    capsys.readouterr()
    done = subprocess.run(torchrun(*args, "--json", str(two / "r.json"), "--save-predictions", str(two / "p.h5"),
                                   "--distributed"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single, double = (json.loads((folder / "r.json").read_text()) for folder in (one, two))
    assert single["data"] == double["data"]
    a, b = _numbers(single["results"]), _numbers(double["results"])
    assert a.keys() == b.keys() and "/clip-surgery/reference/miou" in a and "/oracle/per_category[0]/iou" in a
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, abs=1e-9, rel=0), key
        else:
            assert b[key] == value, key
    assert sorted(p.name for p in two.iterdir()) == ["p.clip-surgery.h5", "p.oracle.h5", "r.json"], "parts merged"
    from sketchkit.io.hdf5 import read_results_h5

    for model in ("clip-surgery", "oracle"):
        merged, kept = read_results_h5(two / f"p.{model}.h5"), read_results_h5(one / f"p.{model}.h5")
        assert [s.source for s in merged] == [s.source for s in kept], "in input order"
    assert main(["eval", "--predictions", str(two / "p.h5"), "--eval-size", "128", "--json", str(two / "re.json"),
                 "--quiet"]) == 0
    rescored = _numbers(json.loads((two / "re.json").read_text())["results"])
    assert rescored["/clip-surgery/per_sketch/miou"] == pytest.approx(a["/clip-surgery/per_sketch/miou"], abs=1e-9)


def test_distributed_needs_torchruns_environment(tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    code = main(["segment", str(Path(__file__).parents[1] / "examples" / "house_tree_sun.svg"), *TINY, "--labels",
                 "tree", "--out", str(tmp_path), "--distributed"])
    err = capsys.readouterr().err
    assert code == 2 and "torchrun --nproc-per-node" in err and "RANK" in err
