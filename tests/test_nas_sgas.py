"""SGAS: criteria against hand-computed values, the schedule, pruning and frozen α."""
import numpy as np
import pytest
import torch
from scipy.stats import entropy

from conftest import memory_bundle
from pointgcn.errors import ConfigError
from pointgcn.engine.batches import collate
from pointgcn.nas.search import resolve_search, search_supernet, supernet_trainer
from pointgcn.nas.sgas import (DecisionState, edge_scores, is_decision_epoch, minmax,
                               schedule_length)


pytestmark = pytest.mark.usefixtures("one_thread")


def _probs(p_none, q):
    """A row of mixing probabilities with P(none) and the non-none distribution q (9,)."""
    q = np.asarray(q, float) / np.sum(q)
    return np.concatenate([[p_none], (1 - p_none) * q])


PEAK_A = [0.9] + [0.1 / 8] * 8          # mass on op 1 (skip_connect)
PEAK_B = [0.1 / 8] * 8 + [0.9]          # mass on op 9 (rel_sage)
FLAT = [1.0] * 9


def _scenario():
    """Edges 0, 1, 2 undecided (the rest decided). Edge 0: most important and certain, but its
    distribution just moved from B to A; edge 1: a bit less important, stable on A; edge 2:
    unimportant and flat."""
    probs = np.tile(_probs(0.5, FLAT), (9, 1))
    probs[0] = _probs(0.05, PEAK_A)
    probs[1] = _probs(0.2, [0.8] + [0.2 / 8] * 8)
    probs[2] = _probs(0.5, FLAT)
    hist = np.tile(np.asarray(FLAT) / 9, (9, 1))
    hist[0] = np.asarray(PEAK_B) / np.sum(PEAK_B)
    hist[1] = probs[1, 1:] / probs[1, 1:].sum()
    cand = np.array([True, True, True] + [False] * 6)
    return probs, hist, cand


def test_criteria_by_hand():
    probs, hist, cand = _scenario()
    s1 = edge_scores(probs, cand, 1)
    s2 = edge_scores(probs, cand, 2, [hist, hist])
    # importance = 1 − p_none; certainty = 1 − H(q)/log 9 (scipy's entropy, natural log)
    imp = np.array([0.95, 0.8, 0.5])
    cert = np.array([1 - entropy(probs[e, 1:]) / np.log(9) for e in range(3)])
    np.testing.assert_allclose(s1["importance"][:3], imp)
    np.testing.assert_allclose(s1["certainty"][:3], cert)
    expected1 = (imp - 0.5) / 0.45 * (cert - cert.min()) / (cert.max() - cert.min())
    np.testing.assert_allclose(s1["score"][:3], expected1)
    assert np.isnan(s1["score"][3:]).all()
    # stability: Σ min(q, h) — edge 0: 0.1/8 on op 1 + 0.1/8 on op 9 + 7·(0.1/8) = 0.1125
    stab = np.array([9 * 0.1 / 8, 1.0, 1.0])
    np.testing.assert_allclose(s2["stability"][:3], stab)
    np.testing.assert_allclose(s2["score"][:3], expected1 * (stab - stab.min()) / (1 - stab.min()))
    # criterion 1 fixes edge 0, criterion 2 edge 1 (edge 0 is not stable yet)
    for criterion, hist_list, edge in ((1, [], 0), (2, [hist, hist], 1)):
        state = DecisionState(criterion)
        state.selected = [-1, -1, -1, 3, 3, 0, 0, 3, 3]
        state.history = hist_list
        decision = state.decide(probs, state.observe(probs), epoch=9)
        assert (decision.edge, decision.op) == (edge, 1)  # op 1 = argmax of q, never none
        assert state.selected[edge] == 1


def test_never_chooses_none_and_minmax_of_equal_values():
    probs = np.tile(_probs(0.5, FLAT), (9, 1))
    probs[4] = np.array([0.91] + [0.01] * 9)
    probs[4, 7] = 0.02  # p_none dominates; among the others gin leads
    probs[4] /= probs[4].sum()
    state = DecisionState(1)
    state.selected = [3, 3, -1, -1, -1, 0, 0, 3, 3]
    scores = state.observe(probs)
    np.testing.assert_array_equal(minmax(np.array([2.0, 2.0])), [0.0, 0.0])
    d = state.decide(probs, scores, 0)
    assert d.op != 0


