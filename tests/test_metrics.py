"""sketchkit.metrics: tiny maps whose expected values are worked out by hand in the comments, a
two-sketch set where the paper's per-sketch mean and CAVT's pooled confusion disagree, and real
FrISS sketches checked against a plain per-class mask computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sketchkit.errors import InputError, UsageError
from sketchkit.metrics import ConfusionMatrix, confusion, score_sketch
from sketchkit.scores import Evaluator

NAMES = ["tree", "house", "sun"]  # class indices 0, 1, 2

# 4x4 sketch, -1 = paper (not evaluated). The truth holds tree (4 px) and house (4 px); the
# prediction never says house on an evaluated pixel, says sun (absent from the truth) twice,
# and -1 (nothing) once. Predictions on paper pixels must be ignored.
TRUE_A = np.array([
    [0, 0, 0, -1],
    [1, 1, 0, -1],
    [1, 1, -1, -1],
    [-1, -1, -1, -1],
])
PRED_A = np.array([
    [0, 0, 2, 1],
    [0, 2, 0, 0],
    [-1, 0, 2, 2],
    [1, 1, 1, 1],
])
# evaluated pixels, truth -> prediction:
#   (0,0) tree->tree ok   (0,1) tree->tree ok   (0,2) tree->sun      (1,2) tree->tree ok
#   (1,0) house->tree     (1,1) house->sun      (2,0) house->nothing (2,1) house->tree
# Acc@P = 3 / 8
# confusion rows = truth, cols = tree, house, sun, nothing:
#   tree  [3, 0, 1, 0]    house [2, 0, 1, 1]    sun [0, 0, 0, 0]
# IoU tree:  tp 3, true 4, predicted 5 -> union 6 -> 1/2
# IoU house: tp 0, true 4, predicted 0 -> union 4 -> 0     (in the truth, never predicted)
# IoU sun:   tp 0, true 0, predicted 2 -> union 2 -> 0     (predicted, absent from the truth)
# mIoU = (1/2 + 0 + 0) / 3 = 1/6
# strokes: the -1 truths (strokes 1 and 5) are excluded; 0->0 ok, 1->2, 1->1 ok, 1->-1 -> 2/4
PRED_STROKES_A = np.array([0, 0, 2, 1, -1, 0])
TRUE_STROKES_A = np.array([0, -1, 1, 1, 1, -1])


def test_hand_computed_sketch():
    s = score_sketch(PRED_A, TRUE_A, PRED_STROKES_A, TRUE_STROKES_A, 3, name="A")
    assert s.acc_p == pytest.approx(3 / 8)
    assert s.miou == pytest.approx(1 / 6)
    assert s.acc_s == pytest.approx(2 / 4)
    assert (s.pixels, s.pixels_correct, s.strokes, s.strokes_correct, s.classes) == (8, 3, 4, 2, 3)
    assert s.name == "A"


def test_hand_computed_confusion_layout():
    assert confusion(PRED_A, TRUE_A, 3).tolist() == [[3, 0, 1, 0], [2, 0, 1, 1], [0, 0, 0, 0]]
    assert confusion(PRED_STROKES_A, TRUE_STROKES_A, 3).tolist() == [[1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
    m = ConfusionMatrix.of_sketch(PRED_A, TRUE_A, PRED_STROKES_A, TRUE_STROKES_A, num_classes=3)
    np.testing.assert_allclose(m.class_iou(), [1 / 2, 0, 0])
    np.testing.assert_allclose(m.class_accuracy(), [3 / 4, 0, np.nan])  # sun: not in the truth
    assert m.support().tolist() == [4, 4, 0] and m.predicted().tolist() == [5, 0, 2]


def test_class_predicted_but_absent_from_truth_lowers_miou():
    # 2x2, all tree; half predicted sun. IoU tree 2/4, IoU sun 0/2 -> mIoU 1/4 (not 1/2)
    true = np.zeros((2, 2), dtype=int)
    pred = np.array([[0, 0], [2, 2]])
    s = score_sketch(pred, true, None, None, 3)
    assert s.miou == pytest.approx(1 / 4)
    assert s.acc_p == pytest.approx(1 / 2)
    assert math.isnan(s.acc_s) and s.strokes == 0


def test_unlabelled_strokes_are_excluded():
    # labelled strokes 0, 1, 3: 0->0 ok, 1->1 ok, 1->0 wrong; stroke 2 (truth -1) does not count
    s = score_sketch(None, None, np.array([0, 1, 1, 0]), np.array([0, 1, -1, 1]), 2)
    assert s.acc_s == pytest.approx(2 / 3)
    assert s.strokes == 3
    assert math.isnan(s.acc_p) and math.isnan(s.miou)
    only_unlabelled = score_sketch(None, None, np.array([1, 0]), np.array([-1, -1]), 2)
    assert math.isnan(only_unlabelled.acc_s) and only_unlabelled.strokes == 0


# Two 3x3 sketches, classes tree (0), house (1), sun (2).
# Sketch 1: two tree pixels, both right; one stroke, right.
#   Acc@P 1, mIoU 1 (only tree has a union), Acc@S 1
TRUE_1 = np.array([[0, 0, -1], [-1, -1, -1], [-1, -1, -1]])
PRED_1 = np.array([[0, 0, 1], [1, 1, 1], [2, 2, 2]])
# Sketch 2: six house pixels (top row right, middle row called tree), two tree pixels (right).
#   Acc@P 5/8; confusion tree [2, 0, 0, 0], house [3, 3, 0, 0]
#   IoU tree: tp 2, true 2, predicted 5 -> 2/5; IoU house: tp 3, true 6, predicted 3 -> 1/2
#   mIoU (2/5 + 1/2) / 2 = 9/20; sun predicted only on paper -> no union, not averaged
#   strokes: 1->1 ok, 1->0, 0->0 ok, (-1 excluded) -> 2/3
TRUE_2 = np.array([[1, 1, 1], [1, 1, 1], [0, 0, -1]])
PRED_2 = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 2]])
STROKES = [(np.array([0]), np.array([0])), (np.array([1, 0, 0, 2]), np.array([1, 1, 0, -1]))]
# Per sketch (paper): Acc@P (1 + 5/8) / 2 = 13/16; mIoU (1 + 9/20) / 2 = 29/40; Acc@S (1 + 2/3) / 2 = 5/6
# Pooled (CAVT): tree [4, 0, 0, 0], house [3, 3, 0, 0]; 10 pixels, 7 right -> Acc@P 7/10
#   IoU tree: tp 4, true 4, predicted 7 -> 4/7; IoU house: tp 3, true 6, predicted 3 -> 1/2
#   mIoU (4/7 + 1/2) / 2 = 15/28; mean class acc (4/4 + 3/6) / 2 = 3/4
#   fw-IoU 4/10 * 4/7 + 6/10 * 1/2 = 37/70; strokes tree [2, 0, 0, 0], house [1, 1, 0, 0] -> 3/4


def _two_sketch_evaluator() -> Evaluator:
    ev = Evaluator(NAMES)
    for (pred, true), (pred_s, true_s), name in zip([(PRED_1, TRUE_1), (PRED_2, TRUE_2)], STROKES, ["one", "two"]):
        ev.add(pred, true, pred_s, true_s, name=name)
    return ev


def test_per_sketch_mean_differs_from_pooled_confusion():
    ev = _two_sketch_evaluator()
    second = ev.sketch_scores[1]
    assert (second.acc_p, second.miou, second.acc_s) == pytest.approx((5 / 8, 9 / 20, 2 / 3))
    summary = ev.summary()
    assert summary.per_sketch == pytest.approx({"acc_p": 13 / 16, "acc_s": 5 / 6, "miou": 29 / 40})
    assert summary.dataset == pytest.approx(
        {"acc_p": 7 / 10, "acc_s": 3 / 4, "mean_class_acc": 3 / 4, "miou": 15 / 28, "fw_iou": 37 / 70}
    )
    assert ev.pixel_confusion.tolist() == [[4, 0, 0, 0], [3, 3, 0, 0], [0, 0, 0, 0]]
    out = summary.to_dict()
    assert out["per_sketch"]["miou"] == pytest.approx(72.5)
    assert out["dataset"]["miou"] == pytest.approx(100 * 15 / 28)
    assert out["counts"] == {"sketches": 2, "sketches_scored": {"acc_p": 2, "acc_s": 2, "miou": 2},
                             "pixels": 10, "strokes": 4, "classes": 3}
    assert all(type(v) is float for proto in ("per_sketch", "dataset") for v in out[proto].values())


def test_per_category_table():
    rows = _two_sketch_evaluator().per_category()
    # sun is seen nowhere that counts (only on paper / an excluded stroke), so it has no row
    assert [r["name"] for r in rows] == ["tree", "house"]
    assert rows[0] == {"name": "tree", "iou": pytest.approx(400 / 7), "accuracy": 100.0, "stroke_accuracy": 100.0,
                       "support": 4, "predicted": 7, "strokes": 2}
    assert rows[1] == {"name": "house", "iou": 50.0, "accuracy": 50.0, "stroke_accuracy": 50.0,
                       "support": 6, "predicted": 3, "strokes": 2}
    # sketch A: sun has a union (IoU 0) but no support; house IoU 0 too -> ties sorted by name
    a = Evaluator(NAMES)
    a.add(PRED_A, TRUE_A, PRED_STROKES_A, TRUE_STROKES_A)
    assert [(r["name"], r["iou"], r["accuracy"]) for r in a.summary().per_category()] == [
        ("tree", 50.0, 75.0), ("house", 0.0, 0.0), ("sun", 0.0, None)]


def test_perfect_prediction_is_100_everywhere():
    ev = Evaluator(NAMES)
    ev.add(TRUE_A, TRUE_A, TRUE_STROKES_A, TRUE_STROKES_A)
    ev.add(TRUE_2, TRUE_2, STROKES[1][1], STROKES[1][1])
    out = ev.summary().to_dict()
    assert out["per_sketch"] == {"acc_p": 100.0, "acc_s": 100.0, "miou": 100.0}
    assert out["dataset"] == {"acc_p": 100.0, "acc_s": 100.0, "mean_class_acc": 100.0, "miou": 100.0, "fw_iou": 100.0}
    assert all(r["iou"] == 100.0 and r["accuracy"] == 100.0 for r in ev.per_category())


def test_undefined_metrics_are_none_in_json():
    ev = Evaluator(NAMES)
    ev.add(None, None, np.array([0, 1]), np.array([0, 1]))  # a sketch with strokes only
    out = ev.summary().to_dict()
    assert out["per_sketch"] == {"acc_p": None, "acc_s": 100.0, "miou": None}
    assert out["counts"]["sketches_scored"] == {"acc_p": 0, "acc_s": 1, "miou": 0}
    json.dumps(out, allow_nan=False)
    empty = Evaluator([]).summary().to_dict()
    assert set(empty["dataset"].values()) == {None}


def test_ranked_for_galleries():
    ev = _two_sketch_evaluator()
    ev.add(None, None, np.array([0]), np.array([0]), name="strokes only")  # no mIoU: not ranked by it
    assert [s.name for s in ev.ranked("miou")] == ["one", "two"]
    assert [s.name for s in ev.ranked("miou", best_first=False)] == ["two", "one"]
    assert [s.name for s in ev.ranked("acc_s")] == ["one", "strokes only", "two"]
    with pytest.raises(UsageError, match="unknown per-sketch metric"):
        ev.ranked("fw_iou")


def test_growing_vocabulary_keeps_counts():
    ev = Evaluator(["tree"])
    ev.add(np.array([0, -1, 0]), np.array([0, 0, -1]))  # one right, one predicted nothing
    before = ev.pixel_confusion.copy()
    # a sketch labelled locally as [house, tree]: local 0 = house (new), 1 = tree
    local_true, local_pred = np.array([1, 0, 0]), np.array([1, 1, -1])
    true = ev.to_global(local_true, ["house", "tree"], grow=True)
    pred = ev.to_global(local_pred, ["house", "tree"])
    assert ev.class_names == ["tree", "house"]
    assert true.tolist() == [0, 1, 1] and pred.tolist() == [0, 0, -1]
    assert ev.pixel_confusion[:1, :1].tolist() == before[:, :1].tolist()
    assert ev.pixel_confusion[0, 2] == before[0, 1]  # the "nothing" column moved to the end
    ev.add(pred, true)
    assert ev.pixel_confusion.tolist() == [[2, 0, 1], [1, 0, 1]]
    assert ev.to_global(np.array([0, 1]), ["sky", "tree"]).tolist() == [-1, 0]  # not grown: -1


def test_bad_input_raises_input_error():
    with pytest.raises(InputError, match="differ in shape"):
        score_sketch(PRED_A[:3], TRUE_A, None, None, 3)
    with pytest.raises(InputError, match="integer class indices"):
        score_sketch(PRED_A.astype(float), TRUE_A, None, None, 3)
    with pytest.raises(InputError, match=r"true pixels must lie in \[-1, 2\)"):
        score_sketch(PRED_A.clip(max=1), TRUE_A + (TRUE_A == 1), None, None, 2)
    with pytest.raises(InputError, match="predicted strokes must lie"):
        score_sketch(None, None, np.array([-2]), np.array([0]), 3)
    with pytest.raises(InputError, match="both predicted and true strokes"):
        score_sketch(None, None, np.array([0]), None, 3)
    with pytest.raises(UsageError, match="repeated: 'tree'"):
        Evaluator(["tree", "sun", "tree"])
    with pytest.raises(InputError, match="local labels"):
        Evaluator(["tree"]).to_global(np.array([2]), ["tree", "sun"])


# ------------------------------------------------------------------------------------- real data


def _reference_scores(pred: np.ndarray, true: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Acc@P and mIoU from one boolean mask per class (no confusion matrix)."""
    evaluated = true >= 0
    acc = (pred[evaluated] == true[evaluated]).mean()
    ious = []
    for c in range(num_classes):
        t, p = (true == c) & evaluated, (pred == c) & evaluated
        if (t | p).any():
            ious.append((t & p).sum() / (t | p).sum())
    return float(acc), float(np.mean(ious))


