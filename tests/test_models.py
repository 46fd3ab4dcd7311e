import pytest
import torch

from pointgcn.errors import ConfigError
from pointgcn.models import build_model
from pointgcn.nn import BLOCKS, CONVS

TINY = dict(n_blocks=3, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5, epsilon=0.0, stochastic=False)


def test_build_from_yaml_and_dict(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("model:\n  n_blocks: 3\n  channels: 8\n  k: 4\n  in_channels: 6\n  n_classes: 5\n")
    a, b = build_model(p), build_model({"model": {**TINY}})
    x = torch.randn(2, 6, 40)
    assert a.eval()(x).shape == b.eval()(x).shape == (2, 5, 40)


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("conv", sorted(CONVS))
def test_every_block_and_conv_builds_and_runs(block, conv):
    model = build_model({**TINY, "block": block, "conv": conv, "growth": 4})
    x = torch.randn(2, 6, 40)
    out = model.train()(x)
    assert out.shape == (2, 5, 40) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.eval()(x).shape == (2, 5, 40)


@pytest.mark.parametrize("task,shape", [("segmentation", (2, 5, 40)),
                                        ("part_segmentation", (2, 5, 40)),
                                        ("classification", (2, 5))])
def test_task_output_shapes(task, shape):
    assert build_model({**TINY, "task": task}).eval()(torch.randn(2, 6, 40)).shape == shape


def test_segmentation_equivariant_classification_invariant():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 50, dtype=torch.float64)
    perm = torch.randperm(50)
    seg = build_model(TINY).double().eval()
    assert torch.allclose(seg(x[:, :, perm]), seg(x)[:, :, perm], atol=1e-10)
    cls = build_model({**TINY, "task": "classification"}).double().eval()
    assert torch.allclose(cls(x[:, :, perm]), cls(x), atol=1e-10)


def test_112_layer_res_model_trains_one_step():
    model = build_model({**TINY, "n_blocks": 112, "use_dilation": False, "in_channels": 3,
                         "n_classes": 4})
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(2, 3, 32), torch.randint(0, 4, (2, 32))
    loss = torch.nn.functional.cross_entropy(model.train()(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert len(model.backbone) == 111
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    assert torch.isfinite(torch.nn.functional.cross_entropy(model(x), y))


def test_official_resgcn28_shape():
    model = build_model({"n_blocks": 28})
    sd = model.state_dict()
    assert sd["fusion.lin.weight"].shape == (1024, 64 * 28)
    assert sd["prediction.0.lin.weight"].shape == (512, 64 * 28 + 1024)
    assert sd["prediction.3.lin.weight"].shape == (13, 256)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown model keys: chanels"):
        build_model({"chanels": 3})
    with pytest.raises(ConfigError, match="conv must be one of"):
        build_model({**TINY, "conv": "nope"})
    with pytest.raises(ConfigError, match="block must be one of"):
        build_model({**TINY, "block": "nope"})
    with pytest.raises(ConfigError, match="rev blocks"):
        build_model({**TINY, "block": "rev", "rev_groups": 3})
    with pytest.raises(ConfigError, match="expects input"):
        build_model(TINY)(torch.randn(1, 3, 40))
    with pytest.raises(ConfigError, match="fuse only the last"):
        build_model({**TINY, "block": "rev", "fusion_input": "all"})
    with pytest.raises(ConfigError, match="model.k must be an integer"):
        build_model({**TINY, "k": "abc"})
    with pytest.raises(ConfigError, match="model.channels must be an integer ≥ 1"):
        build_model({**TINY, "channels": 0})


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "none"])
@pytest.mark.parametrize("act", ["relu", "leakyrelu", "prelu", "gelu", "none"])
def test_every_norm_and_activation(norm, act):
    model = build_model({**TINY, "norm": norm, "act": act})
    x = torch.randn(2, 6, 40)
    model.train()(x).sum().backward()
    out = model.eval()(x)
    assert out.shape == (2, 5, 40) and torch.isfinite(out).all()
