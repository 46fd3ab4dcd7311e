"""NAS search space: ops, mixed edges, cells, genotypes, the stand-alone network and ONNX."""
import numpy as np
import pytest
import torch

from pointgcn.errors import ConfigError, FormatError
from pointgcn.graph import knn
from pointgcn.models import build_model
from pointgcn.nas.cell import GenotypeCell, SearchCell
from pointgcn.nas.genotype import EDGES, Genotype, decode, load_genotype, save_genotype
from pointgcn.nas.network import NASNetwork, SearchNetwork
from pointgcn.nas.ops import PRIMITIVES, MixedOp, make_op

pytestmark = pytest.mark.usefixtures("one_thread")


HEAD = dict(fusion_channels=8, prediction=[8], dropout=0.0, n_classes=5, in_channels=3)
G = Genotype([[("mr_conv", 0), ("gat", 1)], [("edge_conv", 1), ("conv_1x1", 2)],
              [("skip_connect", 0), ("rel_sage", 3)]], cells=2, channels=4, k=4)


def test_space_has_nine_edges_of_ten_ops():
    assert PRIMITIVES == ("none", "skip_connect", "conv_1x1", "edge_conv", "mr_conv", "gat",
                          "semi_gcn", "gin", "sage", "rel_sage")
    assert EDGES == ((0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (2, 3))
    cell = SearchCell(6, 7, 4, k=3, dilation=1)
    assert len(cell.edges) == 9 and all(len(e.ops) == 10 for e in cell.edges)
    s0, s1 = torch.randn(2, 6, 20), torch.randn(2, 7, 20)
    w = torch.softmax(torch.randn(9, 10), -1)
    assert cell(s0, s1, w, [-1] * 9).shape == (2, 12, 20)


def test_mixed_op_is_softmax_weighted_sum_of_its_ops():
    torch.manual_seed(1)
    mixed = MixedOp(5).double().eval()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    idx = knn(x, 4)
    alpha = torch.randn(10, dtype=torch.float64)
    w = torch.softmax(alpha, 0)
    expected = sum(w[o] * mixed.ops[o](x, idx) for o in range(10))
    assert torch.allclose(mixed(x, idx, w), expected, atol=1e-12)
    assert torch.equal(mixed.ops[0](x, idx), torch.zeros_like(x))       # none
    assert torch.equal(mixed.ops[1](x, idx), x)                         # skip
    assert torch.equal(mixed(x, idx, w, chosen=3), mixed.ops[3](x, idx))


def test_ops_keep_width_and_graph_ops_use_the_graph():
    x = torch.randn(1, 4, 16)
    near, far = knn(x, 4), torch.zeros(1, 16, 4, dtype=torch.long)  # far: everyone → point 0
    for name in PRIMITIVES:
        op = make_op(name, 4).eval()
        a, b = op(x, near), op(x, far)
        assert a.shape == x.shape
        graph_free = name in ("none", "skip_connect", "conv_1x1")
        assert torch.allclose(a, b) == graph_free, name


def _copy_supernet_into(net: NASNetwork, sup: SearchNetwork, genotype: Genotype):
    """Give the stand-alone net the supernet's weights of the kept ops."""
    state = {k: v for k, v in sup.state_dict().items() if not k.startswith("alphas")}
    out = {}
    for key, value in state.items():
        if ".edges." not in key:
            out[key] = value
    kept = [(i, op, src) for i, node in enumerate(genotype.nodes) for op, src in node]
    for c in range(len(net.cells)):
        for j, (node, op, src) in enumerate(kept):
            e, o = EDGES.index((node, src)), PRIMITIVES.index(op)
            prefix = f"cells.{c}.edges.{e}.ops.{o}."
            for key, value in state.items():
                if key.startswith(prefix):
                    out[f"cells.{c}.ops.{j}." + key[len(prefix):]] = value
    missing, unexpected = net.load_state_dict(out, strict=False)
    assert not [m for m in missing if "pre0" not in m and "pre1" not in m], missing


def test_decided_supernet_equals_the_genotype_network():
    """Fix every edge of the supernet to the genotype: same function as the stand-alone net."""
    torch.manual_seed(2)
    cfg = dict(cells=2, channels=4, k=4, **HEAD)
    sup = SearchNetwork(cfg).double().eval()
    ops = G.edge_ops()
    sup.selected = [PRIMITIVES.index(op) for op in ops]  # 'none' (0) = pruned
    net = NASNetwork({**cfg, "genotype": G.to_dict()}).double().eval()
    _copy_supernet_into(net, sup, G)
    x = torch.randn(2, 3, 30, dtype=torch.float64)
    assert torch.allclose(sup(x), net(x), atol=1e-10)


def test_genotype_yaml_round_trip_builds_the_same_model(tmp_path):
    path = save_genotype(G, tmp_path / "g.yaml")
    assert load_genotype(path) == G
    a = build_model({"name": "nas", "genotype": str(path), **HEAD})
    b = build_model({"model": {"name": "nas", "genotype": G.to_dict(), **HEAD}})
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 25)
    assert torch.equal(a.eval()(x), b.eval()(x))
    assert save_genotype(G, tmp_path / "g.json").read_text().lstrip().startswith("{")
    assert load_genotype(tmp_path / "g.json") == G


