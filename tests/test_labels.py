"""Label lists, caption -> categories, and captions from instance names."""

from __future__ import annotations

import pytest

from sketchkit.errors import InputError, UsageError
from sketchkit.labels import caption_from_names, labels_from_caption, load_vocabulary, parse_labels, prompt_for


def test_parse_labels_verbatim_and_deduplicated():
    assert parse_labels(" tree, house,sun,,tree ") == ["tree", "house", "sun"]
    assert parse_labels("bus,stairs,eyeglasses") == ["bus", "stairs", "eyeglasses"]


def test_parse_labels_file(shared_data, tmp_path):
    names = parse_labels(f"@{shared_data / 'class_lists' / 'qd.txt'}")
    assert len(names) == 345 and "airplane" in names
    f = tmp_path / "l.txt"
    f.write_text("# my classes\ntree\n\nhouse  # a comment\n")
    assert parse_labels(f"@{f}") == ["tree", "house"]
    with pytest.raises(InputError, match="cannot read labels file"):
        parse_labels(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(UsageError):
        parse_labels(" , ")


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("A giraffe and a zebra are standing on the grass.", ["giraffe", "zebra", "grass"]),
        ("a girl flies a kite near a tree", ["girl", "kite", "tree"]),
        ("an airplane, smoke and five seagulls", ["airplane", "smoke", "seagull"]),
        ("The bus stops at the traffic lights", ["bus", "traffic light"]),  # phrase beats 'light'
        ("Two fire hydrants", ["fire hydrant"]),
    ],
)
def test_labels_from_caption(caption, expected):
    assert labels_from_caption(caption) == expected


def test_singularise_only_into_the_vocabulary():
    vocab = ["bus", "glasses", "seagull"]
    assert labels_from_caption("buses, glasses and seagulls", vocab) == ["bus", "glasses", "seagull"]
    assert labels_from_caption("children play", ["child"]) == ["child"]
    assert labels_from_caption("a tree and a tree and a dog", ["tree", "dog"], max_labels=1) == ["tree"]


def test_caption_from_names():
    assert caption_from_names(["airplane", "smoke"] + ["seagull"] * 5) == "an airplane, smoke and five seagulls"
    assert caption_from_names(["tree"]) == "a tree"
    assert caption_from_names(["cat", "dog", "dog"]) == "a cat and two dogs"


def test_bundled_vocabulary_and_prompts(shared_data):
    vocab = load_vocabulary()
    for path in (shared_data / "class_lists").glob("*.txt"):
        for name in path.read_text().splitlines():
            if name.strip():
                assert name.strip().lower() in vocab
    assert prompt_for("tree") == "A sketch of a tree."
