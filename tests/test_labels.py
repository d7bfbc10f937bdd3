"""sketchkit.labels: verbatim label lists and @files (the real class lists), caption -> categories,
captions from FrISS instance names and back, the bundled vocabulary's provenance, prompts."""

from __future__ import annotations

import json

import pytest

from sketchkit.errors import InputError, UsageError
from sketchkit.labels import (
    AMBIGUOUS_NOUNS,
    PROMPT_ENSEMBLE,
    SCENE_WORDS,
    build_vocabulary,
    caption_from_names,
    labels_from_caption,
    load_vocabulary,
    parse_labels,
    prompt_for,
)

# ------------------------------------------------------------------------------------ label lists


def test_parse_labels_verbatim_stripped_deduplicated():
    assert parse_labels("tree, house,sun") == ["tree", "house", "sun"]
    assert parse_labels("  tree ,, house,tree , sun , ") == ["tree", "house", "sun"]
    # verbatim: no singularising, no case change
    assert parse_labels("bus, stairs,eyeglasses,Traffic  Light") == ["bus", "stairs", "eyeglasses", "Traffic Light"]


def test_parse_labels_rejects_empty_specs():
    for spec in ("", " , ,", "@", "@  "):
        with pytest.raises(UsageError):
            parse_labels(spec)
    with pytest.raises(UsageError, match="must be a string"):
        parse_labels(["tree"])


def test_parse_labels_real_class_lists(shared_data):
    lists = shared_data / "class_lists"
    qd = parse_labels(f"@{lists / 'qd.txt'}")
    assert len(qd) == 345  # qd.txt has trailing spaces on some lines: stripped, not new names
    assert qd[:3] == ["The Eiffel Tower", "The Great Wall of China", "The Mona Lisa"]
    assert {"bus", "eyeglasses", "stairs", "flip flops", "teddy-bear"} <= set(qd)
    assert len(parse_labels(f"@{lists / 'complete.txt'}")) == 488
    assert parse_labels(f"@{lists / 'sky-qd.txt'}")[:2] == ["airplane", "apple"]


def test_parse_labels_file_comments_and_errors(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# my classes\ntree\n\n  house  # a comment\ntree\n   \nsun\n")
    assert parse_labels(f"@{f}") == ["tree", "house", "sun"]
    assert load_vocabulary(f) == ["tree", "house", "sun"]
    with pytest.raises(InputError, match="label file not found") as info:
        parse_labels(f"@{tmp_path / 'missing.txt'}")
    assert str(tmp_path / "missing.txt") in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "comments.txt").write_text("# nothing but comments\n\n")
    with pytest.raises(InputError, match="no labels in the file"):
        parse_labels(f"@{tmp_path / 'comments.txt'}")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        parse_labels(f"@{tmp_path / 'latin1.txt'}")
    with pytest.raises(InputError, match="is a directory"):
        load_vocabulary(tmp_path)


def test_bundled_vocabulary_is_the_documented_union(shared_data):
    lists = sorted((shared_data / "class_lists").glob("*.txt"))
    mapping = shared_data / "friss" / "friss_to_qd_mappings.json"
    vocab = load_vocabulary()
    assert vocab == build_vocabulary(lists, [mapping])  # the file is exactly what its header says
    assert vocab == sorted(vocab) and len(set(vocab)) == len(vocab)
    assert all(name == name.lower().strip() for name in vocab)
    for path in lists:
        assert {n.lower() for n in parse_labels(f"@{path}")} <= set(vocab)
    names = json.loads(mapping.read_text())["friss_to_qd"]
    assert set(names) | set(names.values()) | set(SCENE_WORDS) <= set(vocab)
    assert "people" not in vocab and "person" in vocab  # plurals reach "person" through the caption rules
    load_vocabulary().append("mutated")
    assert "mutated" not in load_vocabulary()  # callers get a copy


# ----------------------------------------------------------------------------- caption -> labels


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("A giraffe and a zebra are standing on the grass.", ["giraffe", "zebra", "grass"]),
        ("a girl flies a kite near a tree", ["girl", "kite", "tree"]),
        ("an airplane, smoke and five seagulls", ["airplane", "smoke", "seagull"]),
        ("The bus stops at the traffic lights.", ["bus", "traffic light"]),  # phrase before "light"
        ("Two fire hydrants on the sidewalk", ["fire hydrant", "sidewalk"]),
        ("two people play frisbee near the buses", ["person", "frisbee", "bus"]),
        ("the man's kite is over the palm trees", ["man", "kite", "palm tree"]),
        ("A teddy bear in a t-shirt", ["teddy-bear", "t-shirt"]),  # hyphen or space, vocabulary spelling
        ("a street light next to a fire truck", ["streetlight", "firetruck"]),  # written as one word
        ("An orange cat sits on a stone bench", ["cat", "bench"]),  # modifiers of a head noun
        ("a man saw a dog near the saw", ["man", "dog", "saw"]),  # verb "saw" skipped, noun kept
        ("a dog stands next to the stand", ["dog", "stand"]),
        ("Children and their dogs, four music notes", ["child", "dog", "music note"]),
        ("Tree, tree and TREES", ["tree"]),
        ("nothing to see here", []),
        ("", []),
    ],
)
def test_labels_from_caption(caption, expected):
    assert labels_from_caption(caption) == expected


