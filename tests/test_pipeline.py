"""The segment pipeline's outputs never lose data (issue 14's pipeline items): a partial output set left by
kill -9 is redone under --skip-existing, inputs that share a stem keep their own outputs, concurrent runs on
one folder never replace each other's outputs, and a symbolic link names its outputs by itself; inputs are
streamed (issue 16)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


from sketchkit.cli.app import main
from sketchkit.files import claim_outputs, claim_path
from sketchkit.pipeline import InputWalk, unique_bases

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "house_tree_sun.svg"
TINY = ["--backbone", "tiny-random", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def segment(capsys, *args) -> tuple[int, str, str]:
    code = main(["segment", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def _json_source(path: Path) -> str:
    return json.loads(path.read_text())["source"]


# ---- names ------------------------------------------------------------------------------------------------------


def test_unique_bases_keep_every_input_apart():
    bases = unique_bases(["a.svg", "a.json", "a.svg.json", "b.png", "c.ndjson"], reserved=["c"])
    assert bases == {"a.json": "a.json", "a.svg": "a.svg", "a.svg.json": "a.svg.json~2", "b.png": "b",
                     "c.ndjson": "c.ndjson"}
    outputs = [b + suffix for b in bases.values() for suffix in (".svg", ".json", ".h5", ".png", ".masks")]
    assert len(outputs) == len(set(outputs)) and "c" not in bases.values()
    assert unique_bases(["x.svg", "x.svg"]) == {"x.svg": "x"}, "a file given twice is one input"


def test_colliding_stems_keep_their_own_results(tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "a.svg")
    record = {"word": "cat", "drawing": [[[0, 10, 20], [0, 10, 5]]]}
    (data / "a.json").write_text(json.dumps(record))
    (data / "a.svg.json").write_text(json.dumps({**record, "drawing": [[[0, 5], [0, 30]]]}))
    out = tmp_path / "out"
    code, stdout, err = segment(capsys, data, *TINY, "--labels", "tree,house", "--out", out, "--format", "json,svg")
    assert code == 0, err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a.json.json", "a.json.svg", "a.svg.json", "a.svg.json~2.json", "a.svg.json~2.svg",
                       "a.svg.svg"]
    for base, source in (("a.json", "a.json"), ("a.svg", "a.svg"), ("a.svg.json~2", "a.svg.json")):
        assert Path(_json_source(out / f"{base}.json")).name == source, "each output holds its own input's result"
    code, stdout, err = segment(capsys, data, *TINY, "--labels", "tree,house", "--out", out, "--format", "json",
                                "--overwrite", "--quiet")
    assert code == 0, err
    assert [Path(line).name for line in stdout.split()] == ["a.json.json", "a.svg.json", "a.svg.json~2.json"], \
        "each input (in order: a.json, a.svg, a.svg.json) is reported with the file that holds its result"


def test_a_symlinked_input_is_named_by_its_link_and_resumes(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    shutil.copy(EXAMPLE, elsewhere / "target.svg")
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "real.svg")
    (data / "link.svg").symlink_to(elsewhere / "target.svg")
    out = tmp_path / "out"
    args = [data, *TINY, "--labels", "tree,house", "--out", out, "--format", "json"]
    code, _, err = segment(capsys, *args)
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == ["link.json", "real.json"]
    code, stdout, err = segment(capsys, *args, "--skip-existing")
    assert code == 0, err
    assert stdout.count("skipped: outputs exist") == 2


def test_an_output_folder_inside_the_inputs_is_not_read_back(tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "scene.svg")
    args = [data, *TINY, "--labels", "tree,house", "--out", data / "labelled", "--format", "svg"]
    assert segment(capsys, *args)[0] == 0
    code, stdout, err = segment(capsys, *args, "--skip-existing")
    assert code == 0, err
    assert "labelled/scene.svg" not in stdout.replace("\\", "/").split("skipped")[0]
    assert sorted(p.name for p in (data / "labelled").iterdir()) == ["scene.svg"]


def test_outputs_written_beside_their_inputs_never_take_an_input_name(tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "scene.svg")
    original = (data / "scene.svg").read_bytes()
    code, _, err = segment(capsys, data, *TINY, "--labels", "tree,house", "--out", data, "--format", "svg,json")
    assert code == 0, err
    assert sorted(p.name for p in data.iterdir()) == ["scene.svg", "scene.svg.json", "scene.svg.svg"]
    assert (data / "scene.svg").read_bytes() == original


def test_the_input_walk_streams_and_names_relative_to_the_arguments(tmp_path):
    root = tmp_path / "set"
    for relative in ("b/x.svg", "a/y.svg", "a/y.json", "z.svg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("<svg/>")
    walk = InputWalk([root / "a", root / "z.svg"], tmp_path / "out")
    assert walk.root == root and walk.count() == 3
    entries = iter(walk)
    first = next(entries)
    assert (first.path, first.base) == (root / "a" / "y.json", tmp_path / "out" / "a" / "y.json")
    assert [e.base.relative_to(tmp_path / "out").as_posix() for e in entries] == ["a/y.svg", "z"]


# ---- claims: partial sets and concurrent runs -------------------------------------------------------------------


def test_a_partial_set_counts_as_not_done_and_is_redone(tmp_path, capsys, friss_test_files):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in friss_test_files[:3]:
        shutil.copy(path, inputs / path.name)
    out = tmp_path / "out"
    args = [inputs, *TINY, "--out", out, "--format", "svg,h5"]
    assert segment(capsys, *args)[0] == 0
    names = sorted(p.stem for p in inputs.iterdir())
    # what kill -9 between the svg and the h5 leaves: the svg, no h5, the claim file, a temp file
    killed = out / names[0]
    (out / f"{names[0]}.h5").unlink()
    claim_path(killed).write_text("pid 1 on a host that died\n")
    (out / f".{names[0]}.h5.tmp-abcd1234").write_bytes(b"\x89HDF half")
    (out / f"{names[1]}.h5").unlink()  # an svg without its h5 and no claim: partial too
    before = {name: (out / f"{name}.svg").stat().st_mtime_ns for name in names}
    time.sleep(0.01)
    code, _, err = segment(capsys, *args, "--skip-existing", "--quiet")
    assert code == 0, err
    redone = [name for name in names if (out / f"{name}.svg").stat().st_mtime_ns != before[name]]
    assert redone == names[:2], "only the partial sets are redone, whole"
    assert _leftovers(out) == [], "no claim or temp file is left"
    from sketchkit.io.hdf5 import read_results_h5

    for name in names:
        assert (out / f"{name}.svg").is_file()
        assert read_results_h5(out / f"{name}.h5")[0].name == name


def test_without_skip_existing_a_partial_set_still_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    args = [EXAMPLE, *TINY, "--labels", "tree,house", "--out", out, "--format", "svg,json"]
    assert segment(capsys, *args)[0] == 0
    (out / "house_tree_sun.json").unlink()
    code, _, err = segment(capsys, *args)
    assert code == 2 and "house_tree_sun.svg exists" in err and "--overwrite" in err


def test_a_set_claimed_by_another_run_is_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "house_tree_sun.svg").write_text("another run's output")
    held = claim_outputs(out / "house_tree_sun")
    try:
        args = [EXAMPLE, *TINY, "--labels", "tree,house", "--out", out, "--format", "svg,json"]
        code, _, err = segment(capsys, *args, "--overwrite")
        assert code == 2 and "being written by another run" in err
        code, stdout, err = segment(capsys, *args, "--skip-existing")
        assert code == 0 and "claimed by" in stdout and "another run" in stdout
        assert (out / "house_tree_sun.svg").read_text() == "another run's output"
        assert not (out / "house_tree_sun.json").exists()
    finally:
        held.release(complete=False)


def _segment_process(inputs: Path, out: Path, labels: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sketchkit.cli", "segment", str(inputs), *TINY, "--labels", labels,
               "--out", str(out), "--format", "json,svg", "--batch-size", "2", *extra]
    return subprocess.Popen(command, env={**ENV, "COLUMNS": "400"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _written(table: str) -> set[str]:
    """Stems of the inputs a run's table says it segmented (not skipped)."""
    rows = [line.split("│") for line in table.splitlines() if line.count("│") == 5]
    return {Path(cells[1].strip()).stem for cells in rows
            if cells[1].strip() and "skipped" not in cells[3] and cells[4].strip()}


