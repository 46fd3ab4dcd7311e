"""Bootstrap intervals over items: they cover the true value in simulation, the metrics equal
ConfusionMatrix's, and a paired comparison tells a model from itself and from a worse one."""
import numpy as np
import pytest

from pointgcn.engine.bootstrap import (bootstrap_ci, bootstrap_mean, confusion_metrics,
                                       paired_difference, resample_counts)
from pointgcn.engine.metrics import ConfusionMatrix


def _shapes(rng, n, p_right, c=3):
    """Per-shape confusion matrices (one point each) of a classifier right with p_right."""
    truth = rng.integers(0, c, n)
    right = rng.random(n) < p_right
    pred = np.where(right, truth, (truth + 1 + rng.integers(0, c - 1, n)) % c)
    mats = np.zeros((n, c, c), np.int64)
    mats[np.arange(n), truth, pred] = 1
    return mats, right


def test_metrics_equal_confusion_matrix():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 20, (5, 5))
    m[3] = 0                                   # a class absent from the truth
    m[:, 3] = 0                                # … and never predicted
    cm = ConfusionMatrix(5)
    cm.matrix = m
    got = confusion_metrics(m)
    assert got["oa"] == pytest.approx(cm.oa())
    assert got["macc"] == pytest.approx(cm.macc())
    assert got["miou"] == pytest.approx(cm.miou())


def test_counts_are_resamples():
    w = resample_counts(7, 50, seed=3)
    assert w.shape == (50, 7) and (w.sum(1) == 7).all()
    assert (w == resample_counts(7, 50, seed=3)).all()
    assert not (w == resample_counts(7, 50, seed=4)).all()


def test_interval_covers_true_value_in_simulation():
    rng = np.random.default_rng(0)
    reps, hit_oa, hit_mean = 150, 0, 0
    for r in range(reps):
        mats, _ = _shapes(rng, 80, 0.75)
        ci = bootstrap_ci(mats, resamples=300, seed=r)
        hit_oa += ci["oa"]["low"] <= 0.75 <= ci["oa"]["high"]
        m = bootstrap_mean(rng.normal(2.0, 1.0, 60), resamples=300, seed=r)
        hit_mean += m["low"] <= 2.0 <= m["high"]
    assert hit_oa / reps >= 0.88
    assert hit_mean / reps >= 0.88
    # and the interval is not trivially wide
    assert ci["oa"]["high"] - ci["oa"]["low"] < 0.25


def test_paired_comparison():
    rng = np.random.default_rng(1)
    a, _ = _shapes(rng, 200, 0.9)
    same = paired_difference(a, a, resamples=300)
    for k in ("oa", "macc", "miou"):
        assert same[k]["delta"] == 0 and not same[k]["distinguishable"]
    # B: A's predictions with a fifth of the shapes made wrong
    b = a.copy()
    c = a.shape[1]
    for i in range(0, 200, 5):
        t = int(np.argmax(a[i].sum(1)))
        b[i] = 0
        b[i, t, (t + 1) % c] = 1
    diff = paired_difference(a, b, resamples=300)
    assert diff["oa"]["delta"] > 0.1 and diff["oa"]["distinguishable"]
    assert diff["oa"]["low"] > 0
    # a tiny difference (one shape of 200) is not distinguishable
    b1 = a.copy()
    b1[0] = b[0]
    assert not paired_difference(a, b1, resamples=300)["oa"]["distinguishable"]
    with pytest.raises(ValueError, match="different items"):
        paired_difference(a, a[:10])


def test_partnet_record_equals_partnet_rule():
    from pointgcn.engine.metrics import PartNetIoU

    rng = np.random.default_rng(5)
    c, acc, parts = 4, PartNetIoU(4), {"inter": [], "union": [], "shape_iou": []}
    for i in range(12):
        truth = rng.integers(0, c, 50)
        if i == 3:
            truth[:] = 0                         # a shape with no scored part
        pred = np.where(rng.random(50) < 0.6, truth, rng.integers(1, c, 50))
        acc.update(pred[None], truth[None])
        one = PartNetIoU(c).update(pred[None], truth[None])
        parts["inter"].append(one.inter)
        parts["union"].append(one.union)
        parts["shape_iou"].append(one.shape_ious[0] if one.shape_ious else np.nan)
    parts = {k: np.array(v, np.float64) for k, v in parts.items()}
    ci = bootstrap_ci(parts, resamples=200)
    want = acc.summary()
    assert ci["part_miou"]["value"] == pytest.approx(want["part_miou"])
    assert ci["shape_miou"]["value"] == pytest.approx(want["shape_miou"])
    assert ci["part_miou"]["low"] <= want["part_miou"] <= ci["part_miou"]["high"]
    same = paired_difference(parts, parts, resamples=100)
    assert same["part_miou"]["delta"] == 0 and not same["shape_miou"]["distinguishable"]


def test_six_fold_interval_over_every_area_s_rooms():
    from pointgcn.engine.evaluator import six_fold

    rng = np.random.default_rng(7)
    folds = [rng.integers(0, 30, (3 + i, 13, 13)) for i in range(6)]  # rooms per area
    results = [{"full_resolution": {"confusion": f.sum(0).tolist()}} for f in folds]
    out = six_fold(results, [{"full_resolution": f} for f in folds], resamples=200, seed=1)
    ci = out["full_resolution"]["ci"]
    assert ci["items"] == sum(len(f) for f in folds)
    assert ci["miou"]["value"] == pytest.approx(out["full_resolution"]["miou"])
    assert ci == {**bootstrap_ci(np.concatenate(folds), 200, 1), "over": ci["over"]}
    assert "ci" not in six_fold(results)["full_resolution"]
