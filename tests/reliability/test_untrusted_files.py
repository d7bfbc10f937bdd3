"""Untrusted models, results and run folders (issue 14, docs/limits.md "Untrusted models, results and run
folders (round 2)").

Every case is generated here. Each must end in exit code 2 (or the documented code) with one `Error:` line
naming the file, no traceback, no input modified and no output replaced without --overwrite. Memory bombs run
in a subprocess under an address-space limit, so a missing check fails the test instead of the machine.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchkit.cli.app import main

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "house_tree_sun.svg"
SECRET = "sketchkit-secret-9e1-never-in-an-output"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *fragments, exit_code=2):
    lines = [line for line in err.strip().splitlines() if line.strip() and "━" not in line]  # progress bars
    assert code == exit_code, err
    assert len(lines) == 1 and lines[0].startswith("Error:"), err
    assert "unexpected" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def bounded(code: str, limit_gb: float = 8.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh python under an address-space limit (a missing size check: MemoryError)."""
    def cap():
        limit = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=cap,
                          cwd=REPO)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "scene.svg")
    shutil.copy(REPO / "examples" / "sailboat.svg", folder / "best.svg")
    return folder


# ============================================================================== 1. outputs


def test_import_checkpoint_sidecar_needs_overwrite_and_never_replaces_the_input(tmp_path):
    from sketchkit.errors import UsageError
    from sketchkit.model.import_checkpoint import import_checkpoint

    base = tmp_path / "base.pt"
    base.write_bytes(b"not read: the outputs are checked first")
    ref = tmp_path / "ref.pth"
    ref.write_bytes(b"x")
    (tmp_path / "out.json").write_text("someone's notes")
    with pytest.raises(UsageError, match="out.json exists"):
        import_checkpoint(ref, tmp_path / "out.safetensors", backbone=None, weights=base)
    named = tmp_path / "ref_named.json"
    named.write_bytes(b"the reference")
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        import_checkpoint(named, tmp_path / "ref_named.safetensors", backbone=None, weights=base, overwrite=True)
    assert named.read_bytes() == b"the reference" and (tmp_path / "out.json").read_text() == "someone's notes"


@pytest.mark.parametrize("option", ["--json", "--csv", "--save-predictions", "--plots"])
def test_eval_outputs_inside_the_data_folder_are_refused(data, capsys, option):
    before = snapshot(data)
    target = {"--json": "scene.json", "--csv": "new.csv", "--save-predictions": "p.h5", "--plots": "plots"}[option]
    code, _, err = run(capsys, "eval", "--data", data, "--model", "oracle", option, data / target, "--overwrite")
    one_line_error(code, err, "inside the input folder")
    assert snapshot(data) == before


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_train_run_folder_and_data_folder_must_not_nest(data, tmp_path, capsys, where):
    before = snapshot(data)
    out = {"same": data, "inside": data / "run", "around": data.parent}[where]
    code, _, err = run(capsys, "train", "--data", data, "--out", out, "--backbone", "tiny-random", "--max-steps", "1",
                       "--captions-from-labels")
    one_line_error(code, err, "output folder" if where == "around" else "input folder")
    assert snapshot(data) == before


def test_train_never_replaces_files_of_an_existing_folder_without_overwrite(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("my own config")
    code, _, err = run(capsys, "train", "--data", data, "--out", out, "--backbone", "tiny-random", "--max-steps", "1",
                       "--captions-from-labels")
    one_line_error(code, err, "config.json exists", "--overwrite")
    assert (out / "config.json").read_text() == "my own config"


# =========================================================================== 2. HDF5 results


def _format2(path: Path) -> Path:
    """A one-sketch format 2 predictions file written by eval --save-predictions."""
    folder = path.parent / f".src-{path.stem}"
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, folder / "scene.svg")
    assert main(["eval", "--data", str(folder), "--model", "oracle", "--save-predictions", str(path), "--overwrite"]) == 0
    return path


def _format3(path: Path) -> Path:
    """A one-sketch columnar (format 3) file with fp16 scores, written by segment --out-h5."""
    assert main(["segment", str(EXAMPLE), "--model", "oracle", "--out", str(path.parent / f".out-{path.stem}"),
                 "--out-h5", str(path), "--scores", "fp16", "--format", "json", "--overwrite"]) == 0
    return path