def test_longest_phrase_wins():
    vocab = ["light", "traffic", "traffic light", "fire", "hydrant", "fire hydrant", "sun"]
    assert labels_from_caption("traffic lights, a fire hydrant and the sun", vocab) == ["traffic light", "fire hydrant", "sun"]
    assert labels_from_caption("traffic and light", vocab) == ["traffic", "light"]  # not adjacent: no phrase
    assert labels_from_caption("the fire, hydrant", vocab) == ["fire", "hydrant"]  # punctuation breaks it


def test_singularise_only_into_the_vocabulary():
    assert labels_from_caption("a bus, glasses and five seagulls", ["bus", "glasses", "seagull"]) == ["bus", "glasses", "seagull"]
    assert labels_from_caption("glasses", ["glass"]) == ["glass"]
    assert labels_from_caption("buses", ["bus"]) == ["bus"]
    assert labels_from_caption("people walking", ["person"]) == ["person"]
    assert labels_from_caption("people walking", ["people", "person"]) == ["people"]  # as written wins
    assert labels_from_caption("stairs and eyeglasses", ["stair", "eyeglasses"]) == ["stair", "eyeglasses"]
    assert labels_from_caption("this is his bus") == ["bus"]


def test_vocabulary_spelling_and_max_labels():
    assert labels_from_caption("a TRAFFIC LIGHT and The Eiffel Tower", ["Traffic Light", "The Eiffel Tower"]) == [
        "Traffic Light", "The Eiffel Tower"]
    caption = "a tree, a house, the sun, a cloud and a dog"
    assert labels_from_caption(caption, max_labels=3) == ["tree", "house", "sun"]
    assert labels_from_caption(caption, max_labels=10) == ["tree", "house", "sun", "cloud", "dog"]
    with pytest.raises(UsageError):
        labels_from_caption(caption, max_labels=0)
    with pytest.raises(InputError):
        labels_from_caption(None)


# ----------------------------------------------------------------------------- labels -> caption


def test_caption_from_names():
    assert caption_from_names(["airplane", "smoke"] + ["seagull"] * 5) == "an airplane, smoke and five seagulls"
    assert caption_from_names(["tree"]) == "a tree"
    assert caption_from_names(["cat", "dog", "dog"]) == "a cat and two dogs"
    assert caption_from_names(["umbrella", "grapes", "grapes", "peas", "peas"]) == "an umbrella, grapes and peas"
    assert caption_from_names(["teddy-bear", "teddy-bear", "the eiffel tower", " ", "hour glass"]) == (
        "two teddy-bears, the eiffel tower and an hour glass")
    assert caption_from_names([]) == ""


def test_every_vocabulary_name_survives_a_caption_round_trip():
    for name in load_vocabulary():
        for count in (1, 3):
            caption = caption_from_names([name] * count)
            expected = [] if name in AMBIGUOUS_NOUNS and " " not in caption else [name]  # "matches": no determiner
            assert labels_from_caption(caption) == expected, (name, caption)


def test_friss_captions_round_trip(friss_test_files):
    """Every FrISS test scene: caption from its instance names, then the names back, in order."""
    for path in friss_test_files:
        names = json.loads(path.read_text())["gt_class_names"]
        caption = caption_from_names(names)
        assert labels_from_caption(caption) == list(dict.fromkeys(names)), (path.name, caption)


# ---------------------------------------------------------------------------------------- prompts


def test_prompts():
    assert prompt_for("tree") == "A sketch of a tree."
    assert PROMPT_ENSEMBLE[0] == "A sketch of a {}."  # the paper's prompt, used when there is no ensemble
    assert 6 <= len(PROMPT_ENSEMBLE) <= 8 and len(set(PROMPT_ENSEMBLE)) == len(PROMPT_ENSEMBLE)
    assert all(t.count("{}") == 1 and any(w in t.lower() for w in ("sketch", "draw", "doodle")) for t in PROMPT_ENSEMBLE)
    assert [prompt_for("fire hydrant", t) for t in PROMPT_ENSEMBLE[:3]] == [
        "A sketch of a fire hydrant.", "A drawing of a fire hydrant.", "A line drawing of the fire hydrant."]
    assert prompt_for("The Eiffel Tower") == "A sketch of The Eiffel Tower."  # its own article replaces "a"
    assert prompt_for("the sun", "A line drawing of the {}.") == "A line drawing of the sun."
    assert prompt_for("  traffic   light ") == "A sketch of a traffic light."
    assert prompt_for("apple") == "A sketch of a apple."  # the paper's prompt as written
    with pytest.raises(UsageError):
        prompt_for("tree", "A sketch.")
    with pytest.raises(UsageError):
        prompt_for("  ")