def test_real_friss_sketches_against_per_class_masks(friss_test_files):
    from sketchkit.io import read_sketch
    from sketchkit.raster import rasterize

    sketches = [read_sketch(path) for path in friss_test_files[:12]]
    names = sorted({n for s in sketches for n in s.label_names()})
    ev, rng = Evaluator(names), np.random.default_rng(0)
    pooled_true, pooled_pred = [], []
    for sketch in sketches:
        true_strokes = ev.to_global(np.array([sketch.label_names().index(n) if n else -1 for n in sketch.labels]),
                                    sketch.label_names())
        ids = rasterize(sketch, 128).stroke_ids
        true_pixels = np.where(ids >= 0, true_strokes[ids.clip(0)], -1)
        # perfect first: every metric exactly 1
        perfect = score_sketch(true_pixels, true_pixels, true_strokes, true_strokes, len(names))
        assert (perfect.acc_p, perfect.acc_s, perfect.miou) == (1.0, 1.0, 1.0)
        # instance 0 relabelled as another class: exactly its strokes and pixels become wrong
        wrong = (true_strokes[sketch.instance_ids == 0][0] + 1) % len(names)
        pred_strokes = np.where(sketch.instance_ids == 0, wrong, true_strokes)
        pred_pixels = np.where(ids >= 0, pred_strokes[ids.clip(0)], -1)
        flip = rng.random(ids.shape) < 0.05  # plus random pixel noise, some of it on paper
        pred_pixels = np.where(flip, rng.integers(-1, len(names), ids.shape), pred_pixels)
        s = ev.add(pred_pixels, true_pixels, pred_strokes, true_strokes, name=sketch.source)
        labelled = true_strokes >= 0
        assert s.acc_s == pytest.approx(1 - (sketch.instance_ids[labelled] == 0).sum() / labelled.sum())
        assert (s.acc_p, s.miou) == pytest.approx(_reference_scores(pred_pixels, true_pixels, len(names)))
        pooled_true.append(true_pixels.ravel())
        pooled_pred.append(pred_pixels.ravel())
    acc, miou = _reference_scores(np.concatenate(pooled_pred), np.concatenate(pooled_true), len(names))
    summary = ev.summary()
    assert (summary.dataset["acc_p"], summary.dataset["miou"]) == pytest.approx((acc, miou))
    assert summary.per_sketch["miou"] == pytest.approx(np.mean([s.miou for s in ev.sketch_scores]))
    assert summary.per_sketch["miou"] != pytest.approx(summary.dataset["miou"])
