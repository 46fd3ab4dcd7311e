"""Registries: objects join where they are defined, `pointgcn info` lists every one of them
(models of packages above `models` included), and each option is written once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointgcn.errors import ConfigError
from pointgcn.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter (nothing imported by earlier tests) from the repo."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=120).stdout


def test_info_json_lists_every_registered_model_including_nas():
    """`pointgcn info` in a fresh process, where nothing has imported pointgcn.nas yet: the
    model list must still hold `nas` (it used to read the registry before nas registered)."""
    table = json.loads(_python("import sys\nfrom apps.cli import main\n"
                               "assert 'pointgcn.nas' not in sys.modules\n"
                               "main(['info', '--json'])"))
    assert table["models"] == ["deepgcn", "nas"]
    assert table["convs"] == sorted(["edge", "mr", "gin", "sage", "rsage", "gat", "semi_gcn",
                                     "conv1x1", "gen"])
    assert table["blocks"] == ["plain", "res", "dense", "res+", "rev", "wt-rev", "deq"]
    assert table["aggregators"] == ["mean", "max", "sum", "softmax", "softmax_sg", "power"]
    assert table["datasets"] == ["s3dis", "modelnet40", "modelnet10", "partnet", "pyg"]


def test_building_the_command_line_loads_no_torch():
    """`pointgcn --help` shows the task defaults (pointgcn.tasks) without importing torch."""
    out = _python("import sys\nfrom apps.cli import build_parser\nbuild_parser()\n"
                  "print(sorted(m for m in ('torch', 'numpy', 'pointgcn.nn') if m in sys.modules))")
    assert out.strip() == "[]"


def test_registry_rules():
    reg = Registry("thing")

    @reg.register("a", aliases=("alpha",), options=("x",))
    class A:
        pass

    assert reg.get("alpha") is A and reg.canonical("alpha") == "a" and reg.info("a") == {
        "options": ("x",)}
    assert reg.names() == ["a"] and "alpha" in reg and "b" not in reg
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(object)
    with pytest.raises(ConfigError, match="thing must be one of a, got 'b'"):
        reg.get("b")
    with pytest.raises(ConfigError, match="got 3"):
        reg.get(3)


def test_an_unknown_model_name_lists_the_plugin_models_too():
    from pointgcn.models import build_model
    with pytest.raises(ConfigError, match="model.name must be one of deepgcn, nas, got 'x'"):
        build_model({"name": "x"})


def test_conv_options_reach_the_convs_with_their_own_defaults():
    """The model config's conv options are the convs' own (names and defaults), and each
    reaches the conv that takes it."""
    from pointgcn.models.deepgcn import DEFAULTS
    from pointgcn.nn import GATConv, GENConv, GINConv
    from pointgcn.nn.aggregators import PowerMeanAggregator, SoftmaxAggregator

    assert (DEFAULTS["heads"], DEFAULTS["eps"], DEFAULTS["aggr"], DEFAULTS["t"],
            DEFAULTS["mlp_layers"]) == (1, 0.0, "softmax", 1.0, 1)
    from pointgcn.models import build_model
    tiny = dict(n_blocks=2, channels=8, k=4, fusion_channels=8, prediction=[8])
    gat = build_model({**tiny, "conv": "gat", "heads": 2}).head
    assert isinstance(gat, GATConv) and gat.heads == 2
    gin = build_model({**tiny, "conv": "gin", "eps": 0.5, "train_eps": True}).head
    assert isinstance(gin, GINConv) and gin.eps.item() == 0.5 and gin.eps.requires_grad
    gen = build_model({**tiny, "conv": "gen", "aggr": "power", "p": 2.0, "mlp_layers": 2}).head
    assert isinstance(gen, GENConv) and isinstance(gen.aggr, PowerMeanAggregator)
    assert gen.aggr.p.item() == 2.0 and len(gen.mlp) == 3
    assert gen.eps == 1e-7  # GIN's `eps` is not GEN's message epsilon
    plain = build_model({**tiny, "conv": "gen"}).head
    assert isinstance(plain.aggr, SoftmaxAggregator) and plain.aggr.t.requires_grad


def test_two_defaults_for_one_conv_option_are_refused(monkeypatch):
    import pointgcn.nn.registry as nn_registry

    reg = Registry("conv")

    @reg.register("one", options=("scale",))
    class One:
        def __init__(self, scale: float = 1.0):
            pass

    @reg.register("two", options=("scale",))
    class Two:
        def __init__(self, scale: float = 2.0):
            pass

    monkeypatch.setattr(nn_registry, "CONVS", reg)
    with pytest.raises(TypeError, match="'scale' has two defaults"):
        nn_registry.conv_option_defaults()


def test_block_aliases_and_case_resolve_to_one_kind():
    from pointgcn.models import build_model
    tiny = dict(n_blocks=3, channels=8, k=4, fusion_channels=8, prediction=[8])
    model = build_model({**tiny, "block": "ResPlus", "conv": "EDGE"})
    assert (model.cfg["block"], model.cfg["conv"]) == ("res+", "edge")
    torch.manual_seed(0)
    a = build_model({**tiny, "block": "resplus"}).eval()
    torch.manual_seed(0)
    b = build_model({**tiny, "block": "res+"}).eval()
    x = torch.randn(1, 9, 32)
    assert torch.equal(a(x), b(x))
