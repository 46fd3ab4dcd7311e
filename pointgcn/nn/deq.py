"""Deep equilibrium backbone (`block: deq`): one graph layer applied to its own output until
it stops changing, z* = f(z*, x), instead of a stack of layers.

    f(z; x) = act(GroupNorm₁(conv(z, G) + U x))         G = kNN(x), built once

The graph is built once, from the injected input x: a graph rebuilt from z inside the solve
would move the fixed point with every iteration. GroupNorm, not BatchNorm: per sample, so a
cloud's equilibrium does not depend on its batch, and no running statistics change per
iteration. Forward: Anderson acceleration (fixed_point.py) without autograd. Backward, by
the implicit function theorem: dL/dθ = yᵀ ∂f/∂θ where y solves the adjoint fixed point
y = J_f(z*)ᵀ y + dL/dz* with the same solver (a hook on the output), so nothing of the
iterations is stored and memory does not grow with them. `phantom_grad: k` instead
backpropagates through k damped steps z ← (1−β) z + β f(z) from z* (k = 1, β = 1: the
Jacobian-free gradient). The solver's iterations and residual are logged (DEBUG, logger
`pointgcn.nn.deq`; the first solve that misses its tolerance as a WARNING) and kept in
`.stats`.

ONNX has no linear solve, so the exported model (and PyTorch under `unrolled`, for parity)
runs `export_iters` damped Picard steps from zero; export reports how far that is from the
solved model.
"""
from __future__ import annotations

import contextlib
import logging
import torch
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError
from ..graph import DilatedKnn, is_exporting
from .fixed_point import anderson
from .norm_act import make_act
from .registry import BLOCKS

log = logging.getLogger(__name__)

DEQ_DEFAULTS = dict(tol=1e-4, max_iter=30, memory=5, damping=1.0, backward_tol=None,
                    backward_max_iter=None, phantom_grad=0, export_iters=None)


def resolve_deq(options: dict | None) -> dict:
    """The `model.deq` section with defaults filled (backward_* default to the forward's,
    export_iters to max_iter); one-line ConfigError for unknown keys or bad values."""
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise ConfigError(f"model.deq must be a mapping of solver options, got {options!r}")
    unknown = set(options) - set(DEQ_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown model.deq keys: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(DEQ_DEFAULTS)})")
    d = {**DEQ_DEFAULTS, **options}
    d["backward_tol"] = d["tol"] if d["backward_tol"] is None else d["backward_tol"]
    for key in ("max_iter", "backward_max_iter", "export_iters"):
        d[key] = d["max_iter"] if d[key] is None else d[key]
    for key in ("max_iter", "backward_max_iter", "export_iters", "memory"):
        check_int(d, key, "model.deq", maximum=10_000)
    check_int(d, "phantom_grad", "model.deq", minimum=0, maximum=10_000)
    for key in ("tol", "backward_tol"):
        check_number(d, key, "model.deq", "[0, inf)", allow_none=False)
    check_number(d, "damping", "model.deq", "(0, 1]", allow_none=False)
    return d


INIT_SCALE = 0.25  # of the conv's weight matrices at construction (see DEQ.__init__)


