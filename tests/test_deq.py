"""Deep equilibrium backbone: the solver, the implicit gradient, memory, config."""
import pytest
import torch

from pointgcn.errors import ConfigError
from pointgcn.models import build_model
from pointgcn.nn import DEQ, anderson, make_backbone, resolve_deq, unrolled

from test_reversible import saved_bytes


def _deq(channels=8, k=4, **options):
    torch.manual_seed(0)
    layer, _ = make_backbone("deq", 1, channels, "edge", k, deq=options)
    return layer.double()


def _contraction(n=40, norm=0.98, seed=0):
    """A symmetric map with eigenvalues spread over [−0.5, norm] (slow for plain iteration)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(-0.5, norm, n, dtype=torch.float64)) @ q.T
    return a, torch.randn(3, n, generator=g, dtype=torch.float64)


def test_anderson_solves_a_contractive_linear_map_exactly():
    a, b = _contraction()
    exact = torch.linalg.solve(torch.eye(40, dtype=a.dtype) - a, b.T).T
    runs = {m: anderson(lambda z: z @ a.T + b, torch.zeros_like(b), tol=1e-12, max_iter=5000,
                        memory=m) for m in (1, 5, 41)}
    for z, stats in runs.values():
        assert stats.converged and stats.residual <= 1e-12
        assert torch.allclose(z, exact, atol=1e-9)
    # with the whole history, Anderson on a linear map is GMRES: exact after n + 1 = 41 steps
    # in exact arithmetic (the float64 normal equations lose a few: 50 measured)
    assert runs[41][1].iterations <= 52
    # m = 1 is damped Picard iteration: many more evaluations of f than a window of 5
    assert runs[1][1].iterations > 3 * runs[5][1].iterations > 3 * 41


def test_anderson_stops_at_max_iter_and_reports_the_residual_of_what_it_returns():
    a, b = _contraction(norm=0.99)
    f = lambda z: z @ a.T + b  # noqa: E731
    z, stats = anderson(f, torch.zeros_like(b), tol=0.0, max_iter=7)
    assert stats.iterations == 7 and not stats.converged
    fz = f(z)
    assert stats.residual == pytest.approx(float(((fz - z).norm(dim=1) / fz.norm(dim=1)).max()))


def test_deq_forward_reaches_its_tolerance_on_a_contractive_map():
    layer = _deq(tol=1e-10, max_iter=200).eval()
    x = torch.randn(2, 8, 64, dtype=torch.float64)
    with torch.no_grad():
        z = layer(x)
        fz = layer.cell(z, layer.inject(x), layer.graph(x))
    assert layer.stats["forward"]["converged"]
    assert layer.stats["forward"]["iterations"] < 200
    assert ((fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1)).max() <= 1e-10


def _unrolled_grads(layer, x, steps=400):
    """Autograd through plain iterations z ← f(z) from 0, run to convergence."""
    x = x.clone().requires_grad_()
    injected, idx = layer.inject(x), layer.graph(x)
    z = torch.zeros_like(injected)
    for _ in range(steps):
        z = layer.cell(z, injected, idx)
    (z * torch.linspace(-1, 1, z.shape[2], dtype=z.dtype)).sum().backward()
    return [x.grad] + [p.grad.clone() for p in layer.parameters()]


def _model_grads(layer, x):
    x = x.clone().requires_grad_()
    layer.zero_grad()
    z = layer(x)
    (z * torch.linspace(-1, 1, z.shape[2], dtype=z.dtype)).sum().backward()
    return [x.grad] + [p.grad.clone() for p in layer.parameters()]


def test_implicit_gradient_equals_backprop_through_the_converged_iterations():
    layer = _deq(tol=1e-12, max_iter=300).train()
    x = torch.randn(2, 8, 48, dtype=torch.float64)
    implicit = _model_grads(layer, x)
    assert layer.stats["forward"]["converged"] and layer.stats["backward"]["converged"]
    layer.zero_grad()
    unrolled_ = _unrolled_grads(layer, x)
    assert len(implicit) == len(unrolled_) > 4
    for a, b in zip(implicit, unrolled_):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9), (a - b).abs().max()


def test_phantom_gradient_approaches_the_implicit_one_with_more_steps():
    x = torch.randn(2, 8, 48, dtype=torch.float64)
    exact = _model_grads(_deq(tol=1e-12, max_iter=300).train(), x)

    def err(steps):
        got = _model_grads(_deq(tol=1e-12, max_iter=300, phantom_grad=steps).train(), x)
        # relative to the largest gradient: biases before a one-channel GroupNorm get ≈ 0
        return max(float((a - b).norm()) for a, b in zip(got, exact)) / scale

    scale = max(float(b.norm()) for b in exact)

    one, many = err(1), err(60)
    assert many < 1e-6 < one  # one step (Jacobian-free) is an approximation


def test_deq_memory_does_not_grow_with_iterations():
    cfg = dict(n_blocks=2, channels=16, k=4, fusion_channels=16, prediction=[8], in_channels=3,
               n_classes=3, block="deq", stochastic=False, dropout=0.0)
    few = saved_bytes({**cfg, "deq": {"tol": 0.0, "max_iter": 5}})
    many = saved_bytes({**cfg, "deq": {"tol": 0.0, "max_iter": 40}})
    unrolled_cfg = {**cfg, "deq": {"tol": 0.0, "max_iter": 40, "phantom_grad": 20}}
    assert few == many
    assert saved_bytes(unrolled_cfg) > 5 * many  # backprop through 20 steps stores them


def test_each_cloud_has_its_own_equilibrium_whatever_its_batch():
    layer = _deq(tol=1e-11, max_iter=200).eval()
    x = torch.randn(3, 8, 40, dtype=torch.float64)
    with torch.no_grad():
        together, alone = layer(x), layer(x[1:2])
    assert torch.allclose(together[1:2], alone, atol=1e-9)


def test_unrolled_runs_export_iters_picard_steps():
    layer = _deq(export_iters=3).eval()
    x = torch.randn(1, 8, 32, dtype=torch.float64)
    with torch.no_grad(), unrolled(layer):
        got = layer(x)
        injected, idx = layer.inject(x), layer.graph(x)
        z = torch.zeros_like(injected)
        for _ in range(3):
            z = layer.cell(z, injected, idx)
    assert torch.equal(got, z) and not layer.unroll


def test_deq_model_config():
    tiny = dict(n_blocks=3, channels=8, k=4, fusion_channels=8, prediction=[8], in_channels=3,
                n_classes=2, block="deq")
    model = build_model({**tiny, "deq": {"max_iter": 7}})
    assert isinstance(model.backbone, DEQ)
    assert model.cfg["deq"] == {**resolve_deq({}), "max_iter": 7, "backward_max_iter": 7,
                                "export_iters": 7}
    assert model.cfg["fusion_input"] == "last"
    with pytest.raises(ConfigError, match="unknown model.deq keys: iters"):
        build_model({**tiny, "deq": {"iters": 3}})
    with pytest.raises(ConfigError, match="damping"):
        build_model({**tiny, "deq": {"damping": 0}})
    with pytest.raises(ConfigError, match="model.deq configures block: deq"):
        build_model({**tiny, "block": "res", "deq": {"max_iter": 3}})
    assert "deq" not in build_model({**tiny, "block": "res"}).cfg


def test_deq_trains_under_autocast():
    """bf16 iterates: the solver's small least-squares problems run in float64."""
    torch.manual_seed(0)
    layer, _ = make_backbone("deq", 1, 8, "edge", 4, deq={"tol": 1e-2, "max_iter": 20})
    x = torch.randn(2, 8, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer.train()(x)
    z.float().square().mean().backward()
    assert layer.stats["forward"]["converged"] and "backward" in layer.stats
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_solver_stats_are_logged_and_a_missed_tolerance_warns_once(caplog):
    layer = _deq(tol=0.0, max_iter=3).eval()
    x = torch.randn(1, 8, 32, dtype=torch.float64)
    with caplog.at_level("DEBUG", logger="pointgcn.nn.deq"), torch.no_grad():
        layer(x)
        layer(x)
    debug = [r for r in caplog.records if r.levelname == "DEBUG"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(debug) == 2 and "3 iterations" in debug[0].getMessage()
    assert len(warnings) == 1 and "after 3 iterations" in warnings[0].getMessage()
    assert layer.stats["forward"]["iterations"] == 3
