"""Reversible blocks (RevGNN): group additive coupling, activations recomputed in backward.

Split x into G ≥ 2 channel groups x_1…x_G and set y_0 = Σ_{i≥2} x_i. Then
    y_i = x_i + F_i(y_{i−1}),          F_i(z) = conv_i(z, kNN_d(z)),
and the inverse, given y:  x_i = y_i − F_i(y_{i−1}) for i = G…2, y_0 = Σ_{i≥2} x_i,
x_1 = y_1 − F_1(y_0). Each group builds its dynamic graph from its own input, so nothing but
the stack's output needs keeping: `RevStack` runs the whole stack under one autograd Function
that saves only its output and, in backward, walks back block by block — each F_i evaluated
once with grad both inverts and backprops — so training memory does not grow with depth, and
a step costs two forwards and a backward, not three (docs/performance.md).

Why not torch_geometric's `GroupAddRev`: it calls each conv three times per step with the
global RNG running on (stochastic dilation / dropout would draw different neighbours in the
inverse than in the forward and the inversion would be wrong), updates BatchNorm running stats
on every call, and keeps its graph arguments per block. Here each group's RNG state is recorded
and replayed, and running stats are restored after the inverse and the recompute.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import DilatedKnn, active_mask, point_mask
from .base import graph_for
from .registry import BLOCKS


@contextlib.contextmanager
def _replay_rng(state):
    """Run with the RNG state recorded at forward time; the global RNG is left untouched."""
    devices = [torch.cuda.current_device()] if state[1] is not None else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])
        yield


def _rng_state(x: torch.Tensor):
    return torch.get_rng_state(), (torch.cuda.get_rng_state() if x.is_cuda else None)


@contextlib.contextmanager
def _frozen_buffers(module: nn.Module):
    """Restore running statistics changed by a re-run (the forward already updated them)."""
    saved = [b.detach().clone() for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(module.buffers(), saved):
                b.copy_(s)


@BLOCKS.register("rev", stack=True)
class RevBlock(nn.Module):
    def __init__(self, convs: list[nn.Module], graph: DilatedKnn):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.graph = graph
        self.groups = len(convs)
        self.in_channels = self.out_channels = sum(c.in_channels for c in convs)

    @classmethod
    def build(cls, channels: int, conv, graph: DilatedKnn, rev_groups: int = 2, **_):
        """`rev_groups` convs of width channels / rev_groups (see `blocks.GraphBlock.build`)."""
        if rev_groups < 2 or channels % rev_groups:
            raise ConfigError(f"rev blocks need ≥ 2 groups dividing channels={channels}, "
                              f"got rev_groups={rev_groups}")
        width = channels // rev_groups
        return cls([conv(width, width) for _ in range(rev_groups)], graph)

    @classmethod
    def build_stack(cls, depth: int, channels: int, conv, graph_of, rev_groups: int = 2, **_):
        """`depth` blocks, each with its own convs and its graph `graph_of(i)`."""
        return RevStack([cls.build(channels, conv, graph_of(i), rev_groups)
                         for i in range(depth)])

    def _f(self, i: int, z: torch.Tensor, rng=None) -> torch.Tensor:
        conv = self.convs[i]
        with _replay_rng(rng) if rng is not None else contextlib.nullcontext():
            return conv(z, graph_for(conv, self.graph, z))

    def forward(self, x: torch.Tensor, rng_log: list | None = None,
                rng: list | None = None) -> torch.Tensor:
        """Coupling forward; records per-group RNG states in `rng_log`, or replays `rng`."""
        xs = x.chunk(self.groups, dim=1)
        y_prev = sum(xs[1:])
        ys = []
        for i in range(self.groups):
            if rng_log is not None:
                rng_log.append(_rng_state(x))
            y_prev = xs[i] + self._f(i, y_prev, None if rng is None else rng[i])
            ys.append(y_prev)
        return torch.cat(ys, dim=1)

    def inverse(self, y: torch.Tensor, rng: list) -> torch.Tensor:
        ys = y.chunk(self.groups, dim=1)
        xs = [None] * self.groups
        for i in range(self.groups - 1, 0, -1):
            xs[i] = ys[i] - self._f(i, ys[i - 1], rng[i])
        xs[0] = ys[0] - self._f(0, sum(xs[1:]), rng[0])
        return torch.cat(xs, dim=1)


class _RevStackFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, stack, *params):
        ctx.stack = stack
        ctx.rng = []
        ctx.mask = active_mask()  # a padded batch's mask, for the recomputation in backward
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        with torch.no_grad():
            for block in stack.blocks:
                log = []
                x = block(x, rng_log=log)
                ctx.rng.append(log)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad):  # under the forward's autocast state, so the inverse matches
        (y,) = ctx.saved_tensors
        stack = ctx.stack
        grads = {}
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device, dtype=dtype, enabled=enabled), point_mask(ctx.mask):
            grad = _backward_blocks(ctx, stack, y, grad, grads)
        return (grad, None, *[grads.get(p) for p in stack.trainable()])


def _backward_blocks(ctx, stack, y, grad, grads):
    """Walk back through the blocks (see _backward_block); returns dL/dx."""
    for block, rng in zip(reversed(stack.blocks), reversed(ctx.rng)):
        with _frozen_buffers(block):
            y, grad, got = _backward_block(block, y, grad, rng)
        for p, g in got.items():  # weight-tied stacks reuse a parameter in every block: sum
            if g is not None:
                grads[p] = g if grads.get(p) is None else grads[p] + g
    return grad


def _backward_block(block, y, grad, rng):
    """Invert one block and backprop through it, evaluating each F_i once.

    F_i's input for i ≥ 1 is y_{i−1}, known from the output, so F_i(y_{i−1}) computed with
    grad both inverts (x_i = y_i − F_i) and gives the vector-Jacobian product; F_1's input
    Σ_{i≥2} x_i follows. With ĝ_i = dL/dy_i (the incoming gradient plus what flows back
    through F_{i+1}), dL/dx_i = ĝ_i (+ dL/dΣ for i ≥ 2). Returns (x, dL/dx, {param: grad}).
    """
    ys = y.chunk(block.groups, dim=1)
    gs = list(grad.chunk(block.groups, dim=1))
    xs, grads = [None] * block.groups, {}

    def vjp(i, z, g):
        params = [p for p in block.convs[i].parameters() if p.requires_grad]
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f = block._f(i, z, rng[i])
        xs[i] = ys[i] - f.detach()
        got = torch.autograd.grad(f, [z] + params, g, allow_unused=True)
        for p, gp in zip(params, got[1:]):
            grads[p] = gp
        return got[0]

    for i in range(block.groups - 1, 0, -1):
        g_in = vjp(i, ys[i - 1], gs[i])
        gs[i - 1] = gs[i - 1] + g_in if g_in is not None else gs[i - 1]
    g_sum = vjp(0, sum(xs[1:]), gs[0])
    dx = [gs[0]] + [g if g_sum is None else g + g_sum for g in gs[1:]]
    return torch.cat(xs, dim=1), torch.cat(dx, dim=1), grads


class RevStack(nn.Module):
    """A sequence of RevBlocks; training keeps only the stack's output for backward."""

    def __init__(self, blocks: list[RevBlock], memory_saving: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.memory_saving = memory_saving
        self.out_channels = blocks[-1].out_channels if blocks else None

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_saving and torch.is_grad_enabled() and x.requires_grad:
            return _RevStackFunction.apply(x, self, *self.trainable())
        for block in self.blocks:
            x = block(x)
        return x


@BLOCKS.register("wt-rev", aliases=("wtrev",), stack=True)
class TiedRevStack(RevStack):
    """Weight-tied reversible stack (RevGNN's WT-RevGNN): one set of G group convs shared by
    every layer, so parameters do not grow with depth (O(C²)) and activations stay O(N·C).

    Each layer keeps its own dynamic graph (its dilation); the layers are `RevBlock` views on
    the shared convs, held in a plain list so the state dict names every weight once. Shared
    norms see every layer: BatchNorm's running statistics average over the layers (its
    training-mode output and the inversion use batch statistics, so gradients are exact).
    """

    def __init__(self, convs: list[nn.Module], graphs: list[DilatedKnn],
                 memory_saving: bool = True):
        nn.Module.__init__(self)
        self.convs = nn.ModuleList(convs)
        self.graphs = nn.ModuleList(graphs)
        self.blocks = [RevBlock(list(self.convs), g) for g in self.graphs]
        self.memory_saving = memory_saving
        self.out_channels = self.blocks[0].out_channels

    @classmethod
    def build_stack(cls, depth: int, channels: int, conv, graph_of, rev_groups: int = 2, **_):
        first = RevBlock.build(channels, conv, graph_of(0), rev_groups)
        return cls(list(first.convs), [first.graph] + [graph_of(i) for i in range(1, depth)])
