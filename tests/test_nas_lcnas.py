"""LC-NAS: E(α) is exactly one-hot with the paper's gradient; the latency loss lowers latency."""
import numpy as np
import pytest
import torch

from pointgcn.nas.genotype import N_EDGES, N_OPS, Genotype
from pointgcn.nas.lcnas import differentiable_encoding, latency_loss
from pointgcn.nas.latreg import LatReg
from pointgcn.nas.ops import PRIMITIVES
from pointgcn.nas.search import search_supernet

from test_nas_sgas import TINY_MODEL, tiny_bundle

pytestmark = pytest.mark.usefixtures("one_thread")

# Per-op cost (ms) of an additive latency model: graph ops expensive, none/skip/1×1 cheap.
COST = torch.tensor([0.0, 0.1, 0.4, 3.0, 2.6, 3.4, 2.2, 2.0, 3.1, 3.2])


def additive_latreg(base=2.0) -> LatReg:
    """A LatReg whose 3 layers compute exactly base + Σ_e cost[op_e] (weights set by hand)."""
    reg = LatReg(hidden=N_EDGES * N_OPS)
    with torch.no_grad():
        for layer in (reg.net[0], reg.net[2]):
            layer.weight.copy_(torch.eye(N_EDGES * N_OPS))
            layer.bias.zero_()
        reg.net[4].weight.copy_(COST.repeat(N_EDGES).unsqueeze(0))
        reg.net[4].bias.fill_(base)
    return reg.eval().requires_grad_(False)


def test_encoding_forward_is_exactly_one_hot():
    torch.manual_seed(0)
    alpha = torch.randn(N_EDGES, N_OPS, requires_grad=True)
    enc = differentiable_encoding(alpha)
    hot = torch.nn.functional.one_hot(alpha.argmax(-1), N_OPS).float().reshape(-1)
    assert torch.equal(enc, hot)


def test_encoding_gradient_matches_the_closed_form():
    torch.manual_seed(1)
    alpha = torch.randn(N_EDGES, N_OPS, dtype=torch.float64, requires_grad=True)
    g = torch.randn(N_EDGES * N_OPS, dtype=torch.float64)
    (differentiable_encoding(alpha) * g).sum().backward()
    beta = torch.softmax(alpha.detach(), -1).numpy()
    star = beta.argmax(-1)
    gm = g.view(N_EDGES, N_OPS).numpy()
    expected = np.zeros((N_EDGES, N_OPS))
    for e in range(N_EDGES):
        gs = gm[e, star[e]]
        for n in range(N_OPS):  # ∂/∂α_n = g·(1 − β_n*) for n = n*, −g·β_n otherwise
            expected[e, n] = gs * (1 - beta[e, n]) if n == star[e] else -gs * beta[e, n]
    np.testing.assert_allclose(alpha.grad.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_decided_and_pruned_edges_are_constants():
    alpha = torch.randn(N_EDGES, N_OPS, requires_grad=True)
    selected = [-1, 4, 0, -1, -1, -1, -1, -1, 2]
    enc = differentiable_encoding(alpha, selected).view(N_EDGES, N_OPS)
    assert enc[1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert enc[2].tolist() == [1] + [0] * 9 and enc[8, 2] == 1
    enc.sum().backward()
    assert torch.equal(alpha.grad[[1, 2, 8]], torch.zeros(3, N_OPS))


def test_additive_latreg_prices_a_genotype():
    g = Genotype([[("gat", 0), ("skip_connect", 1)], [("conv_1x1", 0), ("gin", 2)],
                  [("sage", 3), ("mr_conv", 1)]])
    want = 2.0 + 3.4 + 0.1 + 0.4 + 2.0 + 3.1 + 2.6  # pruned edges are 'none' (cost 0)
    assert abs(float(additive_latreg()(torch.as_tensor(g.encoding()))) - want) < 1e-5


def test_latency_loss_pushes_latency_under_the_target():
    torch.manual_seed(2)
    reg = additive_latreg()
    alpha = torch.zeros(N_EDGES, N_OPS)
    alpha[:, 5] = 1.0  # every edge starts on gat, the most expensive op
    alpha.requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=0.05)
    start = float(reg(differentiable_encoding(alpha.detach())))
    target = 6.0
    for _ in range(300):
        loss = latency_loss(reg(differentiable_encoding(alpha)), 1.0, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = float(reg(differentiable_encoding(alpha.detach())))
    assert abs(start - (2.0 + 9 * 3.4)) < 1e-4 and end <= target
    # below the target the hinge is flat: no gradient, α stays put
    alpha.grad = None
    latency_loss(reg(differentiable_encoding(alpha)), 1.0, 1e3).backward()
    assert torch.equal(alpha.grad, torch.zeros_like(alpha))
    # without a target the loss is λ·LatReg itself
    assert float(latency_loss(torch.tensor(7.0), 0.5, None)) == 3.5


def test_tight_target_search_yields_an_architecture_under_it(tmp_path):
    """A short LC-NAS search with a heavy latency weight: the genotype's predicted latency
    ends under a target that only cheap cells meet (random cells cost ≈ 2 + 6·2.3 ms)."""
    reg = additive_latreg()
    target = 6.5
    cfg = {"seed": 0, "model": TINY_MODEL,
           "search": {"method": "lcnas", "latreg": "unused", "target_ms": target, "lambda": 0.5,
                      "warmup_epochs": 3, "decision_freq": 1, "post_epochs": 0,
                      "batch_size": 4, "batch_increase": 0, "max_batches": 4, "arch_lr": 0.1}}
    s = search_supernet(cfg, tmp_path, tiny_bundle(), progress=False, latreg=reg,
                        deploy_config={})
    genotype, summary = s.genotype, s.summary
    genotype.validate()
    predicted = float(reg(torch.as_tensor(genotype.encoding())))
    assert predicted <= target, genotype.describe()
    assert abs(summary["latency"]["predicted_ms"] - predicted) < 1e-5
    cheap = {"skip_connect", "conv_1x1"}
    assert sum(op in cheap for node in genotype.nodes for op, _ in node) >= 5
    assert all(op in PRIMITIVES[1:] for node in genotype.nodes for op, _ in node)
