"""sketchkit.data: finding sketches in folders and FrISS-style splits, and report-and-skip reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sketchkit.data import find_sketches, iter_sketches, load_partitions
from sketchkit.errors import InputError, UsageError
from sketchkit.types import Sketch

LINE_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"><path d="M 1 1 L 5 5"/></svg>'


def test_friss_splits_follow_the_partition_file(friss_dir, friss_test_files):
    table = json.loads((friss_dir / "data_partitions.json").read_text())
    for split, size in (("train", 364), ("val", 145), ("test", 500)):
        files = find_sketches(friss_dir, split=split)
        assert len(files) == size == len(table[split])
        assert [f.stem for f in files] == table[split]  # partition order, not sorted order
        assert all(f.parent == friss_dir / split and f.is_file() for f in files)
    assert find_sketches(friss_dir, split="test") == friss_test_files
    assert find_sketches(friss_dir, split="test", limit=7) == friss_test_files[:7]
    assert find_sketches(friss_dir, split="test", limit=0) == []


def test_friss_folder_without_split_lists_every_sketch_sorted(friss_dir):
    files = find_sketches(friss_dir)
    assert len(files) == 364 + 145 + 500  # metadata JSON (partitions, QuickDraw name map) left out
    assert files == sorted(files, key=lambda p: p.relative_to(friss_dir).parts)
    assert find_sketches(friss_dir, recursive=False) == []
    assert find_sketches(friss_dir / "val", recursive=False) == find_sketches(friss_dir / "val")


def _tree(root):
    (root / "b").mkdir(parents=True)
    (root / "a" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for relative in ("z.svg", "b/x.PNG", "a/deep/y.json", "a/w.ndjson", "a/v.npy", "a/u.jpeg", ".hidden/h.svg",
                     ".dot.svg", "notes.txt", "a/w.txt", "data_partitions.json"):
        (root / relative).write_text("x")
    return root


def test_folder_listing_is_deterministic_and_filtered(tmp_path):
    root = _tree(tmp_path / "set")
    names = [p.relative_to(root).as_posix() for p in find_sketches(root)]
    assert names == ["a/deep/y.json", "a/u.jpeg", "a/v.npy", "a/w.ndjson", "b/x.PNG", "z.svg"]
    assert [p.name for p in find_sketches(root, recursive=False)] == ["z.svg"]
    assert find_sketches(root, limit=2) == find_sketches(root)[:2]
    single = root / "notes.txt"
    assert find_sketches(single) == [single]  # a file is taken as given; reading it decides


def test_split_names_resolve_with_suffixes_and_subpaths(tmp_path):
    root = tmp_path / "ds"
    (root / "test").mkdir(parents=True)
    (root / "test" / "one.json").write_text("{}")
    (root / "test" / "two.svg").write_text(LINE_SVG)
    (root / "three.npy").write_text("x")
    (root / "data_partitions.json").write_text(json.dumps({"test": ["two.svg", "one", "three"], "train": []}))
    assert [p.relative_to(root).as_posix() for p in find_sketches(root, split="test")] == \
        ["test/two.svg", "test/one.json", "three.npy"]
    assert find_sketches(root, split="train") == []
    assert load_partitions(root) == {"test": ["two.svg", "one", "three"], "train": []}


def test_split_errors_are_clear(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(InputError, match="no data_partitions.json"):
        find_sketches(root, split="test")
    (root / "data_partitions.json").write_text(json.dumps({"train": ["a", "b"], "test": []}))
    with pytest.raises(InputError, match="split 'val' is not in data_partitions.json; it has 'train', 'test'"):
        find_sketches(root, split="val")
    with pytest.raises(InputError, match="2 of the 2 sketches of split 'train' are missing, e.g. 'a'"):
        find_sketches(root, split="train")
    (root / "data_partitions.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        find_sketches(root, split="train")
    (root / "data_partitions.json").write_text(json.dumps({"train": "a"}))
    with pytest.raises(InputError, match="lists of names"):
        find_sketches(root, split="train")
    with pytest.raises(InputError, match="not found"):
        find_sketches(tmp_path / "missing")
    (root / "s.svg").write_text(LINE_SVG)
    with pytest.raises(UsageError, match="needs a dataset folder"):
        find_sketches(root / "s.svg", split="test")
    with pytest.raises(UsageError, match="limit"):
        find_sketches(root, limit=-1)


def test_iter_sketches_reports_and_skips(tmp_path, friss_test_files):
    good = tmp_path / "good.svg"
    good.write_text(LINE_SVG)
    broken = tmp_path / "broken.json"
    broken.write_text('{"scene_strokes": [[1, 2')
    missing = tmp_path / "missing.svg"
    paths = [good, broken, friss_test_files[0], missing]
    results = list(iter_sketches(paths))
    assert [p for p, _ in results] == paths
    kinds = [type(item) for _, item in results]
    assert kinds == [Sketch, InputError, Sketch, InputError]
    assert str(broken) in str(results[1][1]) and "not valid JSON" in str(results[1][1])
    assert "file not found" in str(results[3][1])
    np.testing.assert_array_equal(results[0][1].strokes[0], [[1, 1], [5, 5]])
    captioned = list(iter_sketches([good], caption="a line"))
    assert captioned[0][1].caption == "a line"


def test_folders_are_walked_lazily_in_sorted_order_without_following_folder_links(tmp_path):
    from sketchkit.data import iter_folder_files

    root = _tree(tmp_path / "set")
    (root / "linked").symlink_to(root / "a", target_is_directory=True)  # a folder link: not entered
    (root / "alias.svg").symlink_to(root / "z.svg")  # a file link: read under its own name
    walk = iter_folder_files(root)
    assert next(walk) == root / "a" / "deep" / "y.json", "a generator: the first file comes before the walk ends"
    names = [p.relative_to(root).as_posix() for p in [root / "a" / "deep" / "y.json", *walk]]
    assert names == ["a/deep/y.json", "a/u.jpeg", "a/v.npy", "a/w.ndjson", "alias.svg", "b/x.PNG", "z.svg"]
    assert [p.relative_to(root).as_posix() for p in iter_folder_files(root, exclude=[root / "a"])] == \
        ["alias.svg", "b/x.PNG", "z.svg"]


@pytest.mark.parametrize("name", ["../outside", "../../etc/passwd", "/etc/passwd", "test/../../outside"])
def test_partition_names_may_not_leave_the_dataset_folder(tmp_path, name):
    root = tmp_path / "ds"
    (root / "test").mkdir(parents=True)
    (tmp_path / "outside.json").write_text("{}")
    (root / "data_partitions.json").write_text(json.dumps({"test": [name]}))
    with pytest.raises(InputError, match="outside the dataset folder"):
        find_sketches(root, split="test")
