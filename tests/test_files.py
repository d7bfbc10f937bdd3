"""Atomic writes: no half files, old content kept on failure, inputs and existing outputs protected."""

from __future__ import annotations

import os
import stat

import pytest

from sketchkit.errors import UsageError
from sketchkit.files import (
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_output_path,
    fsync_dir,
)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_atomic_write_creates_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_write(target) as f:
        f.write(b"\x00\x01payload")
        # while writing, the target does not exist yet; only the hidden temp file does
        assert not target.exists()
        assert [name.startswith(".out.bin.tmp-") for name in _leftovers(tmp_path)] == [True]
    assert target.read_bytes() == b"\x00\x01payload"
    assert _leftovers(tmp_path) == []


def test_atomic_write_text_mode_keeps_newlines_and_utf8(tmp_path):
    target = tmp_path / "t.txt"
    atomic_write_text(target, "arbre\nétoile\r\n")
    assert target.read_bytes() == "arbre\nétoile\r\n".encode("utf-8")


def test_exception_mid_write_keeps_old_content(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target, "w") as f:
            f.write("new content that must never appear")
            f.flush()
            raise RuntimeError("boom")
    assert target.read_text() == "old content"
    assert _leftovers(tmp_path) == []


def test_exception_without_existing_target_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_for_name_based_writers(tmp_path):
    target = tmp_path / "data.h5"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".data.h5.tmp-") and tmp.exists()
        tmp.write_bytes(b"written by name")
    assert target.read_bytes() == b"written by name"
    assert _leftovers(tmp_path) == []


def test_overwrite_false_refuses_existing(tmp_path):
    target = tmp_path / "exists.txt"
    target.write_text("original")
    with pytest.raises(UsageError, match="exists$") as refused:
        atomic_write_text(target, "replacement", overwrite=False)
    assert refused.value.hint == "overwrite"  # the CLI names --overwrite
    assert target.read_text() == "original"
    assert _leftovers(tmp_path) == []
    # overwrite=True (the default) replaces it
    atomic_write_bytes(target, b"replacement")
    assert target.read_bytes() == b"replacement"


def test_overwrite_false_refuses_file_appearing_during_write(tmp_path):
    target = tmp_path / "race.txt"
    with pytest.raises(UsageError, match="exists"):
        with atomic_write(target, "w", overwrite=False) as f:
            f.write("mine")
            target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert _leftovers(tmp_path) == []


def test_new_file_gets_umask_permissions_not_0600(tmp_path):
    target = atomic_write_bytes(tmp_path / "perm.bin", b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_safetensors_and_hdf5_outputs_get_umask_permissions(tmp_path):
    """safetensors writes its own 0600 file: atomic_path still publishes it with the usual mode."""
    import h5py
    import torch
    from safetensors.torch import save_file

    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_path(tmp_path / "a.safetensors") as tmp:
        save_file({"w": torch.ones(2)}, str(tmp))
    with atomic_path(tmp_path / "b.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f["x"] = [1]
    for name in ("a.safetensors", "b.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_bad_targets_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(UsageError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "out.txt", "x")
    with pytest.raises(UsageError, match="modes"):
        with atomic_write(tmp_path / "a.txt", "a"):
            pass


def test_check_output_path_refuses_input(tmp_path):
    sketch = tmp_path / "scene.svg"
    sketch.write_text("<svg/>")
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output_path(sketch, [sketch], overwrite=True)
    # same file under another spelling, through a symlink and through a hard link
    (tmp_path / "sub").mkdir()
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output_path(tmp_path / "sub" / ".." / "scene.svg", [sketch], overwrite=True)
    (tmp_path / "link.svg").symlink_to(sketch)
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output_path(tmp_path / "link.svg", [sketch], overwrite=True)
    os.link(sketch, tmp_path / "hard.svg")
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output_path(tmp_path / "hard.svg", [sketch], overwrite=True)
    assert sketch.read_text() == "<svg/>"


def test_check_output_path_existing_and_new(tmp_path):
    existing = tmp_path / "out.json"
    existing.write_text("{}")
    with pytest.raises(UsageError, match="exists$") as refused:
        check_output_path(existing, [tmp_path / "in.json"], overwrite=False)
    assert refused.value.hint == "overwrite"  # the CLI names --overwrite
    assert check_output_path(existing, [tmp_path / "in.json"], overwrite=True) == existing
    fresh = tmp_path / "fresh.json"
    assert check_output_path(fresh, [existing], overwrite=False) == fresh


def test_fsync_dir_is_best_effort(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "does-not-exist")  # must not raise
