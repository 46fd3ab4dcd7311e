"""Each dense graph conv vs a naive per-point loop and, where one exists, the PyG operator."""
import pytest
import torch
import torch.nn.functional as F
import torch_geometric.nn as gnn

from pointgcn.graph import knn
from pointgcn.nn import CONVS, make_aggregator, make_conv

B, N, K, CIN, COUT = 2, 12, 4, 5, 6


@pytest.fixture
def graph():
    x = torch.randn(B, CIN, N, dtype=torch.float64)
    return x, knn(x, K)


def to_pyg(x, idx):
    """Flatten the batch: node features (B·N, C), edges j → i (source, target)."""
    b, c, n = x.shape
    offset = (torch.arange(b) * n).view(b, 1, 1)
    src = (idx + offset).reshape(-1)
    dst = (torch.arange(n).view(1, n, 1).expand(b, n, idx.shape[-1]) + offset).reshape(-1)
    return x.transpose(1, 2).reshape(b * n, c), torch.stack([src, dst])


def from_pyg(out, b):
    return out.view(b, -1, out.shape[-1]).transpose(1, 2)


def naive(conv, x, idx):
    """Per-point loop straight from each conv's formula (norm none, act relu)."""
    b, c, n = x.shape
    out = []
    for bi in range(b):
        rows = []
        for i in range(n):
            xi, xj = x[bi, :, i], x[bi][:, idx[bi, i]].T            # (C,), (k, C)
            kind = type(conv).__name__
            if kind == "EdgeConv":
                h = torch.stack([conv.lin(torch.cat([xi, v - xi])) for v in xj]).relu().amax(0)
            elif kind == "MRConv":
                h = conv.lin(torch.cat([xi, (xj - xi).amax(0)])).relu()
            elif kind == "GINConv":
                h = conv.lin((1 + conv.eps) * xi + xj.sum(0)).relu()
            elif kind in ("SAGEConv", "RSAGEConv"):
                rel = xj - xi if kind == "RSAGEConv" else xj
                pooled = conv.lin_nbr(rel).relu().amax(0)
                h = conv.lin(torch.cat([xi, pooled])).relu()
            elif kind == "SemiGCNConv":
                h = (conv.lin(xj).mean(0) + conv.bias).relu()
            elif kind == "Conv1x1":
                h = conv.lin(xi).relu()
            elif kind == "GATConv":
                hh = conv.lin(xj).view(len(xj), conv.heads, -1)
                hi = conv.lin(xi).view(conv.heads, -1)
                e = F.leaky_relu((hh * conv.att_src).sum(-1) + (hi * conv.att_dst).sum(-1), 0.2)
                a = e.softmax(0)
                h = ((a.unsqueeze(-1) * hh).sum(0).reshape(-1) + conv.bias).relu()
            elif kind == "GENConv":
                m = xj.relu() + conv.eps
                agg = conv.aggr(m, dim=0)
                h = conv.mlp(agg + xi).relu()
            rows.append(h)
        out.append(torch.stack(rows, 1))
    return torch.stack(out)


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_conv_matches_naive_loop(kind, graph):
    x, idx = graph
    cin, cout = (CIN, CIN) if kind == "gen" else (CIN, COUT)
    conv = make_conv(kind, cin, cout, norm="none", act="relu", heads=2 if kind == "gat" else 1,
                     eps=0.3).double().eval()
    assert torch.allclose(conv(x, idx), naive(conv, x, idx), atol=1e-10)


@pytest.mark.parametrize("kind", ["edge", "sage", "rsage"])
@pytest.mark.parametrize("act_first", [False, True])
def test_eval_max_shortcut_with_negative_norm_slopes(kind, act_first, graph):
    """Eval path (max moved before BN/act, min for negative slopes) = straightforward path."""
    x, idx = graph
    conv = make_conv(kind, CIN, COUT, norm="batch", act="leakyrelu", act_first=act_first).double()
    for m in conv.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data = torch.randn_like(m.weight)  # about half negative
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    conv.eval()
    fast = conv(x, idx)
    posts = [m for m in conv.modules() if type(m).__name__ == "PostProcess"]
    for p in posts:
        p.max_commutes = lambda: False
    assert torch.allclose(fast, conv(x, idx), atol=1e-10)


