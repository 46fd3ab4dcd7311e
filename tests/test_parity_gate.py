"""The export's label gate: ≥ 99% of all labels, or the sure-label rule for a deep
dynamic-graph model's own last-bit sensitivity — and a runtime that flips labels the model is
sure of fails either way."""
import numpy as np
import pytest
import torch

from pointgcn.export.parity import (REFERENCE_SLACK, SURE_MARGIN, label_agreement,
                                    label_verdict, softmax_margin)
from pointgcn.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_softmax_margin_equals_torch_top2():
    logits = np.random.default_rng(0).normal(0, 3, (2, 7, 50)).astype(np.float32)
    top = torch.softmax(torch.from_numpy(logits).double(), 1).topk(2, dim=1).values
    want = (top[:, 0] - top[:, 1]).numpy()
    np.testing.assert_allclose(softmax_margin(logits), want, atol=1e-12)
    shapes = logits[:, :, 0]  # (B, C): one label per shape
    np.testing.assert_allclose(softmax_margin(shapes), want[:, 0], atol=1e-12)


def _row(agreement, sure, reference, share=0.9):
    return {"points": 2048, "agreement": agreement, "sure_agreement": sure,
            "sure_share": share, "float64_knn_agreement": reference}


@pytest.mark.parametrize("row, passes", [
    (_row(0.995, 0.90, 0.90), True),                       # overall ≥ 99%: nothing else asked
    (_row(0.980, 0.997, 0.985), True),                     # sure labels kept, at the reference
    (_row(0.980, 0.997, 0.980 + REFERENCE_SLACK), True),   # at the slack's edge
    (_row(0.980, 0.980, 0.985), False),                    # flips labels the model is sure of
    (_row(0.950, 0.995, 0.990), False),                    # far below the model's own floor
    (_row(0.980, None, 0.980, 0.0), False),                # no sure label to judge by
    (_row(0.980, 1.0, 0.980, 0.01), False),                # a handful of sure labels: no say
])
def test_label_verdict(row, passes):
    why = label_verdict(row, 0.99)
    assert (why is None) == passes
    if not passes:
        assert "N=2048" in why and "\n" not in why


def _segmenter():
    torch.manual_seed(0)
    model = build_model(dict(n_blocks=3, channels=8, k=4, fusion_channels=16, in_channels=6,
                             prediction=[16, 8], dropout=0.0, n_classes=4, block="res",
                             conv="edge", task="segmentation"))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a confident classifier: most labels have a clear margin
        last.weight.mul_(20.0)
    return model.eval()


def test_a_runtime_that_flips_sure_labels_fails_and_an_exact_one_passes():
    model = _segmenter()
    x = np.random.default_rng(1).uniform(-1, 1, (2, 6, 256)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sure = softmax_margin(ref) >= SURE_MARGIN
    assert sure.mean() > 0.2  # the probe needs labels the model is sure of

    def flipping(inp):  # swap the top two classes on 3% of the sure points
        out = ref.copy()
        b, n = np.nonzero(sure)
        pick = np.random.default_rng(2).choice(len(b), max(1, int(0.03 * sure.sum())), False)
        for i in pick:
            top = np.argsort(out[b[i], :, n[i]])[-2:]
            out[b[i], top, n[i]] = out[b[i], top[::-1], n[i]]
        return out

    exact, flipped = (label_agreement(model, p, [x])[0] for p in (lambda inp: ref, flipping))
    assert exact["agreement"] == 1.0 and label_verdict(exact, 0.99) is None
    assert flipped["sure_agreement"] < 0.99
    assert label_verdict(flipped, 0.99) is not None
