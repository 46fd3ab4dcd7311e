"""The official deep_gcns_torch S3DIS checkpoint layout: keys, shapes and the function it means.

The official state dict is written here by hand from the documented layout, and the converted
model is compared, layer by layer, with that function computed independently (Conv → ReLU →
BatchNorm on [x_i, x_j − x_i], max over neighbours, residual or dense blocks, global feature
first in the prediction input) on the graphs the model itself built, which are checked
separately against brute-force neighbour distances.
"""
import pytest
import torch
import torch.nn.functional as F

from pointgcn.errors import FormatError, InputError
from pointgcn.graph import DilatedKnn
from pointgcn.export import open_model
from pointgcn.models import build_model, save_checkpoint
from pointgcn.models.official import official_state_dict


def official_layout(n_blocks, channels, in_channels, n_classes, fusion, prediction,
                    growth=None, seed=0):
    """Random weights in the official layout: 1×1 Conv2d (out, in, 1, 1) + bias, then
    BatchNorm2d (weight, bias, running stats, num_batches_tracked) for every layer but the
    classifier `prediction.3`. Dense blocks take every earlier output (width C + i·growth)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def layer(prefix, cin, cout, norm=True):
        sd[f"{prefix}.0.weight"] = torch.randn(cout, cin, 1, 1, generator=g) / cin ** 0.5
        sd[f"{prefix}.0.bias"] = 0.1 * torch.randn(cout, generator=g)
        if norm:
            sd[f"{prefix}.2.weight"] = 1 + 0.5 * torch.randn(cout, generator=g)
            sd[f"{prefix}.2.bias"] = 0.5 * torch.randn(cout, generator=g)
            sd[f"{prefix}.2.running_mean"] = 0.5 * torch.randn(cout, generator=g)
            sd[f"{prefix}.2.running_var"] = 0.5 + 1.5 * torch.rand(cout, generator=g)
            sd[f"{prefix}.2.num_batches_tracked"] = torch.tensor(100)

    layer("head.gconv.nn", 2 * in_channels, channels)
    widths = [channels]
    for i in range(n_blocks - 1):
        cin = widths[-1]
        out = growth if growth else channels
        layer(f"backbone.{i}.body.gconv.nn", 2 * cin, out)
        widths.append(cin + out if growth else channels)
    layer("fusion_block", sum(widths), fusion)
    layer("prediction.0", fusion + sum(widths), prediction[0])
    layer("prediction.1", prediction[0], prediction[1])
    layer("prediction.3", prediction[1], n_classes, norm=False)
    return sd


def conv_relu_bn(sd, prefix, h, norm=True):
    """The official BasicConv: Conv2d(1×1) → ReLU → BatchNorm2d (eval) on (B, C, N, K)."""
    h = F.conv2d(h, sd[f"{prefix}.0.weight"], sd[f"{prefix}.0.bias"])
    if not norm:
        return h
    return F.batch_norm(h.relu(), sd[f"{prefix}.2.running_mean"], sd[f"{prefix}.2.running_var"],
                        sd[f"{prefix}.2.weight"], sd[f"{prefix}.2.bias"], False, 0.0, 1e-5)


def edge_conv(sd, prefix, h, idx):
    """max_j BasicConv([x_i, x_j − x_i]) on (B, C, N) features and (B, N, k) neighbours."""
    xi = h.unsqueeze(-1).expand(-1, -1, -1, idx.shape[-1])
    xj = torch.stack([h[b][:, idx[b]] for b in range(h.shape[0])])
    return conv_relu_bn(sd, prefix, torch.cat([xi, xj - xi], 1)).amax(-1)


def official_layers(sd, x, graphs, n_blocks, dense):
    """Every layer's output of the official network on the given graphs: [head, block 1, …,
    fusion, logits]."""
    feats = [edge_conv(sd, "head.gconv.nn", x, graphs[0])]
    for i in range(n_blocks - 1):
        h = feats[-1]
        f = edge_conv(sd, f"backbone.{i}.body.gconv.nn", h, graphs[i + 1])
        feats.append(torch.cat([h, f], 1) if dense else f + h)
    cat = torch.cat(feats, 1).unsqueeze(-1)
    fusion = conv_relu_bn(sd, "fusion_block", cat)
    glob = fusion.amax(2, keepdim=True).expand(-1, -1, cat.shape[2], -1)
    h = conv_relu_bn(sd, "prediction.1", conv_relu_bn(sd, "prediction.0",
                                                      torch.cat([glob, cat], 1)))
    logits = conv_relu_bn(sd, "prediction.3", h, norm=False)
    return feats + [fusion.squeeze(-1), logits.squeeze(-1)]


def run_recording(model, x):
    """The model's layer outputs [head, blocks…, fusion, logits] and the graph each
    DilatedKnn built, in call order."""
    outputs, graphs, hooks = [], [], []
    record = lambda store: (lambda module, args, out: store.append(out))  # noqa: E731
    for m in model.modules():
        if isinstance(m, DilatedKnn):
            hooks.append(m.register_forward_hook(record(graphs)))
    for m in [model.head, *model.backbone, model.fusion]:
        hooks.append(m.register_forward_hook(record(outputs)))
    with torch.no_grad():
        outputs_logits = model(x)
    for h in hooks:
        h.remove()
    return outputs + [outputs_logits], graphs


def check_graph(features, idx, k, dilation):
    """`idx` holds the neighbours at ranks 0, d, 2d, … of the k·d nearest (self included) by
    brute-force distance; compared as distances, so equidistant ties may go either way."""
    f = features.transpose(1, 2)
    dist = torch.cdist(f, f)
    want = dist.sort(-1).values[:, :, :k * dilation:dilation]
    got = dist.gather(2, idx)
    assert torch.allclose(got, want, atol=1e-9), (got - want).abs().max()


CASES = {  # name: (layout, converter overrides, points)
    "resgcn28": (dict(n_blocks=28, channels=64, in_channels=9, n_classes=13, fusion=1024,
                      prediction=(512, 256)), {}, 512),
    "densegcn4": (dict(n_blocks=4, channels=8, in_channels=9, n_classes=5, fusion=32,
                       prediction=(16, 8), growth=8), {"k": 9}, 200),
}


@pytest.mark.parametrize("case,prefix", [("resgcn28", ""), ("resgcn28", "module."),
                                         ("densegcn4", "")])
def test_official_checkpoint_computes_the_official_function(tmp_path, case, prefix):
    layout, overrides, n = CASES[case]
    sd = official_layout(**layout)
    path = tmp_path / "official.pth"
    torch.save({"epoch": 3, "state_dict": {prefix + k: v for k, v in sd.items()},
                "best_value": 0.5}, path)
    model = open_model(path, overrides=overrides).module.double().eval()
    growth = layout.get("growth")
    want_cfg = dict(n_blocks=layout["n_blocks"], channels=layout["channels"],
                    in_channels=layout["in_channels"], n_classes=layout["n_classes"],
                    fusion_channels=layout["fusion"], prediction=list(layout["prediction"]),
                    block="dense" if growth else "res", growth=growth, act_first=True,
                    k=overrides.get("k", 16))
    assert {key: model.cfg[key] for key in want_cfg} == want_cfg

    x = torch.rand(1, 9, n, dtype=torch.float64)
    ours, graphs = run_recording(model, x)
    k = want_cfg["k"]
    check_graph(x[:, :3], graphs[0], k, 1)  # the head's graph: xyz only
    for i, idx in enumerate(graphs[1:]):
        check_graph(ours[i], idx, k, 1 + i)  # block i: its input, dilation 1 + i
    ref = official_layers({key: v.double() for key, v in sd.items()}, x, graphs,
                          layout["n_blocks"], dense=bool(growth))
    names = ["head"] + [f"block {i + 1}" for i in range(layout["n_blocks"] - 1)] + [
        "fusion", "logits"]
    assert len(ours) == len(ref) == len(names)
    for name, a, b in zip(names, ours, ref):
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-7), (name, (a - b).abs().max())
    # back to the official layout: the same keys and values
    back = official_state_dict(model.float())
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[key], sd[key]) for key in sd)


def test_our_checkpoint_round_trip(tmp_path):
    cfg = {"model": dict(n_blocks=3, channels=8, k=4, conv="gen", block="res+")}
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "m.pt", model, cfg, meta={"note": "x"})
    loaded = open_model(tmp_path / "m.pt").module
    x = torch.rand(1, 9, 64)
    assert torch.equal(model(x), loaded(x))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_model(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(FormatError, match="not a readable checkpoint"):
        open_model(tmp_path / "garbage.pt")
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(FormatError, match="neither"):
        open_model(tmp_path / "other.pt")
    model = build_model(dict(n_blocks=3, channels=8))
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, {"model": dict(n_blocks=3, channels=8)})
    with pytest.raises(FormatError, match="weights do not fit"):
        open_model(good, overrides={"channels": 16})
    good.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(FormatError):
        open_model(good)
