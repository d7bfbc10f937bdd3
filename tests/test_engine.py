"""The inference engine: one loop for every command (labels, threshold, batches, prefetch, errors)."""

from __future__ import annotations

import threading
import time

import pytest

from sketchkit.inference.engine import prefetch


def test_prefetch_keeps_order_and_loads_ahead():
    loaded_third = threading.Event()

    def load(item):
        if item == 3:
            loaded_third.set()
        return item * 10

    stream = prefetch(range(5), load, depth=2)
    assert next(stream) == 0
    # while the consumer holds item 0, the loader fills its queue of 2 and starts on item 3
    assert loaded_third.wait(timeout=10)
    assert list(stream) == [10, 20, 30, 40]


def test_prefetch_reraises_where_the_load_failed():
    def load(item):
        if item == 2:
            raise ValueError("bad item 2")
        return item

    got = []
    with pytest.raises(ValueError, match="bad item 2"):
        for value in prefetch(range(5), load):
            got.append(value)
    assert got == [0, 1]


def test_prefetch_stops_its_thread_when_closed_early():
    started = []

    def load(item):
        started.append(item)
        return item

    before = threading.active_count()
    stream = prefetch(range(1000), load, depth=1)
    assert next(stream) == 0
    stream.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert len(started) < 1000


# ---- the engine and its label policies ---------------------------------------------------------------------

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sketchkit  # noqa: E402
from sketchkit.cli.app import main  # noqa: E402
from sketchkit.errors import InputError, UsageError  # noqa: E402
from sketchkit.evaluation import evaluate  # noqa: E402
from sketchkit.inference import (Engine, LabelPolicy, ModelSpec, OracleSegmenter, build_segmenters,  # noqa: E402
                                 segmenter_on)
from sketchkit.types import Sketch  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.svg"))


def lines_sketch(labels, caption=None, source=None) -> Sketch:
    strokes = tuple(np.array([[0.0, 10.0 * i], [100.0, 10.0 * i]]) for i in range(len(labels)))
    return Sketch(strokes=strokes, width=100.0, height=10.0 * len(labels), labels=tuple(labels), caption=caption,
                  source=source)


def test_label_policies_each_source_and_the_first_that_yields():
    sketch = lines_sketch(("cabinet", "lamp", None), caption="a cat sits on a mat near a tree")
    assert LabelPolicy.fixed(["b", "a", "b", " "]).labels_for(sketch) == ["b", "a"]
    assert LabelPolicy.ground_truth({"cabinet": "dresser"}).labels_for(sketch) == ["dresser", "lamp"]
    assert LabelPolicy.from_caption().labels_for(sketch) == ["cat", "tree"]
    assert LabelPolicy.from_caption("a dog and a house").labels_for(sketch) == ["dog", "house"]
    assert LabelPolicy.from_caption(max_labels=1).labels_for(sketch) == ["cat"]
    unlabelled = lines_sketch((None, None), caption="a boat on the sea")
    assert LabelPolicy(("ground-truth", "caption")).labels_for(unlabelled) == ["boat", "sea"]
    with pytest.raises(InputError, match="no labels") as info:
        LabelPolicy.ground_truth().labels_for(lines_sketch((None,), source="x.svg"))
    assert info.value.hint == "labels" and str(info.value).startswith("x.svg: ")
    with pytest.raises(InputError, match="no known category") as info:
        LabelPolicy.from_caption("zzz qqq").labels_for(unlabelled)
    assert info.value.hint == "vocabulary"
    with pytest.raises(UsageError):
        LabelPolicy.fixed([" ", ""])


def test_stream_reports_bad_items_skips_and_keeps_order(tiny_encoder):
    good = sketchkit.read_sketch(EXAMPLES[0])
    engine = Engine(segmenter_on("clip-surgery", tiny_encoder), labels=LabelPolicy.fixed(["house", "tree"]), batch_size=2)

    def load(item):
        if item == "skip":
            return None
        if item == "bad":
            raise InputError("broken file", "bad.svg")
        return good

    outcomes = list(engine.stream(["a", "bad", "skip", "b", "c"], load))
    assert [o.item for o in outcomes] == ["a", "bad", "skip", "b", "c"]
    assert [o.skipped for o in outcomes] == [False, False, True, False, False]
    assert "broken file" in str(outcomes[1].error) and outcomes[1].result is None
    assert all(o.result.labels == ("house", "tree") for o in outcomes if o.result is not None)
    np.testing.assert_array_equal(outcomes[0].result.scores, outcomes[4].result.scores)
    with pytest.raises(InputError):
        list(Engine(engine.segmenter, labels=engine.policy, strict=True).stream(["bad"], load))
    timings = engine.timings.as_dict()
    assert timings["encode"] > 0 and timings["raster"] > 0 and timings["vote"] > 0


def test_prefetch_gives_the_serial_results(tiny_encoder):
    segmenter = segmenter_on("clip-surgery", tiny_encoder)
    policy = LabelPolicy.fixed(["house", "tree", "sun"])
    serial = list(Engine(segmenter, labels=policy, batch_size=2).stream(EXAMPLES, sketchkit.read_sketch))
    fetched = Engine(segmenter, labels=policy, batch_size=2, prefetch=2)
    ahead = list(fetched.stream(EXAMPLES, sketchkit.read_sketch))
    for a, b in zip(serial, ahead):
        np.testing.assert_array_equal(a.result.votes.labels, b.result.votes.labels)
        np.testing.assert_allclose(a.result.scores, b.result.scores)
    assert fetched.timings.wait >= 0