def test_edge_conv_train_mode_batchnorm_over_edges(graph):
    x, idx = graph
    conv = make_conv("edge", CIN, COUT, norm="batch", act="relu").double().train()
    b = x.shape[0]
    xi = x.unsqueeze(-1).expand(-1, -1, -1, K)
    xj = torch.stack([x[bi][:, idx[bi]] for bi in range(b)])            # (B, C, N, k)
    edge = torch.cat([xi, xj - xi], 1)
    w = conv.lin.weight.view(COUT, 2 * CIN, 1, 1)
    z = F.batch_norm(F.conv2d(edge, w, conv.lin.bias), None, None, training=True)
    ref = z.relu().amax(-1)
    assert torch.allclose(conv(x, idx), ref, atol=1e-10)


def test_edge_conv_equals_pyg(graph):
    x, idx = graph
    ours = make_conv("edge", CIN, COUT, norm="none", act="relu").double()
    pyg = gnn.EdgeConv(torch.nn.Sequential(ours.lin, torch.nn.ReLU()), aggr="max")
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B), atol=1e-10)


def test_gin_equals_pyg(graph):
    x, idx = graph
    ours = make_conv("gin", CIN, COUT, norm="none", act="none", eps=0.25).double()
    pyg = gnn.GINConv(ours.lin, eps=0.25)
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B), atol=1e-10)


def test_semi_gcn_equals_pyg_gcn(graph):
    x, idx = graph
    ours = make_conv("semi_gcn", CIN, COUT, norm="none", act="none").double()
    ours.bias.data.normal_()
    pyg = gnn.GCNConv(CIN, COUT).double()
    pyg.lin.weight.data.copy_(ours.lin.weight)
    pyg.bias.data.copy_(ours.bias)
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B), atol=1e-10)


def test_gat_equals_pyg(graph):
    x, idx = graph
    ours = make_conv("gat", CIN, COUT, norm="none", act="none", heads=2).double()
    ours.bias.data.normal_()
    pyg = gnn.GATConv(CIN, COUT // 2, heads=2, add_self_loops=False).double()
    lin = pyg.lin if getattr(pyg, "lin", None) is not None else pyg.lin_src
    lin.weight.data.copy_(ours.lin.weight)
    pyg.att_src.data.copy_(ours.att_src.view_as(pyg.att_src))
    pyg.att_dst.data.copy_(ours.att_dst.view_as(pyg.att_dst))
    pyg.bias.data.copy_(ours.bias)
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B), atol=1e-10)


def test_sage_equals_pyg_max_projected(graph):
    x, idx = graph
    ours = make_conv("sage", CIN, COUT, norm="none", act="relu").double()
    pyg = gnn.SAGEConv(CIN, COUT, aggr="max", project=True).double()
    pyg.lin.weight.data.copy_(ours.lin_nbr.weight)
    pyg.lin.bias.data.copy_(ours.lin_nbr.bias)
    pyg.lin_r.weight.data.copy_(ours.lin.weight[:, :CIN])
    pyg.lin_l.weight.data.copy_(ours.lin.weight[:, CIN:])
    pyg.lin_l.bias.data.copy_(ours.lin.bias)
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B).relu(), atol=1e-10)


@pytest.mark.parametrize("aggr", ["softmax", "softmax_sg", "power", "mean", "max", "sum"])
@pytest.mark.parametrize("msg_norm", [False, True])
@pytest.mark.parametrize("cout", [CIN, COUT])
def test_gen_equals_pyg(aggr, msg_norm, cout, graph):
    x, idx = graph
    ours = make_conv("gen", CIN, cout, norm="none", act="none", aggr=aggr, t=0.7, p=1.6,
                     msg_norm=msg_norm, bias=False).double()
    pyg = gnn.GENConv(CIN, cout, aggr=aggr, t=0.7, learn_t=aggr == "softmax", p=1.6,
                      learn_p=True, msg_norm=msg_norm, num_layers=1).double()
    pyg.mlp[0].weight.data.copy_(ours.mlp[0].weight)
    if cout != CIN:
        for name in ("lin_src", "lin_dst"):
            getattr(pyg, name).weight.data.copy_(getattr(ours, name).weight)
    if msg_norm:
        ours.msg_scale.data.fill_(0.8)
        pyg.msg_norm.scale.data.fill_(0.8)
    nodes, ei = to_pyg(x, idx)
    assert torch.allclose(ours(x, idx), from_pyg(pyg(nodes, ei), B), atol=1e-8)


