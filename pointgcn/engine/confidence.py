"""How sure a prediction is, per point, from the logits a predictor returns.

The logits are taken as calibrated (a fitted temperature, if any, is applied by the predictor),
so their softmax p is read as class probabilities. Per point: `confidence` = p of the predicted
class (the argmax unless the task predicts otherwise, e.g. PartNet never predicts class 0) and
`entropy` = −Σ p log p in nats (0 when one class has all the mass, log C when all are equal).
Written by `segment` as the fields `confidence` and `entropy` beside `pred`.
"""
from __future__ import annotations

import numpy as np

CHUNK = 1 << 16  # rows per step


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits → (N, C) float64 probabilities (max-shifted: large logits never overflow)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def prediction_confidence(logits: np.ndarray, pred: np.ndarray | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) logits → (pred int64, confidence float32, entropy float32), each (N,).

    `pred`: the task's labels when they are not the plain argmax; confidence is then the
    probability of that class. Rows go in chunks: float64 temporaries stay small on big clouds."""
    n = len(logits)
    out_pred = np.empty(n, np.int64)
    confidence, entropy = np.empty(n, np.float32), np.empty(n, np.float32)
    for start in range(0, n, CHUNK):
        rows = slice(start, start + CHUNK)
        p = softmax(logits[rows])
        chosen = p.argmax(axis=1) if pred is None else np.asarray(pred[rows], np.int64)
        out_pred[rows] = chosen
        confidence[rows] = p[np.arange(len(p)), chosen]
        entropy[rows] = _entropy(p, axis=1)
    return out_pred, confidence, entropy


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # 0 · log 0 = 0
    return np.maximum(0.0 - plogp.sum(axis), 0.0)  # 0.0 - : no "-0.0" for certain points


def confidence_and_entropy(probs: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and entropy (nats) along `axis` of (calibrated) probabilities, e.g. a
    shape's vote-averaged class probabilities in `classify`."""
    p = np.asarray(probs, np.float64)
    return p.max(axis), _entropy(p, axis)


def mark_uncertain(labels: np.ndarray, confidence: np.ndarray,
                   min_confidence: float | None) -> np.ndarray:
    """`labels` with −1 where the confidence is below `min_confidence` (None: unchanged)."""
    labels = np.asarray(labels)
    if min_confidence is None:
        return labels
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    return np.where(np.asarray(confidence) < min_confidence, -1, labels)
