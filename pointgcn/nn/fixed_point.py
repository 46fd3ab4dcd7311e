"""Fixed points z = f(z) by Anderson acceleration, for equilibrium layers (deq.py).

Anderson (type II, as in Walker & Ni 2011): keep the last m iterates x_i and their images
f_i = f(x_i), with residuals g_i = f_i − x_i. The next iterate mixes them with the weights α
that minimise ‖Σ α_i g_i‖ subject to Σ α_i = 1:
    x ← β Σ α_i f_i + (1 − β) Σ α_i x_i            (β: damping; m = 1 is damped Picard),
solved in differences by least squares (`_step`).
Every sample of the batch is its own problem (its own α), so one cloud's solution does not
depend on the others in its batch. Stops when every sample's relative residual
‖f(x) − x‖ / ‖f(x)‖ is at most `tol`, or after `max_iter` evaluations of f; returns the last
evaluated x, whose residual the stats report. Memory: 2m copies of z, whatever the iterations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

RIDGE = 1e-13  # relative to ΔGᵀΔG's largest diagonal entry: drops collinear directions
TINY = 1e-30   # keeps the relative residual finite at f(x) = 0


@dataclass
class SolverStats:
    iterations: int      # evaluations of f
    residual: float      # max over the batch of ‖f(x) − x‖ / ‖f(x)‖ at the returned x
    converged: bool      # residual ≤ tol

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "residual": self.residual,
                "converged": self.converged}


def relative_residual(fx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per sample (rows of flat (B, D) tensors): ‖f(x) − x‖ / ‖f(x)‖."""
    return (fx - x).norm(dim=1) / (fx.norm(dim=1) + TINY)


def anderson(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, tol: float,
             max_iter: int, memory: int = 5, damping: float = 1.0
             ) -> tuple[torch.Tensor, SolverStats]:
    """Solve z = f(z) from z0 (any shape, batch first); see the module docstring."""
    shape, b = z0.shape, z0.shape[0]
    x = z0.reshape(b, -1)
    xs: list[torch.Tensor] = []
    gs: list[torch.Tensor] = []
    residual = torch.full((b,), float("inf"), dtype=x.dtype, device=x.device)
    it = 0
    for it in range(1, max_iter + 1):
        fx = f(x.view(shape)).reshape(b, -1)
        residual = relative_residual(fx, x)
        if it == max_iter or bool((residual <= tol).all()):
            break
        xs.append(x)
        gs.append(fx - x)
        if len(xs) > memory:
            xs.pop(0), gs.pop(0)
        x = _step(xs, gs, damping)
    worst = float(residual.max())
    return x.view(shape), SolverStats(it, worst, worst <= tol)


def _step(xs: list[torch.Tensor], gs: list[torch.Tensor], damping: float) -> torch.Tensor:
    """The Anderson step from the kept iterates and residuals (each (B, D), newest last).

    The constrained problem in differences: γ = argmin ‖g_k − ΔG γ‖ (ΔG: columns g_{i+1} − g_i),
    then x ← x_k + β g_k − (ΔX + β ΔG) γ — the same point as mixing with α. The small normal
    equations ΔGᵀΔG γ = ΔGᵀg are formed and solved in float64 whatever the working precision
    (float32, bfloat16 under autocast), on any device, so their squared condition number costs
    no float32 digits (a QR least squares did no better in float32 and has no bf16 or robust
    CUDA path)."""
    x, g = xs[-1], gs[-1]
    if len(xs) == 1:
        return x + damping * g
    dx = torch.stack([b - a for a, b in zip(xs, xs[1:])], dim=2)
    dg = torch.stack([b - a for a, b in zip(gs, gs[1:])], dim=2)
    d64 = dg.double()
    gram = d64.transpose(1, 2) @ d64
    ridge = RIDGE * gram.diagonal(dim1=1, dim2=2).amax(1).clamp_min(TINY)
    gram = gram + ridge.view(-1, 1, 1) * torch.eye(gram.shape[1], dtype=gram.dtype,
                                                   device=gram.device)
    gamma = torch.linalg.solve(gram, d64.transpose(1, 2) @ g.double().unsqueeze(2))
    return x + damping * g - ((dx + damping * dg) @ gamma.to(dg.dtype)).squeeze(2)