def test_softmax_aggregator_limits():
    m = torch.rand(3, 7, 5, dtype=torch.float64) + 0.01
    agg = make_aggregator("softmax")
    agg.t.data.fill_(1e-8)
    assert torch.allclose(agg(m, 1), m.mean(1), atol=1e-7)
    agg.t.data.fill_(1e4)
    assert torch.allclose(agg(m, 1), m.amax(1), atol=1e-3)
    power = make_aggregator("power", p=1.0)
    assert torch.allclose(power(m, 1), m.mean(1))
    power.p.data.fill_(2.0)
    assert torch.allclose(power(m, 1), (m ** 2).mean(1).sqrt())


def test_learnable_parameters_receive_gradients(graph):
    x, idx = graph
    for aggr, name in (("softmax", "t"), ("power", "p")):
        conv = make_conv("gen", CIN, CIN, aggr=aggr, msg_norm=True).double()
        conv(x.abs() + 0.1, idx).sum().backward()
        assert getattr(conv.aggr, name).grad is not None and conv.msg_scale.grad is not None
    sg = make_conv("gen", CIN, CIN, aggr="softmax_sg").double()
    assert not sg.aggr.t.requires_grad


def test_neighbour_gather_gradient_is_bit_identical_at_any_thread_count():
    """The gather's backward adds every row's gradients in index order: indexing's own
    backward added them with atomic adds from several threads, which made SGAS return
    different α (and genotypes) from run to run at 2 threads."""
    from pointgcn.nn import gather_neighbors

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 128, 8, generator=g)  # 5 clouds: the threads' halves split one cloud
    idx = torch.randint(0, 128, (5, 128, 9), generator=g)
    weight = torch.randn(5, 128, 9, 8, generator=g)
    old = torch.get_num_threads()
    grads = []
    try:
        for threads in (1, 2, 2, 2, 2, 2):
            torch.set_num_threads(threads)
            x = x0.clone().requires_grad_(True)
            (gather_neighbors(x, idx) * weight).sum().backward()
            grads.append(x.grad)
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(grads[0], other) for other in grads[1:])
    assert torch.equal(gather_neighbors(x0, idx), x0[torch.arange(5).view(5, 1, 1), idx])


@pytest.mark.parametrize("norm,act", [("layer", "leakyrelu"), ("none", "gelu")])
def test_gen_hidden_mlp_takes_the_conv_norm_and_activation(norm, act, graph):
    """GEN's hidden MLP layer is normalised and activated as the conv says (it was always
    BatchNorm + ReLU): checked against the formula written out with torch.nn.functional."""
    x, idx = graph
    conv = make_conv("gen", CIN, CIN, norm=norm, act=act, aggr="mean", mlp_layers=2).double()
    g = torch.Generator().manual_seed(1)
    for p in conv.parameters():  # non-trivial affine norms
        p.data.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    conv.eval()
    xt = x.transpose(1, 2)                                                   # (B, N, C)
    nbr = torch.stack([xt[b][idx[b]] for b in range(B)])                     # (B, N, k, C)
    h = (nbr.relu() + conv.eps).mean(2) + xt
    post = conv.mlp[1]
    activate = {"leakyrelu": lambda v: F.leaky_relu(v, 0.2), "gelu": F.gelu}[act]

    def normalise(v, module):
        return F.layer_norm(v, v.shape[-1:], module.weight, module.bias) if norm == "layer" else v

    h = activate(normalise(F.linear(h, conv.mlp[0].weight, conv.mlp[0].bias), post.norm))
    h = activate(normalise(F.linear(h, conv.mlp[2].weight, conv.mlp[2].bias), conv.post.norm))
    assert torch.allclose(conv(x, idx), h.transpose(1, 2), atol=1e-10)
