"""`pointgcn.graph.knn_graph` (PyG's edge_index conventions on the dense kNN) vs brute force in
float64, PyG's own knn_graph where pyg-lib or torch_cluster is installed, and PyG's EdgeConv /
GCNConv on the same graph vs our dense convs; the mask that keeps padding out of `knn`."""
import numpy as np
import pytest
import torch
import torch_geometric.nn as gnn
import torch_geometric.typing

from pointgcn.errors import InputError
from pointgcn.graph import DilatedKnn, knn, knn_export, knn_graph
from pointgcn.nn import make_conv

SIZES = [7, 12, 3, 9]  # ragged; the cloud of 3 has fewer points than k


def ragged(sizes=SIZES, c=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), c, generator=g, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch


def brute_graph(x, k, batch, dilation=1, loop=False, flow="source_to_target"):
    """Per centre: the other points of its cloud by (distance, index) in float64, self first
    when loop; every d-th of the first k·d; edges grouped by centre in node order."""
    p = x.double().numpy()
    b = np.zeros(len(p), np.int64) if batch is None else batch.numpy()
    src, dst = [], []
    for i in range(len(p)):
        same = np.flatnonzero(b == b[i])
        d = ((p[same] - p[i]) ** 2).sum(1)
        order = same[np.lexsort((same, d, same != i))]
        if not loop:
            order = order[1:]
        nb = order[:k * dilation][::dilation][:k]
        src += nb.tolist()
        dst += [i] * len(nb)
    ei = torch.tensor([src, dst], dtype=torch.long)
    return ei if flow == "source_to_target" else ei.flip(0)


@pytest.mark.parametrize("k,dilation", [(1, 1), (4, 1), (3, 2), (20, 1)])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_knn_graph_equals_brute_force(k, dilation, loop, flow):
    x, batch = ragged()
    assert torch.equal(knn_graph(x, k, batch, dilation, loop, flow),
                       brute_graph(x, k, batch, dilation, loop, flow))


def test_single_cloud_and_wide_features():
    x, _ = ragged([40], c=16)
    for k in (5, 39, 50):
        assert torch.equal(knn_graph(x, k), brute_graph(x, k, None))
        assert torch.equal(knn_graph(x, k, torch.zeros(40, dtype=torch.long)),
                           brute_graph(x, k, None))


def test_float32_picks_the_float64_distances():
    """float32 scores may swap near-ties, never pick a farther neighbour than rounding allows."""
    x, batch = ragged([300, 200], c=3, dtype=torch.float32)
    ours, ref = knn_graph(x, 16, batch), brute_graph(x, 16, batch)
    assert torch.equal(ours[1], ref[1])  # same centres, same counts
    p = x.double()
    dist = lambda ei: ((p[ei[0]] - p[ei[1]]) ** 2).sum(1)
    assert torch.allclose(dist(ours), dist(ref), atol=1e-5)


@pytest.mark.skipif(not getattr(torch_geometric.typing, "WITH_KNN", False),
                    reason="torch_geometric.nn.knn_graph needs pyg-lib (not installed)")
def test_equals_torch_geometric_knn_graph():
    x, batch = ragged([30, 50, 20], c=3)
    for loop in (False, True):
        for flow in ("source_to_target", "target_to_source"):
            ref = gnn.knn_graph(x, 6, batch, loop=loop, flow=flow)
            key = lambda ei: set(map(tuple, ei.T.tolist()))
            assert key(knn_graph(x, 6, batch, loop=loop, flow=flow)) == key(ref)


def test_equals_torch_cluster_knn_graph():
    torch_cluster = pytest.importorskip("torch_cluster")
    x, batch = ragged([30, 50, 20], c=3)
    for loop in (False, True):
        ref = torch_cluster.knn_graph(x, 6, batch, loop=loop)
        key = lambda ei: set(map(tuple, ei.T.tolist()))
        assert key(knn_graph(x, 6, batch, loop=loop)) == key(ref)


def per_cloud(x, batch, fn):
    """fn(cloud (1, C, n)) → (1, C', n) on each cloud alone, concatenated back to (N, C')."""
    outs = [fn(x[batch == b].T.unsqueeze(0))[0].T for b in batch.unique()]
    return torch.cat(outs)


@pytest.mark.parametrize("dilation", [1, 2])
def test_pyg_edge_conv_on_our_graph_equals_dense_edge_conv(dilation):
    x, batch = ragged([20, 11, 16], c=5)
    k = 4
    ours = make_conv("edge", 5, 6, norm="none", act="relu").double()
    pyg = gnn.EdgeConv(torch.nn.Sequential(ours.lin, torch.nn.ReLU()), aggr="max")
    ei = knn_graph(x, k, batch, dilation=dilation, loop=True)
    graph = DilatedKnn(k, dilation).eval()
    dense = per_cloud(x, batch, lambda c: ours(c, graph(c)))
    assert torch.allclose(pyg(x, ei), dense, atol=1e-10)


def test_pyg_gcn_conv_on_our_graph_equals_dense_semi_gcn():
    x, batch = ragged([20, 11, 16], c=5)
    ours = make_conv("semi_gcn", 5, 6, norm="none", act="none").double()
    ours.bias.data.normal_()
    pyg = gnn.GCNConv(5, 6).double()
    pyg.lin.weight.data.copy_(ours.lin.weight)
    pyg.bias.data.copy_(ours.bias)
    ei = knn_graph(x, 5, batch, loop=True)
    dense = per_cloud(x, batch, lambda c: ours(c, knn(c, 5)))
    assert torch.allclose(pyg(x, ei), dense, atol=1e-10)


@pytest.mark.parametrize("chunk", [None, 2 * 12 * 5])
def test_masked_knn_never_returns_padding(chunk):
    """Real rows of a padded batch equal each cloud alone (eager, chunked, export paths)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 12, generator=g, dtype=torch.float64)
    x[1, :, 8:] = 0.0  # padding at the origin, nearer than most real points
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False
    for k in (3, 8):
        for out in (knn(x, k, chunk, mask=mask), knn_export(x, k, mask)):
            assert torch.equal(out[0], knn(x[:1], k)[0])
            assert torch.equal(out[1, :8], knn(x[1:, :, :8], k)[0])


def test_errors():
    x, batch = ragged()
    with pytest.raises(InputError, match="sorted"):
        knn_graph(x, 3, batch.flip(0))
    with pytest.raises(InputError, match="flow"):
        knn_graph(x, 3, batch, flow="both")
    with pytest.raises(InputError, match="k must"):
        knn_graph(x, 0, batch)
    with pytest.raises(InputError, match="one cloud id per point"):
        knn_graph(x, 3, batch[:-1])
    with pytest.raises(InputError, match=r"\(N, F\)"):
        knn_graph(x.unsqueeze(0), 3)
    assert knn_graph(x[:0], 3).shape == (2, 0)


def test_same_graph_at_any_thread_count():
    """float32 rows through the worker-thread selection path, 1 vs 2 threads: same edges."""
    x, batch = ragged([700, 450], c=8, dtype=torch.float32)
    before = torch.get_num_threads()
    graphs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            graphs.append(knn_graph(x, 16, batch, dilation=2))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(graphs[0], graphs[1])
    assert torch.equal(graphs[0][1], brute_graph(x, 16, batch, dilation=2)[1])
