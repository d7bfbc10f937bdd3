"""Metrics on tiny hand-made maps whose expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sketchkit.metrics import Evaluator, score_sketch

# 3x3 sketch, classes 0 (a), 1 (b), 2 (c); -1 = paper (not evaluated)
TRUE = np.array([[0, 0, -1], [1, 1, -1], [1, 2, -1]])
PRED = np.array([[0, 1, 2], [1, 1, 0], [2, 2, 2]])
# evaluated pixels (true >= 0): (0,0) a->a ok, (0,1) a->b, (1,0) b->b ok, (1,1) b->b ok, (2,0) b->c, (2,1) c->c ok
# Acc@P = 4/6
# IoU a: tp 1, true 2, pred(among evaluated) 1 -> union 2 -> 0.5
# IoU b: tp 2, true 3, pred 3 ((0,1),(1,0),(1,1)) -> union 4 -> 0.5
# IoU c: tp 1, true 1, pred 2 ((2,0),(2,1)) -> union 2 -> 0.5
# mIoU = 0.5


def test_hand_computed_pixels():
    s = score_sketch(PRED, TRUE, [0], [0], 3)
    assert s.acc_p == pytest.approx(4 / 6)
    assert s.miou == pytest.approx(0.5)
    assert s.pixels == 6


def test_class_predicted_but_absent_counts_in_union():
    true = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 1, 1])
    # IoU 0 = 2/4; class 1 has union 2 (predicted only) and IoU 0 -> mIoU 0.25
    assert score_sketch(pred, true, [], [], 2).miou == pytest.approx(0.25)


def test_class_never_predicted_and_missing_prediction():
    true = np.array([0, 1, 1, -1])
    pred = np.array([0, -1, 0, 1])
    # evaluated: 0->0 ok, 1->nothing, 1->0. Acc 1/3
    # IoU 0: tp 1, true 1, pred 2 -> 1/2; IoU 1: tp 0, true 2, pred 0 (pixel 3 not evaluated) -> 0
    s = score_sketch(pred, true, [], [], 2)
    assert s.acc_p == pytest.approx(1 / 3)
    assert s.miou == pytest.approx(0.25)


def test_unlabelled_strokes_are_excluded():
    s = score_sketch([], [], np.array([0, 1, 1, 0]), np.array([0, 1, -1, 1]), 2)
    # labelled strokes: 0->0 ok, 1->1 ok, 1->0 wrong; the -1 stroke is excluded
    assert s.acc_s == pytest.approx(2 / 3)
    assert s.strokes == 3
    assert math.isnan(s.acc_p) and math.isnan(s.miou)


def test_per_sketch_mean_differs_from_pooled_confusion():
    ev = Evaluator(["a", "b"])
    # sketch 1: 1 pixel, class a, right -> acc 1, IoU a = 1 -> mIoU 1
    ev.add(np.array([0]), np.array([0]), np.array([0]), np.array([0]), "s1")
    # sketch 2: 3 pixels class b, predicted a, a, b -> acc 1/3; IoU a: 0/2 = 0, IoU b: 1/3 -> mIoU 1/6
    ev.add(np.array([0, 0, 1]), np.array([1, 1, 1]), np.array([0, 1]), np.array([1, 1]), "s2")
    summary = ev.summary()
    # per sketch: acc_p (1 + 1/3)/2 = 2/3; miou (1 + 1/6)/2 = 7/12; acc_s (1 + 1/2)/2 = 3/4
    assert summary.per_sketch["acc_p"] == pytest.approx(2 / 3)
    assert summary.per_sketch["miou"] == pytest.approx(7 / 12)
    assert summary.per_sketch["acc_s"] == pytest.approx(3 / 4)
    # pooled: pixels truth a: [a]; truth b: [a, a, b] -> acc 2/4
    # IoU a: tp 1, true 1, pred 3 -> 1/3; IoU b: tp 1, true 3, pred 1 -> 1/3 -> mIoU 1/3
    # mean class acc: a 1/1, b 1/3 -> 2/3; fw-IoU: 1/4 * 1/3 + 3/4 * 1/3 = 1/3; strokes 2/3
    d = summary.dataset
    assert d["acc_p"] == pytest.approx(0.5)
    assert d["miou"] == pytest.approx(1 / 3)
    assert d["mean_class_acc"] == pytest.approx(2 / 3)
    assert d["fw_iou"] == pytest.approx(1 / 3)
    assert d["acc_s"] == pytest.approx(2 / 3)
    assert summary.per_sketch["miou"] != pytest.approx(d["miou"])


def test_perfect_prediction_is_100_and_json_safe():
    ev = Evaluator(["a", "b", "c"])
    labels = np.array([[0, 1], [2, -1]])
    ev.add(labels, labels, np.array([0, 2]), np.array([0, 2]))
    out = ev.summary().to_dict()
    assert all(v == 100.0 for proto in out.values() for v in proto.values())
    empty = Evaluator(["a"]).summary().to_dict()
    assert empty["per_sketch"]["miou"] is None  # undefined, not NaN


def test_per_category_rows():
    ev = Evaluator(["a", "b", "c"])
    ev.add(PRED, TRUE, np.array([0, 1]), np.array([0, 1]))
    rows = ev.per_category()
    assert [r["name"] for r in rows] == ["a", "b", "c"]  # equal IoU 50 -> by name
    assert rows[1] == {"name": "b", "iou": 50.0, "accuracy": pytest.approx(200 / 3, rel=1e-4), "support": 3, "strokes": 1}
