import json

import numpy as np
import pytest

from pointgcn.engine.distributed import Dist
from pointgcn.engine.metrics import ConfusionMatrix, PartNetIoU


def test_confusion_matrix_hand_computed():
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    pr = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2, 0])
    cm = ConfusionMatrix(5).update(pr, gt)
    assert cm.matrix[0].tolist() == [2, 1, 0, 0, 0]
    assert cm.oa() == pytest.approx(6 / 10)
    # recall: c0 2/3, c1 1/2, c2 3/4, c3 0/1, c4 absent (NaN, not counted)
    assert cm.macc() == pytest.approx(np.mean([2 / 3, 1 / 2, 3 / 4, 0]))
    # IoU = TP / (TP + FP + FN): c0 2/(2+2+1), c1 1/(1+1+1), c2 3/(3+1+1), c3 0/(0+0+1)
    iou = cm.iou()
    assert iou[:4] == pytest.approx([2 / 5, 1 / 3, 3 / 5, 0.0])
    assert np.isnan(iou[4])                       # absent and never predicted: not counted
    assert cm.miou() == pytest.approx(np.mean([2 / 5, 1 / 3, 3 / 5, 0.0]))


def test_predicted_but_absent_class_counts_as_zero_iou():
    cm = ConfusionMatrix(3).update([0, 2], [0, 0])
    assert cm.iou()[2] == 0.0 and np.isnan(cm.iou()[1])
    assert cm.miou() == pytest.approx((0.5 + 0.0) / 2)


def test_ignore_index_and_six_fold_sum():
    a = ConfusionMatrix(3, ignore_index=2).update([0, 1, 1], [0, 2, 1])
    assert a.total == 2
    b = ConfusionMatrix(3, ignore_index=2).update([1, 1], [0, 1])
    s = ConfusionMatrix(3)
    s += a
    s += b
    # summed before dividing: class 0 IoU = 1 / (1 + 0 + 1), not the mean of per-fold IoUs
    assert s.iou()[0] == pytest.approx(1 / 2)
    assert s.iou()[1] == pytest.approx(2 / 3)


def test_partnet_rule():
    logits = np.zeros((2, 3, 4))
    logits[:, 0] = 10.0                     # "other" has the highest logit everywhere …
    logits[0, 1, :2] = 1.0
    logits[0, 2, 2:] = 1.0
    logits[1, 1, :] = 1.0
    pred = PartNetIoU.predict(logits)       # … but is never predicted
    assert pred.tolist() == [[1, 1, 2, 2], [1, 1, 1, 1]]
    gt = np.array([[1, 2, 2, 0], [1, 1, 0, 0]])   # label 0 ignored
    m = PartNetIoU(3).update(pred, gt)
    # part 1: I = 1 + 2, U = 2 + 2 → 3/4; part 2: I = 1, U = 2 → 1/2 (pred 2 at the ignored point excluded)
    assert m.part_iou()[1:] == pytest.approx([3 / 4, 1 / 2])
    s = m.summary()
    assert s["part_miou"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # shape 1: parts 1 (1/2) and 2 (1/2) → 1/2; shape 2: part 1 → 1
    assert s["shape_miou"] == pytest.approx((0.5 + 1.0) / 2)


def test_out_of_range_prediction_is_refused():
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(3).update([4, 0], [0, 0])


class _Oracle:
    """Predicts part 1 where x < 0 and part 2 elsewhere, from whatever sample it is given."""
    n_classes = 3

    def __call__(self, feats):
        x = feats[:, 0, :]
        logits = np.zeros((feats.shape[0], 3, feats.shape[2]), np.float32)
        logits[:, 1] = (x < 0) * 5.0
        logits[:, 2] = (x >= 0) * 5.0
        return logits


class _Shapes:
    """The slice of PartNetSemSeg that evaluation reads: stored points, labels, n_points."""

    def __init__(self, points, labels, n_points):
        self.points, self.labels, self.n_points = points, labels, n_points

    def __len__(self):
        return len(self.points)


def test_partnet_evaluation_scores_every_point():
    """Shapes of 1000 points scored with 64-point samples: every point is counted once."""
    from pointgcn.engine.evaluator import evaluate_parts

    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (3, 1000, 3))
    labels = np.where(pts[..., 0] < 0, 1, 2)
    labels[:, :100] = 0                                     # "other": ignored by the rule
    names = ["other", "a", "b"]
    out = evaluate_parts(_Shapes(pts, labels, 64), _Oracle(), names, batch=4, progress=False)
    assert out["part_miou"] == 1.0 and out["shape_miou"] == 1.0 and out["shapes"] == 3
    assert "every point" in out["protocol"]
    # flip 300 points per shape: the IoU is that of all 900 scored points, not of a sample
    flipped = labels.copy()
    flipped[:, 100:400] = np.where(labels[:, 100:400] == 1, 2, 1)
    out = evaluate_parts(_Shapes(pts, flipped, 64), _Oracle(), names, batch=4, progress=False)
    g, p = flipped[:, 100:], np.where(pts[:, 100:, 0] < 0, 1, 2)
    expect = np.mean([((g == c) & (p == c)).sum() / ((g == c) | (p == c)).sum() for c in (1, 2)])
    assert abs(out["part_miou"] - expect) < 1e-12


@pytest.mark.parametrize("metric", [ConfusionMatrix, PartNetIoU])
def test_state_resumes_a_metric_and_all_reduce_copies(metric):
    """The running state (what a mid-epoch checkpoint stores: plain numbers, JSON-able) of
    half the batches, loaded and fed the other half, gives the numbers of all batches."""
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 4, (3, 20)), rng.integers(0, 4, (3, 20))) for _ in range(4)]
    whole, half = metric(4), metric(4)
    for pred, target in batches:
        whole.update(pred, target)
    for pred, target in batches[:2]:
        half.update(pred, target)
    resumed = metric(4)
    resumed.load_state(json.loads(json.dumps(half.state())))
    for pred, target in batches[2:]:
        resumed.update(pred, target)
    assert resumed.summary() == whole.summary() != half.summary()
    merged = whole.all_reduce(Dist())  # one process: an equal copy, the original untouched
    assert merged is not whole and merged.summary() == whole.summary()
    merged.update(*batches[0])
    assert merged.summary() != whole.summary()