def test_pruning_once_a_node_keeps_two_edges():
    state = DecisionState(1)
    probs = np.tile(_probs(0.1, PEAK_A), (9, 1))
    # node 2 owns edges 5..8; fix two of them by hand-shaped scores
    for edge in (6, 8):
        scores = {"score": np.where(np.arange(9) == edge, 1.0, 0.0)}
        d = state.decide(probs, scores, epoch=0)
    assert d.pruned == [5, 7]
    assert state.selected[5:] == [0, 1, 0, 1]
    assert state.selected[:5] == [-1] * 5


def test_schedule_of_the_paper_config():
    assert schedule_length(9, 7, 5) == 50
    assert [e for e in range(50) if is_decision_epoch(e, 9, 7)][:6] == [9, 16, 23, 30, 37, 44]
    assert resolve_search({})["epochs"] == 50
    with pytest.raises(ConfigError, match="criterion"):
        resolve_search({"criterion": 3})
    with pytest.raises(ConfigError, match="latency regressor"):
        resolve_search({"method": "lcnas", "target_ms": 5})


@pytest.mark.parametrize("cfg,msg", [
    ({"lr": -1}, "search.lr"), ({"arch_lr": -1}, "search.arch_lr"),
    ({"lr": None}, "search.lr"), ({"momentum": -1}, "search.momentum"),
    ({"arch_betas": [2]}, "search.arch_betas"), ({"arch_betas": [0.5, 2]}, "arch_betas"),
    ({"grad_clip": "abc"}, "search.grad_clip"), ({"max_batches": "abc"}, "max_batches"),
    ({"max_batches": 0}, "max_batches"), ({"target_ms": "abc", "method": "lcnas",
                                           "latreg": "r.pt"}, "target_ms"),
    ({"lambda": -1, "method": "lcnas", "latreg": "r.pt", "target_ms": 5}, "search.lambda"),
    ({"lambda": 0, "method": "lcnas", "latreg": "r.pt"}, "lambda L > 0"),
])
def test_bad_search_numbers_are_one_line_config_errors(cfg, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        resolve_search(cfg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dropout", [7, -0.1, "abc", None])
def test_bad_dropout_is_a_config_error(dropout):
    from pointgcn.nas.network import resolve
    with pytest.raises(ConfigError, match="model.dropout"):
        resolve({**TINY_MODEL, "dropout": dropout}, need_genotype=False)


def test_a_search_failing_at_its_first_step_writes_nothing(tmp_path):
    cfg = {"seed": 0, "model": {**TINY_MODEL, "k": 40},  # more neighbours than points
           "search": {"warmup_epochs": 0, "decision_freq": 1, "epochs": 1, "batch_size": 4}}
    out = tmp_path / "run"
    with pytest.raises(Exception):
        search_supernet(cfg, out, tiny_bundle(), progress=False)
    assert not out.exists()


def tiny_bundle(n=24, n_classes=3, points=24, seed=0):
    """In-memory classification data: class c = a cloud stretched along axis c."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        c = i % n_classes
        x = rng.normal(size=(3, points)).astype(np.float32)
        x[c] *= 3.0
        items.append((torch.from_numpy(x), torch.tensor(c)))
    return memory_bundle(items[: n * 2 // 3], items[n * 2 // 3:],
                         [f"c{i}" for i in range(n_classes)], "classification")


TINY_MODEL = dict(cells=1, channels=4, k=4, fusion_channels=8, prediction=[8], dropout=0.0)


def test_searcher_freezes_decided_alpha_and_prunes(tmp_path):
    cfg = {"seed": 0, "model": TINY_MODEL,
           "search": {"warmup_epochs": 0, "decision_freq": 1, "post_epochs": 0,
                      "batch_size": 4, "arch_lr": 0.05}}
    s = supernet_trainer(cfg, tmp_path, tiny_bundle(), progress=False).hooks[0]
    # fix edges 5 and 6 (node 2) → 7 and 8 are pruned; frozen rows must not move
    s.decisions.selected = [-1, -1, -1, -1, -1, 3, 4, -1, -1]
    s.decisions.prune()
    s.apply_decisions()
    assert s.model.selected == [-1, -1, -1, -1, -1, 3, 4, 0, 0]
    before = s.model.alpha_matrix().detach().clone()
    feats, labels = collate([s.trainer.data.val[i] for i in range(4)])
    s.arch_step(feats, labels)
    after = s.model.alpha_matrix().detach()
    assert torch.equal(after[5:], before[5:])
    assert not torch.equal(after[:5], before[:5])
    assert all(a.grad is None for a in s.model.alphas)


def test_full_schedule_gives_a_genotype_with_two_edges_per_node(tmp_path):
    cfg = {"seed": 1, "model": TINY_MODEL,
           "search": {"warmup_epochs": 0, "decision_freq": 1, "post_epochs": 0,
                      "batch_size": 8, "batch_increase": 2, "max_batches": 1}}
    trainer = supernet_trainer(cfg, tmp_path, tiny_bundle(), progress=False)
    trainer.fit()
    genotype, summary = trainer.hooks[0].genotype, trainer.hooks[0].summary
    assert len(summary["decisions"]) == 6 and summary["epochs"] == 6
    genotype.validate(two_per_node=True)
    assert "forced_edges" not in genotype.meta
    assert all(op != "none" for node in genotype.nodes for op, _ in node)
    assert trainer.state["batch_size"] == 8 + 6 * 2
    assert (tmp_path / "genotype.yaml").is_file()
    rows = [line for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    assert len(rows) == 6


def test_segmentation_search_runs(tmp_path):
    """Per-point labels (label = sign of x): the same loop with the segmentation head."""
    rng = np.random.default_rng(0)
    items = []
    for _ in range(12):
        x = rng.normal(size=(3, 24)).astype(np.float32)
        items.append((torch.from_numpy(x), torch.from_numpy((x[0] > 0).astype(np.int64))))
    data = memory_bundle(items[:8], items[8:], ["neg", "pos"], "segmentation")
    cfg = {"seed": 0, "model": TINY_MODEL,
           "search": {"warmup_epochs": 0, "decision_freq": 1, "epochs": 1, "batch_size": 4}}
    search = search_supernet(cfg, tmp_path, data, progress=False)
    genotype, summary = search.genotype, search.summary
    genotype.validate()
    assert summary["key_metric"] == "miou" and 0 <= summary["val"]["miou"] <= 1


@pytest.mark.parametrize("key,value,message", [
    ("n_classes", 5, "model.n_classes is 5 but the data set gives 3"),
    ("in_channels", 6, "model.in_channels is 6 but the data set gives 3"),
    ("task", "segmentation", "model.task is segmentation but the data set gives classification"),
])
def test_search_refuses_a_model_that_does_not_fit_the_data(tmp_path, key, value, message):
    """As train does: a supernet for another class count or input would search nonsense (or
    fail later with a traceback); one line, nothing written."""
    cfg = {"seed": 0, "model": {**TINY_MODEL, key: value}, "search": {"epochs": 1}}
    with pytest.raises(ConfigError, match=message):
        supernet_trainer(cfg, tmp_path / "run", tiny_bundle(), progress=False)
    assert not (tmp_path / "run").exists()


# Recorded with the search loop of commit 43b9e18 (pointgcn/nas/search_loop.py, before SGAS
# became a hook on the engine's trainer), seed 3, at one thread: the shared loop must search
# the same architecture (genotype, order of decisions) and, on the CPU, the same numbers (the
# supernet's final validation loss, bit for bit).
GENOTYPE_BEFORE_SHARED_LOOP = {
    1: ([[["rel_sage", 0], ["sage", 1]], [["gat", 0], ["sage", 2]], [["edge_conv", 0], ["gat", 1]]],
        [5, 2, 0, 6, 4, 1], 0.8109961152076721),
    2: ([[["rel_sage", 0], ["semi_gcn", 1]], [["gat", 0], ["sage", 2]], [["gin", 1], ["rel_sage", 2]]],
        [7, 4, 2, 6, 0, 1], 1.0294245481491089),
}


@pytest.mark.parametrize("criterion", [1, 2])
def test_search_on_the_shared_loop_finds_the_genotype_it_found_before(tmp_path, criterion):
    cfg = {"seed": 3, "model": {**TINY_MODEL, "dropout": 0.2},
           "search": {"criterion": criterion, "warmup_epochs": 1, "decision_freq": 1,
                      "post_epochs": 1, "batch_size": 4, "batch_increase": 1, "max_batches": 3,
                      "arch_lr": 0.05}}
    torch.manual_seed(0)
    search = search_supernet(cfg, tmp_path, tiny_bundle(), progress=False)
    nodes, decided, val_loss = GENOTYPE_BEFORE_SHARED_LOOP[criterion]
    assert search.genotype.to_dict()["nodes"] == nodes
    assert [d["edge"] for d in search.summary["decisions"]] == decided
    assert search.summary["val"]["loss"] == val_loss
