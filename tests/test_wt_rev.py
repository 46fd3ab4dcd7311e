"""Weight-tied reversible backbone (`block: wt-rev`)."""
import pytest
import torch

from pointgcn.models import build_model
from pointgcn.nn import TiedRevStack

from test_reversible import REV, saved_bytes

WT = {**REV, "block": "wt-rev"}


def test_parameters_do_not_grow_with_depth_and_each_layer_has_its_graph():
    shallow, deep = build_model({**WT, "n_blocks": 4}), build_model({**WT, "n_blocks": 40})
    count = lambda m: sum(p.numel() for p in m.backbone.parameters())  # noqa: E731
    assert isinstance(deep.backbone, TiedRevStack)
    assert count(shallow) == count(deep) > 0
    untied = build_model({**REV, "n_blocks": 40})
    assert sum(p.numel() for p in untied.backbone.parameters()) == 39 * count(deep)
    assert [g.dilation for g in deep.backbone.graphs] == list(range(1, 40))
    # the state dict names each shared weight once
    assert len(deep.state_dict()) == len(shallow.state_dict())


def test_state_dict_round_trip_and_eval():
    torch.manual_seed(0)
    a = build_model(WT).eval()
    torch.manual_seed(1)
    b = build_model(WT).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_weight_tied_memory_flat_in_depth():
    base = dict(WT, channels=16, use_dilation=False, stochastic=False)
    assert saved_bytes({**base, "n_blocks": 56}) < 1.05 * saved_bytes({**base, "n_blocks": 7})


def test_reversible_models_may_be_1001_layers_deep_others_200():
    from pointgcn.errors import ConfigError

    deep = build_model({**WT, "n_blocks": 1001, "use_dilation": False})
    assert len(deep.backbone.blocks) == 1000
    with pytest.raises(ConfigError, match="at most 1001"):
        build_model({**WT, "n_blocks": 1002})
    with pytest.raises(ConfigError, match="at most 200"):
        build_model({**REV, "block": "res", "n_blocks": 201, "fusion_input": "last"})