def test_param_count_by_hand():
    """Only 1×1 convs and skips: every parameter can be counted by hand."""
    g = Genotype([[("conv_1x1", 0), ("skip_connect", 1)], [("conv_1x1", 2), ("skip_connect", 0)],
                  [("skip_connect", 3), ("conv_1x1", 1)]], cells=1, channels=4, k=2)
    net = build_model({"name": "nas", "genotype": g.to_dict(), "fusion_channels": 8,
                       "prediction": [6], "dropout": 0.0, "n_classes": 5, "in_channels": 3})
    bn = lambda c: 2 * c                                       # noqa: E731 weight + bias
    stem = 3 * 12 + bn(12)                                     # 1×1, no bias, BN
    pre = 2 * (12 * 4 + bn(4))                                 # both inputs used
    ops = 3 * (4 * 4 + bn(4))                                  # three conv_1x1 edges
    fusion = (12 + 12) * 8 + 8 + bn(8)                         # [stem, cell] → 8
    mlp = (16 * 6 + 6 + bn(6)) + (6 * 5 + 5)                   # [max, mean] → 6 → 5
    assert sum(p.numel() for p in net.parameters()) == stem + pre + ops + fusion + mlp
    assert not net.cells[0].needs_graph


def test_encoding_and_sparse_cells():
    enc = G.encoding().reshape(9, 10)
    assert enc.sum() == 9 and (enc.sum(1) == 1).all()
    assert decode(G.encoding()) == G.edge_ops()
    assert sum(op != "none" for op in G.edge_ops()) == 6
    # an assignment with an empty node and unused input 0 still builds and runs
    ops = ["none", "gin", "none", "none", "none", "none", "sage", "none", "none"]
    sparse = Genotype.from_edge_ops(ops, cells=2, channels=4, k=3)
    assert sparse.nodes == [[("gin", 1)], [], [("sage", 1)]]
    cell = GenotypeCell(sparse, 6, 6, 4, k=3, dilation=1)
    assert cell.pre0 is None
    out = cell(torch.randn(1, 6, 12), torch.randn(1, 6, 12))
    assert out.shape == (1, 12, 12) and torch.equal(out[:, 4:8], torch.zeros(1, 4, 12))
    with pytest.raises(ConfigError, match="keeps 1 edges"):
        sparse.validate()


@pytest.mark.parametrize("nodes,msg", [
    ([[("gin", 0), ("gat", 1)], [("gin", 0), ("gat", 1)]], "needs 3 nodes"),
    ([[("gin", 0), ("gat", 2)], [("gin", 0), ("gat", 1)], [("gin", 0), ("gat", 1)]],
     "cannot read state 2"),
    ([[("gin", 0), ("gat", 0)], [("gin", 0), ("gat", 1)], [("gin", 0), ("gat", 1)]],
     "same input"),
    ([[("none", 0), ("gat", 1)], [("gin", 0), ("gat", 1)], [("gin", 0), ("gat", 1)]], "none"),
    ([[("conv3x3", 0), ("gat", 1)], [("gin", 0), ("gat", 1)], [("gin", 0), ("gat", 1)]],
     "unknown op"),
])
def test_bad_genotypes_are_config_errors(nodes, msg):
    with pytest.raises(ConfigError, match=msg):
        Genotype(nodes)


def test_bad_genotype_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [[[gin, 0]]\n")
    with pytest.raises(FormatError, match="bad.yaml"):
        load_genotype(bad)
    other = tmp_path / "other.yaml"
    other.write_text("format: something-else\nnodes: []\n")
    with pytest.raises(FormatError, match="something-else"):
        load_genotype(other)
    with pytest.raises(ConfigError, match="genotype is required"):
        build_model({"name": "nas"})


GOOD_NODES = "[[[gin, 0], [gat, 1]], [[gin, 0], [gat, 1]], [[gin, 0], [gat, 1]]]"


@pytest.mark.parametrize("text,msg", [
    (GOOD_NODES.replace("[gat, 1]]]", "[gat, 1.9]]]", 1), "must be an integer, got 1.9"),
    (GOOD_NODES.replace("[gat, 1]]]", "[gat, true]]]", 1), "must be an integer, got True"),
    (GOOD_NODES.replace("[gat, 1]]]", "[gat, x]]]", 1), "must be an integer, got 'x'"),
    (GOOD_NODES + "\nmeta: [1, 2]", "meta must be a mapping"),
    (GOOD_NODES + "\nversion: 7", "version 7"),
])
def test_genotype_file_values_are_checked(tmp_path, text, msg):
    path = tmp_path / "g.yaml"
    path.write_text("nodes: " + text + "\n")
    with pytest.raises(ConfigError, match=msg) as e:
        load_genotype(path)
    assert "g.yaml" in str(e.value) and "\n" not in str(e.value)


def test_segmentation_head_and_onnx_export(tmp_path):
    import onnxruntime as ort

    from pointgcn.nas.latency import export_onnx_file

    net = build_model({"name": "nas", "genotype": G.to_dict(), **HEAD,
                       "task": "segmentation"}).eval()
    x = torch.randn(1, 3, 40)
    assert net(x).shape == (1, 5, 40)
    path = export_onnx_file(net, x, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (40, 56):  # N stays dynamic
        xn = torch.randn(1, 3, n)
        got = sess.run(None, {sess.get_inputs()[0].name: xn.numpy()})[0]
        np.testing.assert_allclose(got, net(xn).detach().numpy(), atol=1e-4)