def test_concurrent_runs_on_one_folder_never_replace_each_others_outputs(tmp_path, friss_test_files):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in friss_test_files[:16]:
        shutil.copy(path, inputs / path.name)
    out = tmp_path / "out"
    runs = {labels: _segment_process(inputs, out, labels, "--skip-existing") for labels in ("tree,house", "cat,dog")}
    written = {}
    for labels, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        written[labels] = _written(stdout)
    assert not written["tree,house"] & written["cat,dog"], "no output set was written by both runs"
    assert written["tree,house"] | written["cat,dog"] == {p.stem for p in inputs.iterdir()}
    for labels, stems in written.items():
        other = ({"tree,house", "cat,dog"} - {labels}).pop().split(",")
        for stem in stems:  # every file of a set comes from the run that claimed it
            assert set(json.loads((out / f"{stem}.json").read_text())["labels"]) <= set(labels.split(","))
            svg = (out / f"{stem}.svg").read_text()
            assert not any(f'inkscape:label="{name}' in svg for name in other), stem
    assert _leftovers(out) == []


def test_kill_9_mid_segment_then_skip_existing_finishes_only_the_rest(tmp_path, friss_test_files):
    from sketchkit.io.hdf5 import read_results_h5

    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in friss_test_files[:24]:
        shutil.copy(path, inputs / path.name)
    out = tmp_path / "out"
    extra = ("--out-h5", str(out / "all.h5"), "--h5-part-size", "2")
    process = _segment_process(inputs, out, "tree,house", *extra)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.svg"))) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert 0 < len(list(out.glob("*.svg"))) < 24, "killed mid-run"
    stored = {s.name for part in (out / "all.h5.parts").glob("*.h5") for s in read_results_h5(part)}
    rerun = _segment_process(inputs, out, "tree,house", "--skip-existing", *extra)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert _written(stdout) == {p.stem for p in inputs.iterdir()} - stored, \
        "the rerun does exactly what the killed run had not stored (a set is done once it is in a published part)"
    stems = sorted(p.stem for p in inputs.iterdir())
    for stem in stems:
        assert json.loads((out / f"{stem}.json").read_text())["labels"]
        assert (out / f"{stem}.svg").read_text().rstrip().endswith("</svg>")
    assert _leftovers(out) == []
    stored = read_results_h5(out / "all.h5")
    assert sorted(s.name for s in stored) == stems, "every sketch is in the results file exactly once"
    assert not (out / "all.h5.parts").exists()


