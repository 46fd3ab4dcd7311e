"""LC-NAS (Li et al. 2020): the differentiable architecture encoding and the latency loss.

E(α): per edge, β = softmax(α_e) and n* = argmax β; ẽ = β · ζ with ζ_n* = 1/β_n* (a constant,
no gradient) and ζ_n = 0 elsewhere. The forward value is exactly the one-hot of n*, while
∂ẽ_n*/∂α_n = δ_n,n* − β_n, so a gradient g on the encoding reaches α as
g·(1 − β_n*) for n = n* and −g·β_n otherwise (the paper's closed form).

Edges already fixed by the search encode their op and pruned edges encode `none`, both as
constants (their α are frozen). The encoding is flattened to (90,), LatReg's input.

Which op is "current" on an undecided edge (`search.encoding`):
- `argmax`: n* = argmax over all 10 ops, `none` included — the literal per-edge reading. Under
  SGAS it prices cells the search never returns: an edge whose argmax is `none` looks free,
  yet every node ends with two edges at their best non-none op.
- `derived`: the cell the search would return now (`sgas.derive`: each node's most important
  undecided edges at their best non-none op, the others `none` constants).
- `upper` (default): every undecided edge at its best non-none op — the cell if all edges
  still open were kept, an over-estimate of the returned cell for latencies that grow with
  added edges. Pressure stays on every edge a later decision may fix, so the cell that is
  finally returned (whose encoding E(α) equals once all edges are decided) stays under the
  target; with `derived` an edge outside today's kept set keeps an expensive op unpenalised
  and a later decision can fix it (tiny test problem, tight target: met by 6 of 6 `upper`
  runs, 1 of 4 `derived` runs, 0 of 3 `argmax` runs).
The gradient is the closed form above in every mode (through β of the trainable edges).

Latency loss:  λ · max(LatReg(E(α)) − T, 0)   with a target T (ms),
               λ · LatReg(E(α))                without one (the paper's non-targeted ablation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .cell import UNDECIDED
from .genotype import N_OPS
from .ops import NONE
from .sgas import derive

ENCODINGS = ("upper", "derived", "argmax")


def differentiable_encoding(alphas: torch.Tensor, selected: list[int] | None = None,
                            hot: torch.Tensor | None = None) -> torch.Tensor:
    """(E, n_ops) architecture logits → (E·n_ops,) encoding, one-hot forward, gradient via β.

    `hot` (E,) picks n* per edge (default argmax β); `selected[e]` ≠ −1 makes edge e the
    constant one-hot of that op (0 = none)."""
    beta = F.softmax(alphas, dim=-1)
    star = beta.argmax(dim=-1, keepdim=True) if hot is None else hot.view(-1, 1).long()
    zeta = torch.zeros_like(beta).scatter(-1, star, 1.0 / beta.gather(-1, star).detach())
    soft = beta * zeta
    # β·(1/β) can round to 1 − ulp; adding (soft − soft) to the exact one-hot keeps the value
    # exact (x − x = 0 in floating point) and the gradient that of β·ζ.
    enc = torch.zeros_like(beta).scatter(-1, star, 1.0) + (soft - soft.detach())
    if selected is not None:
        rows = []
        for e, s in enumerate(selected):
            if s == UNDECIDED:
                rows.append(enc[e])
            else:  # fixed op or pruned (= none, index 0): a constant one-hot
                rows.append(F.one_hot(torch.tensor(s), N_OPS).to(enc.dtype))
        enc = torch.stack(rows)
    return enc.reshape(-1)


def search_encoding(alphas: torch.Tensor, selected: list[int], mode: str = "upper"
                    ) -> torch.Tensor:
    """E(α) during a search (see the module docstring for the two modes)."""
    if mode == "argmax":
        return differentiable_encoding(alphas, selected)
    if mode not in ENCODINGS:
        raise ValueError(f"encoding mode must be one of {ENCODINGS}, got {mode!r}")
    probs = F.softmax(alphas.detach(), dim=-1).double().numpy()
    if mode == "upper":
        ops = [int(probs[e, 1:].argmax()) + 1 if s == UNDECIDED else max(s, NONE)
               for e, s in enumerate(selected)]
    else:
        ops = derive(selected, probs)
    # undecided edges the derivation drops are constant 'none'; the kept ones stay trainable
    constant = [NONE if s == UNDECIDED and ops[e] == NONE else s for e, s in enumerate(selected)]
    return differentiable_encoding(alphas, constant, torch.tensor(ops))


def latency_loss(predicted_ms: torch.Tensor, lam: float, target_ms: float | None
                 ) -> torch.Tensor:
    if target_ms is None:
        return lam * predicted_ms
    return lam * torch.clamp(predicted_ms - target_ms, min=0.0)
