"""SGAS (Li et al., CVPR 2020): greedy edge decisions with criterion 1 or 2.

For edge e with mixing distribution p = softmax(α_e) over the 10 ops (op 0 = none):

importance   1 − p_none
certainty    1 − H(q) / log(n_ops − 1),   q = p[1:] / (1 − p_none)  (the non-none distribution)
stability    mean over the last K epochs' q_t of the histogram intersection Σ_o min(q_o, q_t,o)
criterion 1  score = mm(importance) · mm(certainty)
criterion 2  score = mm(importance) · mm(certainty) · mm(stability)

mm is min-max normalisation over the candidate (undecided) edges (0 when all are equal; the
SGAS code normalises over all edges — decided ones too — which lets already fixed edges shift
the scale). At a decision epoch the candidate with the highest score is fixed to argmax q (never
none), its α is frozen, and a node with two fixed edges has its other edges pruned.

Schedule (the SGAS point-cloud code): epochs are counted from 0; epoch t is a decision epoch
when t ≥ warmup and (t − warmup) % decision_freq == 0 and edges are undecided; the history
gets every epoch's q. The default length warmup + decision_freq·(decisions − 1) + post + 1
leaves `post` epochs of training after the last decision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .cell import UNDECIDED
from .genotype import EDGES, N_NODES, Genotype, node_edges
from .ops import NONE, PRIMITIVES

KEPT_PER_NODE = 2
N_DECISIONS = KEPT_PER_NODE * N_NODES


def minmax(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def non_none(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(importance (E,), q (E, n_ops − 1)) from mixing probabilities (E, n_ops)."""
    p = np.asarray(probs, np.float64)
    importance = p[:, 1:].sum(1)
    return importance, p[:, 1:] / importance[:, None]


def normalised_entropy(q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(1)
    return h / math.log(q.shape[1])


def histogram_intersection(q: np.ndarray, history: list[np.ndarray]) -> np.ndarray:
    """Mean over past distributions h of Σ_o min(q_o, h_o), per edge (zeros without history)."""
    if not history:
        return np.zeros(len(q))
    return np.mean([np.minimum(q, h).sum(1) for h in history], axis=0)


def edge_scores(probs: np.ndarray, candidates: np.ndarray, criterion: int,
                history: list[np.ndarray] = ()) -> dict:
    """Per-edge importance, certainty, stability and score; score is NaN off the candidates."""
    if criterion not in (1, 2):
        raise ConfigError(f"SGAS criterion must be 1 or 2, got {criterion!r}")
    cand = np.asarray(candidates, bool)
    importance, q = non_none(probs)
    certainty = 1.0 - normalised_entropy(q)
    stability = histogram_intersection(q, list(history))
    score = np.full(len(q), np.nan)
    if cand.any():
        s = minmax(importance[cand]) * minmax(certainty[cand])
        if criterion == 2:
            s = s * minmax(stability[cand])
        score[cand] = s
    return {"importance": importance, "certainty": certainty, "stability": stability,
            "score": score}


def is_decision_epoch(epoch: int, warmup: int, decision_freq: int) -> bool:
    return epoch >= warmup and (epoch - warmup) % decision_freq == 0


def schedule_length(warmup: int, decision_freq: int, post: int) -> int:
    return warmup + decision_freq * (N_DECISIONS - 1) + post + 1


def derive(selected: list[int], probs: np.ndarray) -> list[int]:
    """The op index per edge of the architecture the search would return now (0 = not kept):
    fixed edges keep their op, and each node is filled up to two edges with its most
    important undecided edges at their best non-none op (SGAS's rule for ending early)."""
    importance, q = non_none(probs)
    ops = [max(s, NONE) for s in selected]
    for node in range(N_NODES):
        edges = node_edges(node)
        fixed = sum(selected[e] > NONE for e in edges)
        open_ = sorted((e for e in edges if selected[e] == UNDECIDED), key=lambda e: -importance[e])
        for e in open_[:max(0, KEPT_PER_NODE - fixed)]:
            ops[e] = int(np.argmax(q[e])) + 1
    return ops


@dataclass
class Decision:
    epoch: int
    edge: int
    op: int
    pruned: list[int]
    scores: dict

    def to_dict(self) -> dict:
        node, src = EDGES[self.edge]
        return {"epoch": self.epoch, "edge": self.edge, "node": node, "input": src,
                "op": PRIMITIVES[self.op], "pruned": self.pruned,
                "scores": {k: [None if np.isnan(x) else float(x) for x in v]
                           for k, v in self.scores.items()}}


class DecisionState:
    """Which edges are fixed or pruned, plus the q history for criterion 2."""

    def __init__(self, criterion: int, history_size: int = 4):
        if criterion not in (1, 2):
            raise ConfigError(f"SGAS criterion must be 1 or 2, got {criterion!r}")
        self.criterion, self.history_size = criterion, history_size
        self.selected: list[int] = [UNDECIDED] * len(EDGES)
        self.history: list[np.ndarray] = []

    def candidates(self) -> np.ndarray:
        return np.array([s == UNDECIDED for s in self.selected])

    @property
    def done(self) -> bool:
        return not self.candidates().any()

    def observe(self, probs: np.ndarray) -> dict:
        """Score the edges with this epoch's probabilities, then add them to the history."""
        scores = edge_scores(probs, self.candidates(), self.criterion, self.history)
        self.history.append(non_none(probs)[1])
        del self.history[:-self.history_size]
        return scores

    def decide(self, probs: np.ndarray, scores: dict, epoch: int) -> Decision:
        """Fix the best-scoring candidate to its best non-none op; prune full nodes."""
        cand = self.candidates()
        if not cand.any():
            raise RuntimeError("no undecided edge left")
        masked = np.where(cand, np.nan_to_num(scores["score"], nan=-np.inf), -np.inf)
        edge = int(np.argmax(masked))
        op = int(np.argmax(np.asarray(probs)[edge, 1:])) + 1
        self.selected[edge] = op
        return Decision(epoch, edge, op, self.prune(), scores)

    def prune(self) -> list[int]:
        """Edges pruned because their node already keeps two fixed edges."""
        pruned = []
        for node in range(N_NODES):
            edges = node_edges(node)
            if sum(self.selected[e] > NONE for e in edges) >= KEPT_PER_NODE:
                for e in edges:
                    if self.selected[e] == UNDECIDED:
                        self.selected[e] = NONE
                        pruned.append(e)
        return pruned

    def genotype(self, probs: np.ndarray, cells: int, channels: int, k: int,
                 **meta) -> Genotype:
        """The genotype of the fixed edges; nodes still short of two edges (a search stopped
        early) take their most important undecided edges, each at its best non-none op."""
        ops = derive(self.selected, probs)
        forced = [e for e, s in enumerate(self.selected) if s == UNDECIDED and ops[e] > NONE]
        if forced:
            meta["forced_edges"] = forced
        return Genotype.from_edge_ops([PRIMITIVES[o] for o in ops], cells, channels, k,
                                      **meta).validate()

    def state(self) -> dict:
        return {"criterion": self.criterion, "selected": list(self.selected),
                "history": [h.tolist() for h in self.history]}