# ---- streaming --------------------------------------------------------------------------------------------------

_STREAM_READER = """
import json, resource, sys
from pathlib import Path
from sketchkit.inference.engine import Timings
from sketchkit.inference.shard import Shard
from sketchkit.pipeline import InputWalk, SegmentJob, _drawings

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

job = SegmentJob(inputs=[Path(sys.argv[1])], out=Path(sys.argv[2]), formats=["json"])
stream = _drawings(job, InputWalk(job.inputs, job.out), Shard(), lambda drawing: False, Timings())
count, marks, before = 0, {}, peak_mb()
for drawing, sketch in stream:  # exactly what segment's engine pulls, drawing by drawing
    count += 1
    if count in (20000,):
        marks[count] = peak_mb()
print(json.dumps({"count": count, "before": before, "at_20000": marks[20000], "end": peak_mb(), "last": drawing.name}))
"""


def test_a_200000_line_ndjson_streams_in_bounded_memory(tmp_path):
    """Bigger than the whole-file limit (64 MB), so it is read line by line; the peak RSS after 200,000 drawings
    is within a few tens of MB of the peak after 20,000 (what grows: the reader's set of names, for uniqueness)."""
    big = tmp_path / "cat.ndjson"
    stroke = json.dumps([list(range(0, 200, 4)), [(i * 37) % 200 for i in range(0, 200, 4)]], separators=(",", ":"))
    with open(big, "w") as handle:  # one 50-point stroke a line: about 350 bytes, 70 MB in all
        handle.writelines(f'{{"word":"cat","key_id":"{10**15 + key}","drawing":[{stroke}]}}\n'
                          for key in range(200_000))
    size_mb = big.stat().st_size / 2**20
    assert size_mb > 64
    done = subprocess.run([sys.executable, "-c", _STREAM_READER, str(big), str(tmp_path / "out")], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["count"] == 200_000 and figures["last"] == str(10**15 + 199_999)
    assert figures["end"] - figures["at_20000"] < 40, figures
    assert figures["end"] - figures["before"] < size_mb / 2, f"the {size_mb:.0f} MB file is not held: {figures}"