@BLOCKS.register("deq", stack=True)
class DEQ(nn.Module):
    def __init__(self, conv: nn.Module, graph: DilatedKnn, act: str = "relu", **options):
        super().__init__()
        c = conv.in_channels
        self.conv, self.graph = conv, graph
        self.inject = nn.Conv1d(c, c, 1)
        # one group (all channels and points of a cloud): with a group per channel (C 8) or 4
        # (C 16) the solve stalled at residuals 1e-1 / 4e-2 where one group converged
        self.norm = nn.GroupNorm(1, c)
        self.act = make_act(act)
        self.options = resolve_deq(options)
        self.in_channels = self.out_channels = c
        self.unroll = False   # set by `unrolled`: run the exported computation
        self.stats: dict = {}
        self._warned: set[str] = set()
        with torch.no_grad():  # start contractive: at C 16 / 64, k 16, N 256 the solve reached
            for p in conv.parameters():  # 1e-5 in 19 / 14 iterations vs 60+ / 50 at scale 0.5
                if p.dim() > 1:
                    p.mul_(INIT_SCALE)

    @classmethod
    def build_stack(cls, depth: int, channels: int, conv, graph_of, act: str = "relu",
                    deq: dict | None = None, **_):
        """One equilibrium layer whatever the depth; its graph has dilation 1."""
        return cls(conv(channels, channels, norm="none", act="none"), graph_of(0), act,
                   **(deq or {}))

    def cell(self, z: torch.Tensor, injected: torch.Tensor, idx) -> torch.Tensor:
        """f(z; x) with U x precomputed."""
        return self.act(self.norm(self.conv(z, idx) + injected))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.options
        idx = self.graph(x) if self.conv.needs_graph else None
        injected = self.inject(x)
        if self.unroll or is_exporting():
            return self._picard(torch.zeros_like(injected), injected, idx, o["export_iters"])
        with torch.no_grad():
            z, stats = anderson(lambda z: self.cell(z, injected, idx), torch.zeros_like(injected),
                                tol=o["tol"], max_iter=o["max_iter"], memory=o["memory"],
                                damping=o["damping"])
        self._log("forward", stats)
        if not torch.is_grad_enabled() or not (x.requires_grad or any(
                p.requires_grad for p in self.parameters())):
            return z
        if o["phantom_grad"]:
            return self._picard(z, injected, idx, o["phantom_grad"])
        z = self.cell(z, injected, idx)        # attaches θ and x: dL/dθ = yᵀ ∂f/∂θ
        z0 = z.detach().requires_grad_()
        f0 = self.cell(z0, injected.detach(), idx)   # J_f at the fixed point, for the adjoint

        def adjoint(grad: torch.Tensor) -> torch.Tensor:
            def vjp(y):
                return torch.autograd.grad(f0, z0, y, retain_graph=True)[0] + grad
            y, stats = anderson(vjp, grad, tol=o["backward_tol"],
                                max_iter=o["backward_max_iter"], memory=o["memory"],
                                damping=o["damping"])
            self._log("backward", stats)
            return y

        z.register_hook(adjoint)
        return z

    def _picard(self, z, injected, idx, steps: int) -> torch.Tensor:
        beta = self.options["damping"]
        for _ in range(steps):
            z = self.cell(z, injected, idx) if beta == 1.0 else \
                (1 - beta) * z + beta * self.cell(z, injected, idx)
        return z

    def _log(self, phase: str, stats) -> None:
        """Every solve at DEBUG; the first that misses its tolerance, once, as a warning."""
        self.stats[phase] = stats.as_dict()
        log.debug("deq %s: %d iterations, relative residual %.2e%s", phase, stats.iterations,
                  stats.residual, "" if stats.converged else " (tolerance not reached)")
        if not stats.converged and phase not in self._warned:
            self._warned.add(phase)
            tol = self.options["tol" if phase == "forward" else "backward_tol"]
            log.warning("deq %s solve stopped at relative residual %.1e after %d iterations "
                        "(tolerance %.0e); later misses are logged at DEBUG", phase,
                        stats.residual, stats.iterations, tol)

    def extra_repr(self) -> str:
        o = self.options
        grad = f"phantom {o['phantom_grad']} steps" if o["phantom_grad"] else "implicit"
        return (f"tol={o['tol']:g}, max_iter={o['max_iter']}, memory={o['memory']}, "
                f"damping={o['damping']:g}, grad={grad}, export_iters={o['export_iters']}")


def deq_layers(model: nn.Module) -> list[DEQ]:
    return [m for m in model.modules() if isinstance(m, DEQ)]


@contextlib.contextmanager
def unrolled(model: nn.Module, enabled: bool = True):
    """Run every DEQ of `model` as exported: `export_iters` Picard steps, no solver (or, with
    `enabled` False, with the solver whatever the caller set)."""
    layers = deq_layers(model)
    old = [m.unroll for m in layers]
    for m in layers:
        m.unroll = enabled
    try:
        yield layers
    finally:
        for m, u in zip(layers, old):
            m.unroll = u