@pytest.fixture(scope="module")
def h5files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h5")
    return {"2": _format2(folder / "f2.h5"), "3": _format3(folder / "f3.h5")}


def _edit(source: Path, target: Path, change) -> Path:
    import h5py

    shutil.copy(source, target)
    with h5py.File(target, "a") as h5:
        change(h5, h5["sketches"] if "sketches" in h5 else h5)
    return target


def _first(group):
    """The group holding the arrays of the first sketch (format 2) or the columns (format 3)."""
    return group[sorted(group)[0]] if "canvas" not in group else group


def _replace(name, values, **kwargs):
    def change(h5, g):
        g = _first(g)
        del g[name]
        g.create_dataset(name, data=values, **kwargs)
    return change


def _set(name, fill):
    def change(h5, g):
        g = _first(g)
        values = g[name][()]
        values[...] = min(fill, np.iinfo(values.dtype).max) if values.dtype.kind in "iu" else fill  # int16 columns
        g[name][...] = values
    return change


def _transform_nan(h5, g):
    g = _first(g)
    if "transform" in g.attrs:
        g.attrs["transform"] = np.array([np.nan, 0, 0, 224.0])
    else:
        g["transform"][0, 0] = np.nan


def _absurd_size(h5, g):
    g = _first(g)
    if "transform" in g.attrs:
        g.attrs["transform"] = np.array([1.0, 0, 0, 1e9])
    else:
        g["transform"][0, 3] = 1e9


def _external_link(h5, g):
    secret = Path(h5.filename).parent / "secret.h5"
    import h5py

    with h5py.File(secret, "w") as other:
        other["x"] = np.zeros(3)
    h5["extra"] = h5py.ExternalLink(str(secret), "/x")


def _soft_link(h5, g):
    import h5py

    h5["extra"] = h5py.SoftLink("/nowhere/else")


def _external_storage(h5, g):
    secret = Path(h5.filename).parent / "secret.bin"
    secret.write_text(SECRET)
    h5.create_dataset("extra", shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))])


def _virtual(h5, g):
    import h5py

    secret = Path(h5.filename).parent / "secret_v.h5"
    with h5py.File(secret, "w") as other:
        other["x"] = np.arange(4)
    layout = h5py.VirtualLayout(shape=(4,), dtype="i8")
    layout[:] = h5py.VirtualSource(str(secret), "x", shape=(4,))
    h5.create_virtual_dataset("extra", layout)


def _scaleoffset(h5, g):
    h5.create_dataset("extra", data=np.arange(100), scaleoffset=0)


def _group_for_dataset(h5, g):
    g = _first(g)
    del g["stroke_labels"]
    g.create_group("stroke_labels")


def _bomb_chunk(h5, g):
    h5.create_dataset("extra", shape=(2**15, 2**15), dtype="f4", chunks=(2**14, 2**14), compression="gzip")


HOSTILE = {
    "external link": (_external_link, "external link"),
    "soft link": (_soft_link, "soft link"),
    "external storage": (_external_storage, "external file"),
    "virtual dataset": (_virtual, "virtual dataset"),
    "unknown filter": (_scaleoffset, "filter"),
    "huge chunk": (_bomb_chunk, "chunk"),
    "NaN transform": (_transform_nan, "transform"),
    "absurd size": (_absurd_size, "transform"),
    "NaN confidence": (_set("stroke_confidence", np.nan), "stroke_confidence"),
    "label 1,000,000": (_set("stroke_labels", 1_000_000), "stroke_labels"),
    "wrong shape": (_replace("stroke_labels", np.zeros((2, 2), np.int32)), "stroke_labels"),
    "text for numbers": (_replace("stroke_confidence", np.array([b"a", b"b"])), "stroke_confidence"),
    "group for a dataset": (_group_for_dataset, "stroke_labels is a group, not a dataset"),
}


