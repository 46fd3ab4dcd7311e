"""Over-smoothing diagnostics of a layer's features: how far apart the classes stay, how much
of the input survives, how smooth the features are over the graph, and how many directions
they still use.

Group Distance Ratio and Instance Information Gain follow Zhou et al., "Towards Deeper Graph
Neural Networks with Differentiable Group Normalization" (NeurIPS 2020), as their released
code computes them — the figures the DeepGCN papers quote (ResGCN-28 1.73 / 0.46):

- group_distance_ratio: rows scaled to unit length, squared Euclidean distances; the mean
  distance between points of two different classes (averaged over class pairs) over the mean
  distance within a class (averaged over classes). Near 1 (or below): classes smoothed
  together. (The paper's printed formula sums ordered pairs over (C−1)², C/(C−1) times this;
  PyG's `DiffGroupNorm.group_distance_ratio` compares each class with all the others and uses
  plain distances — with two classes and `normalize=False, squared=False` it is exactly twice
  this, which tests/test_diagnostics.py checks.)
- instance_information_gain: mutual information I(X; H) in bits between the input features X
  and the layer's features H, with X's entropy from the Kolchinsky–Tracey pairwise-distance
  bound of a Gaussian mixture (variance `var`, rows scaled to unit length) and H discretised
  by each point's largest channel. Near 0: the features no longer tell the inputs apart.

Two more that need no labels: dirichlet_energy (mean squared feature difference over the
graph's edges, relative to the features' mean squared norm — 0 when every neighbourhood is
constant) and effective_rank (Roy & Vetterli
2007: exp of the entropy of the normalised singular values of the centred features).
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..errors import InputError


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.square(x).sum(1, keepdims=True))
    return x / np.where(norm == 0, 1e-3 ** 0.5, norm)  # as the reference: a zero row stays 0


def _mean_distance(a: np.ndarray, b: np.ndarray, squared: bool) -> float:
    d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)
    return float((d2 if squared else np.sqrt(d2)).mean())


def group_distance_ratio(features: np.ndarray, labels: np.ndarray, *, normalize: bool = True,
                         squared: bool = True) -> float:
    """(N, F) features of points with class `labels` (N,) → inter/intra class distance ratio
    (module doc). Points labelled < 0 are ignored; needs two classes. 1.0 when every point
    sits in one place (no distance at all), as the reference does."""
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    keep = labels >= 0
    x, labels = x[keep], labels[keep]
    if normalize:
        x = _unit_rows(x)
    groups = [x[labels == c] for c in np.unique(labels)]
    if len(groups) < 2:
        raise InputError("the group distance ratio needs points of at least two classes")
    intra = np.mean([_mean_distance(g, g, squared) for g in groups])
    inter = np.mean([_mean_distance(groups[i], groups[j], squared)
                     for i in range(len(groups)) for j in range(i + 1, len(groups))])
    if intra == 0:
        return 1.0 if inter == 0 else float("inf")
    return float(inter / intra)


def _mixture_entropy(x: np.ndarray, var: float) -> float:
    """Kolchinsky–Tracey pairwise-distance lower bound (Bhattacharyya) on the entropy, in nats,
    of the Gaussian mixture with one component N(x_i, var·I) per row."""
    n, dims = x.shape
    v = 4 * var  # the Bhattacharyya bound is the KL one at four times the variance …
    d2 = np.maximum((x * x).sum(1)[:, None] + (x * x).sum(1)[None] - 2 * x @ x.T, 0.0)
    log_p = logsumexp(-d2 / (2 * v), axis=1) - np.log(n) - dims / 2 * np.log(2 * np.pi * v)
    return float(dims / 2 - log_p.mean() + dims / 2 * np.log(0.25))  # … shifted by this


def instance_information_gain(inputs: np.ndarray, features: np.ndarray,
                              var: float = 0.1) -> float:
    """I(X; H) in bits between (N, D) inputs and (N, F) features (module doc)."""
    x = _unit_rows(np.asarray(inputs, np.float64))
    h = np.asarray(features, np.float64)
    if len(x) != len(h) or len(x) == 0:
        raise InputError("inputs and features need the same, non-zero number of points")
    winner = h.argmax(1)
    conditional = sum((winner == c).mean() * _mixture_entropy(x[winner == c], var)
                      for c in np.unique(winner))
    return float((_mixture_entropy(x, var) - conditional) / np.log(2))


def dirichlet_energy(features: np.ndarray, neighbours: np.ndarray,
                     relative: bool = True) -> float:
    """(N, F) features and (N, k) neighbour indices → mean over edges of ‖h_i − h_j‖², with
    `relative` over the mean ‖h_i‖² (so that features growing in norm through residual
    blocks do not read as less smooth; 0 for the zero vector)."""
    h = np.asarray(features, np.float64)
    diff = h[:, None, :] - h[np.asarray(neighbours)]
    energy = float(np.square(diff).sum(-1).mean())
    if relative:
        scale = float(np.square(h).sum(1).mean())
        return energy / scale if scale > 0 else 0.0
    return energy


def effective_rank(features: np.ndarray) -> float:
    """exp(entropy of σ / Σσ) of the centred (N, F) features: 1 for features on one line,
    F for features spread evenly in every direction."""
    h = np.asarray(features, np.float64)
    s = np.linalg.svd(h - h.mean(0), compute_uv=False)
    if s.sum() == 0:
        return 0.0
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))
