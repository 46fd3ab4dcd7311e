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


def clouds(sizes=SIZES, features=2, seed=0, offset=3.0):
    """Ragged clouds; by default away from the origin, where padding sits (zeros), so padded
    features stand out in pooling; offset 0 puts padding among the points (for the graphs)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        d = Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64) + offset)
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


@pytest.mark.parametrize("norm,block", [("none", "res"), ("layer", "rev"), ("none", "dense")])
def test_training_on_a_batch_equals_each_cloud_alone(norm, block):
    """Without batch statistics (or randomness), training mode on a padded batch gives each
    cloud's own outputs and the sum of the clouds' gradients (reversible backward included)."""
    torch.manual_seed(4)
    cfg = {**TINY, "norm": norm, "block": block, "stochastic": False, "task": "segmentation"}
    model = build_model(cfg).double().train()
    data = clouds(offset=0.0)
    out = model(Batch.from_data_list(data))
    (out ** 2).sum().backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = torch.cat([alone(model, d)[0].T for d in data])
    (ref ** 2).sum().backward()
    assert torch.allclose(out, ref, atol=1e-10)
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-9), n


def test_batch_norm_in_training_takes_statistics_of_real_points_only():
    from pointgcn.graph import point_mask
    from pointgcn.nn.norm_act import apply_norm
    torch.manual_seed(5)
    x = torch.randn(3, 10, 4, 6, dtype=torch.float64)  # (B, N, k, C) edge features
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = mask[2, 3:] = False
    ours, twin = (torch.nn.BatchNorm1d(6).double() for _ in range(2))
    with point_mask(mask):
        out = apply_norm(ours, x)
    real = x[mask]                                        # (R, k, C)
    ref = twin(real.reshape(-1, 6)).view_as(real)
    assert torch.allclose(out[mask], ref, atol=1e-12)
    assert torch.allclose(ours.running_mean, twin.running_mean)
    assert torch.allclose(ours.running_var, twin.running_var)
    assert torch.allclose(apply_norm(ours, x), twin(x.reshape(-1, 6)).view_as(x))  # no mask


def test_what_a_padded_batch_refuses():
    model = build_model(TINY).double()
    model.train()(Batch.from_data_list(clouds()))  # batch statistics over real points
    with pytest.raises(InputError, match="a cloud of the batch has 7"):
        model.eval()(Batch.from_data_list(clouds((20, 7))))
    with pytest.raises(InputError, match="PyG Data/Batch with pos; got Data"):
        model(Data(x=torch.randn(10, 5, dtype=torch.float64)))
    with pytest.raises(InputError, match="got list"):
        model([torch.randn(5, 10)])
    inst = build_model({**TINY, "norm": "instance"}).double().eval()
    with pytest.raises(ConfigError, match="instance norm"):
        inst(Batch.from_data_list(clouds()))