@pytest.mark.parametrize("fmt", ["2", "3"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_results_files_are_refused_by_eval_and_merge(h5files, tmp_path, capsys, fmt, case):
    change, fragment = HOSTILE[case]
    bad = _edit(h5files[fmt], tmp_path / "bad.h5", change)
    code, out, err = run(capsys, "eval", "--predictions", bad, "--json", tmp_path / "r.json")
    one_line_error(code, err, "bad.h5", fragment)
    assert SECRET not in out and not (tmp_path / "r.json").exists()
    code, _, err = run(capsys, "h5", "merge", tmp_path / "m.h5", bad, h5files[fmt])
    one_line_error(code, err, "bad.h5")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("fmt,name", [("2", "labels"), ("3", "classes")])
def test_label_text_that_is_not_utf8_reads_as_replacement_characters(h5files, tmp_path, capsys, fmt, name):
    import h5py

    def change(h5, g):
        g = _first(g)
        count = len(g[name])
        del g[name]
        g.create_dataset(name, data=np.array([b"\xff\xfe"] * count, dtype=object), dtype=h5py.string_dtype("ascii"))

    bad = _edit(h5files[fmt], tmp_path / "bad.h5", change)
    code, _, err = run(capsys, "convert", bad, tmp_path / "bad.json")
    assert code == 0 and "\ufffd" in json.loads((tmp_path / "bad.json").read_text())["labels"][0], err


BAD_ATTRIBUTES = {  # (on the file or the first sketch group, name, value, command)
    "eval_data a list": ("file", "eval_data", "[1, 2]", "eval"),
    "eval_data field a list": ("file", "eval_data", '{"fingerprint": [1]}', "eval"),
    "eval_weights not JSON": ("file", "eval_weights", "{{", "eval"),
    "eval_weights an array": ("file", "eval_weights", np.arange(3), "eval"),
    "eval_size text": ("file", "eval_size", "abc", "eval"),
    "eval_size NaN": ("file", "eval_size", np.nan, "eval"),
    "eval_size 10**15": ("file", "eval_size", 10**15, "eval"),
    "eval_vocab nested deep": ("file", "eval_vocab", "[" * 100_000, "eval"),
    "eval_name_map not UTF-8": ("file", "eval_name_map", np.void(b"\xff{"), "eval"),
    "unit text": ("group", "unit", "abc", "merge"),
    "unit an array": ("group", "unit", np.arange(3), "merge"),
}


@pytest.mark.parametrize("case", sorted(BAD_ATTRIBUTES))
def test_bad_attributes_of_a_predictions_file_give_one_line(h5files, tmp_path, capsys, case):
    where, name, value, command = BAD_ATTRIBUTES[case]

    def change(h5, g):
        (h5 if where == "file" else _first(g)).attrs[name] = value

    bad = _edit(h5files["2"], tmp_path / "bad.h5", change)
    args = ("eval", "--predictions", bad) if command == "eval" else ("h5", "merge", tmp_path / "m.h5", bad, h5files["2"])
    code, _, err = run(capsys, *args)
    one_line_error(code, err, "bad.h5", name)


@pytest.mark.parametrize("column", ["flags", "gt_labels", "caption_text"])
@pytest.mark.parametrize("shape", ["extra dimension", "scalar"])
def test_a_columnar_file_with_a_column_of_other_dimensions_gives_one_line(h5files, tmp_path, capsys, column, shape):
    def change(h5, g):
        values = g[column][()]
        del g[column]
        g.create_dataset(column, data=np.stack([values, values], axis=-1) if shape == "extra dimension" else values[0])

    bad = _edit(h5files["3"], tmp_path / "bad.h5", change)
    for args in (("eval", "--predictions", bad), ("h5", "merge", tmp_path / "m.h5", bad, h5files["3"]),
                 ("convert", bad, tmp_path / "c.json")):
        code, _, err = run(capsys, *args)
        one_line_error(code, err, "bad.h5", column)


def test_merge_checks_the_order_column_of_a_columnar_file(h5files, tmp_path, capsys):
    bad = _edit(h5files["3"], tmp_path / "bad.h5", _replace("order", np.zeros((2, 2), [("a", "i4"), ("b", "f4")])))
    code, _, err = run(capsys, "h5", "merge", tmp_path / "m.h5", bad, h5files["3"])
    one_line_error(code, err, "bad.h5", "order")


def test_nan_scores_are_refused(h5files, tmp_path, capsys):
    bad = _edit(h5files["2"], tmp_path / "bad.h5", _set("scores", np.nan))
    code, _, err = run(capsys, "eval", "--predictions", bad)
    one_line_error(code, err, "bad.h5", "scores")


@pytest.mark.parametrize("fmt", ["2", "3"])
def test_a_gzip_bomb_is_refused_before_reading(h5files, tmp_path, fmt):
    """A dataset declaring 16 GiB of zeros (a few KiB on disk) must be refused before a byte is read."""
    import h5py

    bad = tmp_path / "bomb.h5"
    shutil.copy(h5files[fmt], bad)
    with h5py.File(bad, "a") as h5:
        g = _first(h5["sketches"])
        del g["stroke_ids"]
        shape = (2**16, 2**16) if fmt == "2" else (1, 2**16, 2**16)
        chunks = (1, 256, 2**16) if fmt == "3" else (256, 2**16)  # 64 MiB: within the chunk cap
        g.create_dataset("stroke_ids", shape=shape, dtype="i4", chunks=chunks, compression="gzip")
    proc = bounded(f"import sys; from sketchkit.cli.app import main; sys.exit(main(['eval', '--predictions', {str(bad)!r}]))")
    one_line_error(proc.returncode, proc.stderr, "bomb.h5")


# ===================================================================== 3. caption side files


def test_a_caption_link_leaving_the_folder_is_never_read(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_text(f"root:x:0:0:{SECRET} tree house")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "scene.svg")
    (folder / "scene.txt").symlink_to(secret)
    out = tmp_path / "out"
    code, _, err = run(capsys, "segment", folder / "scene.svg", "--model", "oracle", "--labels", "tree,house",
                       "--out", out, "--format", "json,svg")
    assert code == 0, err
    assert all(SECRET not in p.read_text() for p in out.iterdir())
    code, _, err = run(capsys, "segment", folder / "scene.svg", "--model", "oracle", "--out", tmp_path / "out2",
                       "--format", "json")
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and "scene.txt" in errors[0] and "outside" in errors[0], err
    assert SECRET not in err and "Traceback" not in err


def test_a_caption_file_is_not_read_when_labels_are_given(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "scene.svg")
    (folder / "scene.txt").write_bytes(b"\xc3\x28 not UTF-8, no BOM")  # an error, were it read
    code, _, err = run(capsys, "segment", folder / "scene.svg", "--model", "oracle", "--labels", "tree,house",
                       "--out", tmp_path / "out", "--format", "json")
    assert code == 0, err


def test_eval_reads_no_caption_file(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "scene.svg")
    (folder / "scene.txt").symlink_to("/etc/passwd")  # an error, were it read
    code, _, err = run(capsys, "eval", "--data", folder, "--model", "oracle")
    assert code == 0 and "Error" not in err, err


# =================================================================== 4. weights and adapters


def _zip_bomb(path: Path, inflated: int) -> Path:
    """A torch zip checkpoint whose one tensor record inflates to `inflated` bytes (deflated zeros)."""
    torch.save({"visual.proj": torch.zeros(4)}, path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, blob in entries:
            if "/data/" in info.filename:
                with dst.open(zipfile.ZipInfo(info.filename), "w", force_zip64=True) as f:
                    zeros = bytes(1 << 24)
                    for _ in range(inflated // len(zeros)):
                        f.write(zeros)
            else:
                dst.writestr(info, blob)
    return path


def test_a_zip_bomb_checkpoint_is_refused_before_loading(tmp_path, capsys):
    bomb = _zip_bomb(tmp_path / "bomb.pth", 2**28)  # tiny-random may unpack to 93 MiB
    code, _, err = run(capsys, "segment", EXAMPLE, "--backbone", "tiny-random", "--weights", bomb, "--labels", "tree",
                       "--out", tmp_path / "out")
    one_line_error(code, err, "bomb.pth", "uncompressed")


@pytest.mark.parametrize("kind", ["empty", "legacy", "pickle"])
def test_odd_weights_files_give_one_line(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "legacy":
        torch.save({"x": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    else:
        torch.save({"x": torch.zeros(2), "f": Path("/")}, path)
    code, _, err = run(capsys, "segment", EXAMPLE, "--backbone", "tiny-random", "--weights", path, "--labels", "tree",
                       "--out", tmp_path / "out")
    one_line_error(code, err, path.name)


def _adapter(tmp_path: Path, change) -> Path:
    from safetensors.torch import load_file, save_file

    from sketchkit.model.adapter import ADAPTER_KEY, save_adapter
    from sketchkit.model.factory import create_encoder

    path = tmp_path / "a.safetensors"
    save_adapter(create_encoder("tiny-random"), path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    change(tensors)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={ADAPTER_KEY: meta[ADAPTER_KEY]})
    return bad


def _many_prompts(t):
    t["prompts"] = torch.zeros(20_000, t["prompts"].shape[1])


def _all_nan(t):
    for value in t.values():
        value.fill_(float("nan"))


@pytest.mark.parametrize("case,fragment", [(_many_prompts, "prompts"), (_all_nan, "non-finite")])
def test_hostile_adapters_are_refused(tmp_path, capsys, case, fragment):
    bad = _adapter(tmp_path, case)
    code, _, err = run(capsys, "segment", EXAMPLE, "--model", "sketchkit", "--backbone", "tiny-random", "--adapter",
                       bad, "--labels", "tree,house", "--out", tmp_path / "out")
    one_line_error(code, err, "bad.safetensors", fragment)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("config", ["[" * 100_000, "7" * 5000])
def test_an_adapter_config_that_is_not_json_gives_one_line(tmp_path, capsys, config):
    from safetensors.torch import load_file, save_file

    from sketchkit.model.adapter import ADAPTER_KEY

    bad = _adapter(tmp_path, lambda t: None)
    save_file(load_file(str(bad)), str(bad), metadata={ADAPTER_KEY: config})
    code, _, err = run(capsys, "segment", EXAMPLE, "--model", "sketchkit", "--backbone", "tiny-random", "--adapter",
                       bad, "--labels", "tree", "--out", tmp_path / "out")
    one_line_error(code, err, "bad.safetensors", "adapter config: not valid JSON")


def test_an_allocation_failure_is_one_line(tmp_path, capsys, monkeypatch):
    """An input needing more memory than the process may have (`prlimit --as`): torch's allocator error or
    numpy's MemoryError is one line, exit 2, not an unexpected error."""
    import sketchkit.inference.methods as methods

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 20185088 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(methods.ClipSegmenter, "score", fail)
    code, _, err = run(capsys, "segment", EXAMPLE, "--backbone", "tiny-random", "--labels", "tree", "--out", tmp_path / "o")
    one_line_error(code, err, "not enough memory (an allocation of 19 MiB failed)")
    monkeypatch.setattr(methods.ClipSegmenter, "score", lambda *a, **k: np.empty(2**62, np.uint8))
    code, _, err = run(capsys, "segment", EXAMPLE, "--backbone", "tiny-random", "--labels", "tree", "--out", tmp_path / "o")
    one_line_error(code, err, "not enough memory")


def test_an_adapter_with_many_prompts_is_refused_before_allocating(tmp_path):
    from sketchkit.errors import WeightsError
    from sketchkit.model.adapter import read_adapter

    bad = _adapter(tmp_path, _many_prompts)
    with pytest.raises(WeightsError, match="prompts"):
        read_adapter(bad)


def test_non_finite_weights_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    from sketchkit.errors import WeightsError
    from sketchkit.model.weights import read_state_dict

    save_file({"visual.proj": torch.full((2, 2), float("inf"))}, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="non-finite"):
        read_state_dict(tmp_path / "w.safetensors")


# =========================================================================== 5. train --resume


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "scene.svg")
    shutil.copy(REPO / "examples" / "sailboat.svg", data / "boat.svg")
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--backbone", "tiny-random", "--max-steps", "1",
                 "--epochs", "3", "--captions-from-labels", "--quiet"]) == 0
    return out


def _state_edit(change):
    def edit(folder: Path):
        from safetensors import safe_open
        from safetensors.torch import save_file

        from sketchkit.training.state import STATE_KEY

        path = folder / "train_state.safetensors"
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()[STATE_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = change(tensors, meta)
        save_file(tensors, str(path), metadata={STATE_KEY: meta if isinstance(meta, str) else json.dumps(meta)})
    return edit


def _drop_key(t, m):
    del m["global_step"]
    return m


def _drop_param(t, m):
    del t[next(k for k in t if k.startswith("param."))]
    return m


def _wrong_shape(t, m):
    name = next(k for k in t if k.startswith("param."))
    t[name] = torch.zeros(3, 3, 3)
    return m


def _nan_param(t, m):
    name = next(k for k in t if k.startswith("param."))
    t[name] = torch.full_like(t[name], float("nan"))
    return m


def _rng_garbage(t, m):
    m["rng"] = {"torch": "!!", "numpy": [1, 2], "python": "x"}
    return m


def _negative_step(t, m):
    m["global_step"] = -5
    return m


def _meta(change):
    def edit(t, m):
        change(m)
        return m
    return edit


def _file(name, content: bytes):
    def edit(folder: Path):
        (folder / name).write_bytes(content)
    return edit


RESUME_CASES = {
    "missing key": (_state_edit(_drop_key), "train_state.safetensors"),
    "meta not an object": (_state_edit(lambda t, m: "[1, 2]"), "train_state.safetensors"),
    "missing parameter": (_state_edit(_drop_param), "train_state.safetensors"),
    "wrong shape": (_state_edit(_wrong_shape), "train_state.safetensors"),
    "NaN parameter": (_state_edit(_nan_param), "non-finite"),
    "RNG garbage": (_state_edit(_rng_garbage), "train_state.safetensors"),
    "negative step": (_state_edit(_negative_step), "train_state.safetensors"),
    "step 10**30": (_state_edit(_meta(lambda m: m.update(global_step=10**30))), "train_state.safetensors"),
    "optimizer lr text": (_state_edit(_meta(lambda m: m["optimizer"]["param_groups"][0].update(lr="fast"))),
                          "optimizer state is damaged"),
    "optimizer betas null": (_state_edit(_meta(lambda m: m["optimizer"]["param_groups"][0].update(betas=[0.9, None]))),
                            "optimizer state is damaged"),
    "scheduler garbage": (_state_edit(_meta(lambda m: m.update(scheduler={"last_epoch": "x"}))),
                          "scheduler state is damaged"),
    "config not UTF-8": (_file("config.json", b"{\"lr\": \xff\xfe}"), "config.json"),
    "config a list": (_file("config.json", b"[1, 2, 3]"), "config.json"),
    "config nested deep": (_file("config.json", b"[" * 100_000), "config.json"),
    "metadata a 5,000-digit number": (_state_edit(lambda t, m: "1" * 5000), "digits"),
    "metrics a 5,000-digit step": (_file("metrics.jsonl", b'{"step": ' + b"9" * 5000 + b'}\n{"step": 1}\n'), "metrics.jsonl"),
    "metrics binary": (_file("metrics.jsonl", bytes(range(256)) * 4), "metrics.jsonl"),
    "metrics not objects": (_file("metrics.jsonl", b"[1]\n2\n\"x\"\n"), "metrics.jsonl"),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_a_damaged_run_folder_gives_one_line_and_is_left_alone(run_folder, tmp_path, capsys, case):
    edit, fragment = RESUME_CASES[case]
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    edit(folder)
    before = snapshot(folder)
    code, _, err = run(capsys, "train", "--out", folder, "--resume", "--max-steps", "2")
    one_line_error(code, err, fragment)
    assert snapshot(folder) == before


@pytest.mark.parametrize("lr", ["1e20", "1e38"])  # a NaN loss at step 2; a step overflowing float32 at step 1
def test_training_stops_at_the_first_non_finite_loss(tmp_path, capsys, lr):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "scene.svg")
    shutil.copy(REPO / "examples" / "sailboat.svg", data / "boat.svg")
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--data", data, "--out", out, "--backbone", "tiny-random", "--max-steps", "4",
                       "--captions-from-labels", "--lr", lr, "--theta-lr", lr, "--quiet")
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and "diverged" in errors[0] and "Traceback" not in err, err
    for adapter in out.glob("*.safetensors"):
        from safetensors.torch import load_file

        assert all(torch.isfinite(v).all() for v in load_file(str(adapter)).values()), adapter
