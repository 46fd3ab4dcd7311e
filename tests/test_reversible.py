import os
import subprocess
import sys

import pytest
import torch

from pointgcn.models import build_model

REV = dict(n_blocks=5, channels=8, k=4, fusion_channels=16, prediction=[8], dropout=0.0,
           in_channels=3, n_classes=3, block="rev", rev_groups=2, stochastic=True, epsilon=0.5)


def _grads(model, x, y, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("block,groups", [("rev", 2), ("rev", 3), ("rev", 4),
                                          ("wt-rev", 2), ("wt-rev", 3)])
def test_reversible_gradients_equal_plain_autograd(block, groups):
    """Recomputed backward = autograd (wt-rev: the shared weights' gradients summed over
    layers), and running statistics updated once, as without recomputation."""
    torch.manual_seed(0)
    model = build_model({**REV, "block": block, "channels": 12,
                         "rev_groups": groups}).double().train()
    x = torch.randn(2, 3, 48, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 48))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss_a, ga = _grads(model, x, y, seed=7)
    stats_a = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    model.backbone.memory_saving = False
    loss_b, gb = _grads(model, x, y, seed=7)
    assert torch.allclose(loss_a, loss_b)
    assert len(ga) == len(gb) > 5
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-8), (a - b).abs().max()
    for k, v in model.state_dict().items():
        assert torch.allclose(stats_a[k].double(), v.double(), atol=1e-10), k


def test_inverse_reconstructs_input():
    torch.manual_seed(0)
    model = build_model(REV).double().train()
    block = model.backbone.blocks[2]
    x = torch.randn(2, 8, 40, dtype=torch.float64)
    log = []
    with torch.no_grad():
        y = block(x, rng_log=log)
        assert torch.allclose(block.inverse(y, log), x, atol=1e-10)


def saved_bytes(cfg, n=256):
    """Bytes autograd keeps for backward in one training forward (activation memory)."""
    model = build_model(cfg).train()
    x = torch.randn(1, 3, n)
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).sum()
    loss.backward()
    return total[0]


def test_reversible_memory_flat_in_depth():
    base = dict(REV, channels=16, use_dilation=False, stochastic=False)
    rev7, rev56 = saved_bytes({**base, "n_blocks": 7}), saved_bytes({**base, "n_blocks": 56})
    res7 = saved_bytes({**base, "n_blocks": 7, "block": "res", "fusion_input": "last"})
    res56 = saved_bytes({**base, "n_blocks": 56, "block": "res", "fusion_input": "last"})
    assert rev56 < 1.05 * rev7
    assert res56 > 5 * res7


PEAK = """
import sys, torch
from pointgcn.models import build_model

def status(key):  # kB, from this process's own memory map (getrusage inherits the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

torch.set_num_threads(1)
cfg = dict(n_blocks=int(sys.argv[1]), channels=32, k=8, fusion_channels=32, prediction=[16],
           in_channels=3, n_classes=3, block=sys.argv[2], use_dilation=False, stochastic=False,
           fusion_input="last")
m = build_model(cfg).train()
x = torch.randn(2, 3, 2048)
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
m(x).sum().backward()
print(status("VmHWM:") - before)
"""


def _peak_kb(depth, block):
    # No allocator variables: `import pointgcn` fixes glibc's mmap threshold itself (without it
    # freed large buffers stay in a fragmented heap and RSS counts them), as a user gets it.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "POINTGCN_MALLOPT")}
    out = subprocess.run([sys.executable, "-c", PEAK, str(depth), block], capture_output=True,
                         text=True, check=True, env=env)
    return int(out.stdout.strip())


def test_reversible_peak_rss_flat_from_7_to_56_layers():
    rev7, rev56 = _peak_kb(7, "rev"), _peak_kb(56, "rev")
    res56 = _peak_kb(56, "res")
    # 49 more residual blocks cost ~0.5 GB here; 49 more reversible ones about nothing.
    assert res56 > 4 * rev56, (res56, rev56)
    assert rev56 - rev7 < 0.05 * (res56 - rev56), (rev7, rev56, res56)


def test_reversible_gradients_under_autocast():
    """The backward re-enters the forward's autocast, so the inverse matches the forward."""
    torch.manual_seed(0)
    model = build_model({**REV, "stochastic": False}).train()
    x = torch.randn(2, 3, 48)
    y = torch.randint(0, 3, (2, 48))
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        return [p.grad.clone() for p in model.backbone.parameters() if p.grad is not None]

    a = grads()
    model.load_state_dict(state)
    model.backbone.memory_saving = False
    b = grads()
    rel = max(((u - v).norm() / v.norm()).item() for u, v in zip(a, b))
    assert rel < 0.25, rel  # bf16 noise ≈ 0.09; without re-entering autocast ≈ 2
