"""The official deep_gcns_torch S3DIS checkpoint layout: keys, shapes and the function it means."""
import pytest
import torch
import torch.nn.functional as F

from pointgcn.errors import FormatError, InputError
from pointgcn.models import build_model, load_checkpoint, save_checkpoint
from pointgcn.models.official import official_state_dict

K = 16


def random_official_state_dict(n_blocks=28, channels=64, in_channels=9, n_classes=13):
    torch.manual_seed(0)
    model = build_model(dict(n_blocks=n_blocks, channels=channels, in_channels=in_channels,
                             n_classes=n_classes, act_first=True))
    sd = official_state_dict(model)
    for key, v in sd.items():  # non-trivial BatchNorm parameters and statistics
        if key.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif key.endswith("running_mean") or (key.endswith(".2.weight") or key.endswith(".2.bias")):
            v.normal_(0, 0.5)
    return sd


def official_forward(sd, x, n_blocks):
    """Reference written from the documented layout: Conv → ReLU → BN, cat[x_i, x_j − x_i],
    kNN on raw features incl. self, dilation 1+i, global feature first."""
    def basic(prefix, h, act=True):
        h = F.conv2d(h, sd[f"{prefix}.0.weight"], sd.get(f"{prefix}.0.bias"))
        if not act:
            return h
        return F.batch_norm(h.relu(), sd[f"{prefix}.2.running_mean"], sd[f"{prefix}.2.running_var"],
                            sd[f"{prefix}.2.weight"], sd[f"{prefix}.2.bias"], False, 0.0, 1e-5)

    def knn(f, kk):
        d = (f * f).sum(1, keepdim=True).transpose(1, 2) - 2 * f.transpose(1, 2) @ f + (f * f).sum(1, keepdim=True)
        return (-d).topk(kk, dim=-1)[1]

    def edge(prefix, h, idx):
        xi = h.unsqueeze(-1).expand(-1, -1, -1, idx.shape[-1])
        xj = torch.stack([h[b][:, idx[b]] for b in range(h.shape[0])])
        return basic(prefix, torch.cat([xi, xj - xi], 1)).amax(-1)

    feats = [edge("head.gconv.nn", x, knn(x[:, :3], K))]
    for i in range(n_blocks - 1):
        h = feats[-1]
        d = 1 + i
        feats.append(edge(f"backbone.{i}.body.gconv.nn", h, knn(h, K * d)[:, :, ::d]) + h)
    f = torch.cat(feats, 1).unsqueeze(-1)
    fusion = basic("fusion_block", f).amax(2, keepdim=True).expand(-1, -1, f.shape[2], -1)
    h = basic("prediction.1", basic("prediction.0", torch.cat([fusion, f], 1)))
    return basic("prediction.3", h, act=False).squeeze(-1)


def test_layout_has_the_219_documented_entries():
    sd = random_official_state_dict()
    assert len(sd) == 219
    assert sd["head.gconv.nn.0.weight"].shape == (64, 18, 1, 1)
    assert sd["backbone.26.body.gconv.nn.0.weight"].shape == (64, 128, 1, 1)
    assert sd["fusion_block.0.weight"].shape == (1024, 1792, 1, 1)
    assert sd["prediction.0.0.weight"].shape == (512, 2816, 1, 1)
    assert sd["prediction.1.0.weight"].shape == (256, 512, 1, 1)
    assert sd["prediction.3.0.weight"].shape == (13, 256, 1, 1)
    assert "prediction.3.0.bias" in sd and "backbone.27.body.gconv.nn.0.weight" not in sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_checkpoint_computes_the_official_function(tmp_path, prefix):
    sd = random_official_state_dict()
    path = tmp_path / "official.pth"
    torch.save({"epoch": 3, "state_dict": {prefix + k: v for k, v in sd.items()},
                "best_value": 0.5}, path)
    model = load_checkpoint(path).double()
    assert model.cfg["n_blocks"] == 28 and model.cfg["channels"] == 64
    assert model.cfg["in_channels"] == 9 and model.cfg["n_classes"] == 13
    x = torch.rand(1, 9, 512, dtype=torch.float64)
    ref = official_forward({k: v.double() for k, v in sd.items()}, x, 28)
    out = model(x)
    assert out.shape == (1, 13, 512)
    assert torch.allclose(out, ref, atol=1e-8, rtol=1e-6), (out - ref).abs().max()
    # round trip back to the official layout
    back = official_state_dict(model.float())
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_official_overrides_and_dense_inference(tmp_path):
    model = build_model(dict(n_blocks=4, channels=8, block="dense", growth=8, act_first=True,
                             fusion_channels=32))
    torch.save({"state_dict": official_state_dict(model)}, tmp_path / "d.pth")
    loaded = load_checkpoint(tmp_path / "d.pth", k=9)
    assert loaded.cfg["block"] == "dense" and loaded.cfg["growth"] == 8 and loaded.cfg["k"] == 9
    x = torch.rand(2, 9, 200)
    assert torch.allclose(loaded(x), load_checkpoint(tmp_path / "d.pth", k=9)(x))


def test_our_checkpoint_round_trip(tmp_path):
    cfg = {"model": dict(n_blocks=3, channels=8, k=4, conv="gen", block="res+")}
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "m.pt", model, cfg, meta={"note": "x"})
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(1, 9, 64)
    assert torch.equal(model(x), loaded(x))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(FormatError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(FormatError, match="neither"):
        load_checkpoint(tmp_path / "other.pt")
    model = build_model(dict(n_blocks=3, channels=8))
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, {"model": dict(n_blocks=3, channels=8)})
    with pytest.raises(FormatError, match="weights do not fit"):
        load_checkpoint(good, channels=16)
    good.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(FormatError):
        load_checkpoint(good)
