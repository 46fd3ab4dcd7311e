"""Models on a PyG Batch of ragged clouds equal the model run on each cloud alone (eval), so
padding never reaches a result; what a padded batch refuses."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from pointgcn.errors import ConfigError, InputError
from pointgcn.models import build_model
from pointgcn.nas.genotype import Genotype
from pointgcn.nas.network import NASNetwork

TINY = dict(n_blocks=3, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=5, n_classes=4, use_dilation=True, stochastic=True, epsilon=0.5)
SIZES = (30, 47, 12)  # the last is barely k·d = 4·2


def clouds(sizes=SIZES, features=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        # away from the origin, where padding sits (zeros): padded features stand out
        d = Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64) + 3.0)
        if features:
            d.x = torch.randn(n, features, generator=g, dtype=torch.float64)
        out.append(d)
    return out


def alone(model, data):
    feats = data.pos if data.x is None else torch.cat([data.pos, data.x], 1)
    return model(feats.T.unsqueeze(0))


def randomise_norms(model):
    """Non-trivial eval batch norms (random running statistics and slopes)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()


@pytest.mark.parametrize("conv,block", [("edge", "res"), ("gen", "res"), ("gat", "dense"),
                                        ("mr", "plain"), ("edge", "rev"), ("sage", "res+")])
@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_batch_of_ragged_clouds_equals_each_cloud_alone(conv, block, task):
    torch.manual_seed(0)
    model = build_model({**TINY, "conv": conv, "block": block, "task": task,
                         "heads": 2 if conv == "gat" else 1}).double()
    randomise_norms(model)
    model.eval()
    data = clouds()
    out = model(Batch.from_data_list(data))
    ref = [alone(model, d) for d in data]
    if task == "classification":
        assert out.shape == (len(SIZES), 4)
        assert torch.allclose(out, torch.cat(ref), atol=1e-10)
    else:
        assert out.shape == (sum(SIZES), 4)
        assert torch.allclose(out, torch.cat([r[0].T for r in ref]), atol=1e-10)


def test_single_data_and_pos_only():
    torch.manual_seed(1)
    model = build_model({**TINY, "in_channels": 3}).double().eval()
    d = clouds(features=0)[0]
    assert torch.allclose(model(d), alone(model, d)[0].T, atol=1e-12)


def test_searched_network_takes_a_batch():
    torch.manual_seed(2)
    g = Genotype([[("mr_conv", 0), ("gat", 1)], [("edge_conv", 1), ("conv_1x1", 2)],
                  [("skip_connect", 0), ("rel_sage", 3)]], cells=2, channels=4, k=4)
    net = NASNetwork(dict(cells=2, channels=4, k=4, fusion_channels=8, prediction=[8],
                          dropout=0.0, n_classes=3, in_channels=5, task="classification",
                          genotype=g.to_dict())).double().eval()
    data = clouds()
    assert torch.allclose(net(Batch.from_data_list(data)),
                          torch.cat([alone(net, d) for d in data]), atol=1e-10)


def test_what_a_padded_batch_refuses():
    model = build_model(TINY).double()
    with pytest.raises(ConfigError, match="eval mode"):
        model.train()(Batch.from_data_list(clouds()))
    model.train()(Batch.from_data_list(clouds((20, 20))))  # equal sizes: nothing padded
    with pytest.raises(InputError, match="a cloud of the batch has 7"):
        model.eval()(Batch.from_data_list(clouds((20, 7))))
    inst = build_model({**TINY, "norm": "instance"}).double().eval()
    with pytest.raises(ConfigError, match="instance norm"):
        inst(Batch.from_data_list(clouds()))
