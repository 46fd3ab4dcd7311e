"""Per-point confidence and entropy against hand-computed softmax values (closed forms)."""
import math

import numpy as np
import pytest

from pointgcn.engine.confidence import prediction_confidence


def test_hand_computed_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]], np.float32)
    pred, conf, ent = prediction_confidence(logits)
    e = [math.e, math.e ** 2, math.e ** 3]
    p0 = [v / sum(e) for v in e]
    p2 = [math.e ** 2 / (math.e ** 2 + 2), 1 / (math.e ** 2 + 2), 1 / (math.e ** 2 + 2)]
    assert pred.tolist() == [2, 0, 0]
    assert conf.dtype == np.float32 and ent.dtype == np.float32
    assert conf.tolist() == pytest.approx([p0[2], 1 / 3, p2[0]], abs=1e-6)
    assert ent.tolist() == pytest.approx([-sum(q * math.log(q) for q in p0), math.log(3),
                                          -sum(q * math.log(q) for q in p2)], abs=1e-6)


@pytest.mark.parametrize("a", [-3.0, 0.0, 0.7, 5.0])
def test_two_classes_is_the_logistic(a):
    _, conf, ent = prediction_confidence(np.array([[a, 0.0]]))
    s = 1 / (1 + math.exp(-abs(a)))  # the winner's probability
    assert conf[0] == pytest.approx(s, abs=1e-6)
    assert ent[0] == pytest.approx(-(s * math.log(s) + (1 - s) * math.log(1 - s)), abs=1e-6)


def test_extreme_logits_stay_finite():
    pred, conf, ent = prediction_confidence(np.array([[1000.0, 0.0, -1000.0]]))
    assert pred[0] == 0 and conf[0] == 1.0 and ent[0] == 0.0


def test_given_prediction_reads_its_probability():
    """PartNet never predicts class 0: confidence is the chosen class's probability."""
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    pred, conf, _ = prediction_confidence(logits, pred=np.array([1]))
    assert pred[0] == 1 and conf[0] == pytest.approx(0.3, abs=1e-6)


def test_chunks_change_nothing(monkeypatch):
    import pointgcn.engine.confidence as confidence

    logits = np.random.default_rng(0).normal(size=(1000, 5)).astype(np.float32)
    whole = prediction_confidence(logits)
    monkeypatch.setattr(confidence, "CHUNK", 7)
    for a, b in zip(whole, prediction_confidence(logits)):
        np.testing.assert_array_equal(a, b)
