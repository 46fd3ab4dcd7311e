"""Temperature scaling and ECE: a known T is recovered, ECE falls on an over-confident model,
ECE equals a hand computation, and the fit ignores unlabelled points."""
import numpy as np
import pytest

from pointgcn.engine.calibration import (ReliabilityBins, calibration_report, ece,
                                         fit_temperature, flatten_logits, nll, softmax)


def _draw(z, rng):
    """Labels drawn from softmax(z): a perfectly calibrated model for logits z."""
    p = softmax(z)
    u = rng.random(len(z))[:, None]
    return (p.cumsum(1) < u).sum(1).clip(0, z.shape[1] - 1)


def test_ece_hand_computed():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.45, 0.55], [0.25, 0.75]])
    labels = np.array([0, 1, 1, 1])
    # bins of width 0.2: (0.4, 0.6] {0.55 right}: |1 − 0.55| = 0.45; (0.6, 0.8] {0.75 right}:
    # 0.25; (0.8, 1] {0.95 right, 0.85 wrong}: |0.5 − 0.9| = 0.4, two points
    assert ece(probs, labels, bins=5) == pytest.approx((0.45 + 0.25 + 2 * 0.4) / 4)
    rows = ReliabilityBins(5).update_probs(probs, labels).table()
    assert [r["points"] for r in rows] == [1, 1, 2]
    assert rows[-1]["accuracy"] == 0.5 and rows[-1]["confidence"] == pytest.approx(0.9)


def test_fit_recovers_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20000, 5))
    labels = _draw(z / 2.5, rng)           # the data follow softmax(z / 2.5)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(2.5, rel=0.06)
    # the fitted T is the NLL minimum (independent check by a grid)
    grid = np.linspace(2.0, 3.0, 101)
    assert abs(grid[np.argmin([nll(z, labels, g) for g in grid])] - t) < 0.02
    assert fit_temperature(z, labels) == t  # deterministic


def test_ece_falls_on_overconfident_model():
    rng = np.random.default_rng(1)
    clean = rng.normal(0, 1.5, (8000, 6))
    labels = _draw(clean, rng)
    over = 4.0 * clean                        # same labels, four times too sharp
    t = fit_temperature(over, labels)
    assert t > 3
    rep = calibration_report(over, labels, t)
    assert rep["ece_before"] > 0.15
    assert rep["ece_after"] < 0.03 < rep["ece_before"] / 5
    assert rep["nll_after"] < rep["nll_before"]
    # dividing by T changes no label
    assert (softmax(over, t).argmax(1) == over.argmax(1)).all()


def test_segmentation_layout_and_ignored_points():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (3, 4, 50))          # (B, C, N)
    y = rng.integers(0, 4, (3, 50))
    y[0, :10] = -1
    zf, yf = flatten_logits(z, y)
    assert len(yf) == 140 and (zf[0] == z[0, :, 10]).all()
    # unlabelled points do not move the fit: junk labels there change nothing
    t = fit_temperature(z, y)
    assert fit_temperature(z, np.where(y < 0, -1, y)) == t
    b = ReliabilityBins().update(z, y, 2.0)
    assert b.count.sum() == 140
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0


def test_confidence_entropy_and_uncertain_marks():
    from pointgcn.engine.confidence import confidence_and_entropy, mark_uncertain

    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])
    conf, ent = confidence_and_entropy(p)
    np.testing.assert_allclose(conf, [1.0, 1 / 3, 0.5])
    np.testing.assert_allclose(ent, [0.0, np.log(3), 0.5 * np.log(2) + 0.5 * np.log(4)])
    assert str(ent[0]) == "0.0"
    # per point along the class axis of (C, N) too
    np.testing.assert_allclose(confidence_and_entropy(p.T, axis=0)[1], ent)
    assert mark_uncertain(np.array([0, 1, 2]), conf, 0.4).tolist() == [0, -1, 2]
    assert mark_uncertain(np.array([0, 1, 2]), conf, None).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        mark_uncertain(np.array([0]), conf[:1], 1.5)


def test_uninformative_logits_hit_the_bound_and_say_so():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (2000, 5))
    y = rng.integers(0, 5, 2000)            # labels independent of the logits
    t = fit_temperature(z, y)
    rep = calibration_report(z, y, t)
    assert t > 40 and rep["at_bound"]
    assert not calibration_report(z, y, 1.0)["at_bound"]


def test_six_folds_pool_their_bins_each_with_its_own_temperature():
    from pointgcn.engine.calibration import BeforeAfter, pool_records
    from pointgcn.engine.evaluator import six_fold

    rng = np.random.default_rng(3)
    folds, raw, scaled, labels = [], [], [], []
    for i in range(6):
        z = rng.normal(0, 2 + i, (200 + 50 * i, 5))
        y, t = _draw(z / 1.7, rng), 0.6 + 0.1 * i
        rec = BeforeAfter(t)
        rec.update(z / t, y)  # the predictor hands over logits already divided by T
        folds.append({"full_resolution": {"confusion": np.eye(13, dtype=int).tolist(),
                                          "calibration": rec.record()}})
        raw.append(softmax(z)), scaled.append(softmax(z / t)), labels.append(y)
    pooled = six_fold(folds)["full_resolution"]["calibration"]
    y = np.concatenate(labels)
    assert pooled["points"] == len(y)
    assert pooled["ece_before"] == pytest.approx(ece(np.concatenate(raw), y), abs=1e-12)
    assert pooled["ece_after"] == pytest.approx(ece(np.concatenate(scaled), y), abs=1e-12)
    assert pooled["temperatures"] == pytest.approx([0.6 + 0.1 * i for i in range(6)])
    other = {**folds[1]["full_resolution"]["calibration"], "bins": 10}
    with pytest.raises(ValueError, match="different bins"):
        pool_records([folds[0]["full_resolution"]["calibration"], other])
    assert pool_records([folds[0]["full_resolution"]["calibration"]])["ece_after"] == \
        pytest.approx(folds[0]["full_resolution"]["calibration"]["ece_after"], abs=1e-12)