def test_a_method_refusing_one_sketch_fails_only_that_sketch():
    labelled = sketchkit.read_sketch(EXAMPLES[0])
    unlabelled = Sketch(strokes=labelled.strokes, width=labelled.width, height=labelled.height, source="u.svg")
    engine = Engine(OracleSegmenter(), labels=LabelPolicy.fixed(["house", "tree"]), batch_size=4)
    outcomes = list(engine.stream([labelled, unlabelled, labelled], lambda s: s))
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert "ground-truth stroke labels" in str(outcomes[1].error)


def test_threshold_reaches_eval():
    sketches = [sketchkit.read_sketch(p) for p in EXAMPLES]
    plain = evaluate(sketches, [_Flat()]).to_dict()
    cut = evaluate(sketches, [_Flat()], threshold=0.5).to_dict()
    assert plain["results"]["flat"]["per_sketch"]["acc_p"] > 0  # argmax of equal scores: the first class
    # with the threshold every (constant, so min-max 0) map stays below it: every pixel is background
    assert cut["results"]["flat"]["per_sketch"]["acc_p"] == 0.0 and cut["results"]["flat"]["per_sketch"]["acc_s"] == 0.0
    assert cut["results"]["flat"]["threshold"] == 0.5 and cut["data"]["threshold"] == 0.5


class _Flat(OracleSegmenter):
    """Equal scores for every class everywhere."""

    name = "flat"

    def score(self, features, labels):
        return np.zeros_like(super().score(features, labels))

    def score_at(self, features, labels, transform, strokes):
        return np.zeros_like(super().score_at(features, labels, transform, strokes))


def test_eval_of_a_baseline_does_not_depend_on_an_adapter_model_beside_it(tmp_path, friss_test_files):
    """Regression: `eval --model sketchkit,clip-surgery --adapter A` scored clip-surgery on the adapted encoder."""
    from sketchkit.model.adapter import save_adapter
    from sketchkit.model.factory import create_encoder

    encoder = create_encoder("tiny-random")
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if name in encoder.trainable_names():
                param.add_(torch.randn_like(param) * 0.5)  # a strongly trained adapter
    adapter = save_adapter(encoder, tmp_path / "a.safetensors")
    sketches = [sketchkit.read_sketch(p) for p in friss_test_files[:4]]
    spec = ModelSpec("clip-surgery", adapter=str(adapter), device="cpu")
    together = build_segmenters(["sketchkit", "clip-surgery"], spec)
    alone = build_segmenters(["clip-surgery"], ModelSpec("clip-surgery", "tiny-random", device="cpu"))
    assert together[0].encoder is not together[1].encoder
    first = evaluate(sketches, together).to_dict()["results"]["clip-surgery"]
    second = evaluate(sketches, alone).to_dict()["results"]["clip-surgery"]
    assert first["per_sketch"] == second["per_sketch"] and first["dataset"] == second["dataset"]
    reverse = build_segmenters(["clip-surgery", "sketchkit"], spec)
    assert evaluate(sketches, reverse).to_dict()["results"]["clip-surgery"]["per_sketch"] == second["per_sketch"]


def test_adapter_selects_its_backbone(tmp_path, monkeypatch, capsys):
    """Regression: an adapter trained on tiny-random made `segment` try to download ViT-B/16."""
    from sketchkit.model.adapter import save_adapter
    from sketchkit.model.factory import create_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    adapter = save_adapter(create_encoder("tiny-random"), tmp_path / "tiny.safetensors")
    code = main(["segment", str(EXAMPLES[0]), "--adapter", str(adapter), "--labels", "house,tree",
                 "--out", str(tmp_path / "o.json"), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sketchkit on tiny-random" in Path(out.split()[0]).read_text()
    code = main(["segment", str(EXAMPLES[0]), "--adapter", str(adapter), "--backbone", "ViT-B-16", "--labels", "house",
                 "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and "trained on backbone 'tiny-random', not 'ViT-B-16'" in err and "--backbone" in err


@pytest.mark.parametrize("args", [
    ["segment", "--bogus"],                                  # unknown option
    ["segmnt"],                                              # unknown command
    ["segment"],                                             # missing argument
    ["segment", "x.svg", "--batch-size", "0"],               # value out of range
    ["eval", "--eval-size", "big"],                          # value of the wrong type
])
def test_usage_errors_exit_2_with_typers_message(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Error:" in err and "unexpected" not in err and "Traceback" not in err


def test_brackets_in_messages_and_names_are_printed_as_written(tmp_path, capsys):
    """Regression: messages went through Rich markup, so '[red]' and '[number, number]' vanished."""
    missing = tmp_path / "nofile[red].svg"
    code = main(["convert", str(missing), str(tmp_path / "o.svg")])
    err = capsys.readouterr().err
    assert code == 2 and "nofile[red].svg" in err
    bad = tmp_path / "rows.json"
    bad.write_text('{"scene_strokes": [[1, 2, 0, 5]], "img_w": 10, "img_h": 10}')
    code = main(["convert", str(bad), str(tmp_path / "o2.svg")])
    err = capsys.readouterr().err
    assert code == 2 and "[" in err and "]" in err, err
    labelled = tmp_path / "a[b].svg"
    labelled.write_bytes(EXAMPLES[0].read_bytes())
    code = main(["segment", str(labelled), "--model", "oracle", "--labels", "[house],tree", "--out", str(tmp_path / "out"),
                 "--format", "json", "-q"])
    out = capsys.readouterr().out.strip()
    assert code == 0 and out.endswith("a[b].json") and Path(out).is_file()
    assert "[house]" in Path(out).read_text()
