"""Over-smoothing diagnostics against hand computation, brute force and PyG's operator, and
`pointgcn analyze` end to end."""
import json
import math

import numpy as np
import pytest
import torch

from pointgcn.engine.diagnostics import (dirichlet_energy, effective_rank,
                                         group_distance_ratio, instance_information_gain)
from pointgcn.errors import InputError


def test_group_distance_ratio_by_hand():
    # class 0 at 0 and 2, class 1 at 10 (1-D, plain distances)
    x = np.array([[0.0], [2.0], [10.0]])
    y = np.array([0, 0, 1])
    intra = ((0 + 2 + 2 + 0) / 4 + 0) / 2    # mean over each class's full pair matrix
    inter = (10 + 8) / 2
    got = group_distance_ratio(x, y, normalize=False, squared=False)
    assert got == pytest.approx(inter / intra)
    squared = group_distance_ratio(x, y, normalize=False, squared=True)
    assert squared == pytest.approx(((100 + 64) / 2) / ((0 + 4 + 4 + 0) / 4 / 2))


def test_group_distance_ratio_three_classes_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)

    def mean_d(a, b):
        return np.mean([[np.sum((p - q) ** 2) for q in b] for p in a])

    groups = [unit[y == c] for c in range(3)]
    intra = np.mean([mean_d(g, g) for g in groups])
    inter = np.mean([mean_d(groups[i], groups[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    assert group_distance_ratio(x, y) == pytest.approx(inter / intra, rel=1e-9)


def test_group_distance_ratio_is_half_of_pyg_for_two_classes():
    from torch_geometric.nn import DiffGroupNorm

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.integers(0, 2, 40)
    pyg = DiffGroupNorm.group_distance_ratio(torch.tensor(x), torch.tensor(y), eps=0.0)
    assert 2 * group_distance_ratio(x, y, normalize=False, squared=False) == \
        pytest.approx(pyg, rel=1e-9)


def test_group_distance_ratio_limits():
    y = np.array([0, 0, 1, 1, -1])
    assert group_distance_ratio(np.ones((5, 3)), y) == 1.0  # everything smoothed into one
    apart = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [5, 5]], float)
    assert group_distance_ratio(apart, y) == math.inf       # classes apart, each a point
    with pytest.raises(InputError):
        group_distance_ratio(apart, np.zeros(5, int))


def _bd_entropy_brute(x, var):
    """Kolchinsky–Tracey Bhattacharyya bound, written out with loops."""
    n, d = x.shape
    v = 4 * var
    total = 0.0
    for i in range(n):
        s = sum(math.exp(-np.sum((x[i] - x[j]) ** 2) / (2 * v)) for j in range(n))
        total += math.log(s / n) - d / 2 * math.log(2 * math.pi * v)
    return d / 2 - total / n + d / 2 * math.log(0.25)


def test_instance_information_gain_brute_force():
    rng = np.random.default_rng(2)
    x, h = rng.normal(size=(24, 3)), rng.normal(size=(24, 4))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    win = h.argmax(1)
    cond = sum(np.mean(win == c) * _bd_entropy_brute(unit[win == c], 0.1)
               for c in np.unique(win))
    want = (_bd_entropy_brute(unit, 0.1) - cond) / math.log(2)
    assert instance_information_gain(x, h) == pytest.approx(want, rel=1e-9)


def test_instance_information_gain_limits():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 3))
    assert instance_information_gain(x, np.ones((20, 5))) == pytest.approx(0.0, abs=1e-12)
    # features that split the inputs into two far-apart halves keep information
    x2 = np.concatenate([np.tile([1.0, 0, 0], (10, 1)), np.tile([0, 1.0, 0], (10, 1))])
    h2 = np.concatenate([np.tile([1.0, 0], (10, 1)), np.tile([0, 1.0], (10, 1))])
    # two equal clusters at squared distance 2, kernel variance 4·0.1: the bound gives
    # log2(2) − log2(1 + exp(−2 / (2·0.4))) bits (each cluster's own entropy cancels)
    want = 1 - math.log2(1 + math.exp(-2 / 0.8))
    assert instance_information_gain(x2, h2) == pytest.approx(want, rel=1e-9)


def test_dirichlet_energy_and_effective_rank_closed_forms():
    h = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    nbrs = np.array([[1], [0], [1]])
    raw = (1 + 1 + 4) / 3
    assert dirichlet_energy(h, nbrs, relative=False) == pytest.approx(raw)
    assert dirichlet_energy(h, nbrs) == pytest.approx(raw / ((0 + 1 + 9) / 3))
    assert dirichlet_energy(np.full((3, 2), 7.0), nbrs) == 0.0
    line = np.outer(np.arange(10.0), [1.0, 2.0, -1.0])
    assert effective_rank(line) == pytest.approx(1.0)
    cube = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    assert effective_rank(cube) == pytest.approx(3.0)


def test_analyze_captures_each_layer(synth_root):
    """Layer 0 of the report is the model's head output on the drawn points (checked by
    recomputing it), and there is one row per layer."""
    from conftest import rooms_config
    from pointgcn.data.build import build_datasets
    from pointgcn.engine.analyze import analyze
    from pointgcn.models import build_model

    cfg = rooms_config(synth_root)
    data = build_datasets(cfg, ("val",))
    data.complete_model_config(cfg["model"])
    torch.manual_seed(0)
    model = build_model(cfg["model"]).eval()
    reports = analyze(model, data.val, task=data.task, max_samples=1, max_points=10_000)
    assert [r.name for r in reports] == ["head", "block1", "block2"]
    feats, labels = data.val[int(np.random.default_rng(0).permutation(len(data.val))[0])]
    with torch.no_grad():
        head = model.features(torch.as_tensor(feats)[None])[0][0].T.numpy()
    rng = np.random.default_rng(0)
    rng.permutation(len(data.val))
    take = rng.permutation(feats.shape[1])[:10_000]
    assert reports[0].effective_rank == pytest.approx(effective_rank(head[take]), rel=1e-6)
    assert reports[0].group_distance_ratio == pytest.approx(
        group_distance_ratio(head[take], np.asarray(labels)[take]), rel=1e-6)


def test_analyze_cli(tmp_path, synth_root):
    from conftest import rooms_config

    from apps.cli import main

    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(json.dumps(rooms_config(synth_root)))  # JSON is YAML
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    out = tmp_path / "d.json"
    assert main(["analyze", str(ckpt), "--samples", "2", "--json", str(out),
                 "--png", str(tmp_path / "d.png")]) == 0
    rows = json.loads(out.read_text())["models"]
    (layers,) = rows.values()
    assert len(layers) == rooms_config(synth_root)["model"]["n_blocks"]
    assert all(math.isfinite(r["instance_information_gain"]) for r in layers)
    assert (tmp_path / "d.png").stat().st_size > 0
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not onnx")
    assert main(["analyze", str(bad)]) == 2
