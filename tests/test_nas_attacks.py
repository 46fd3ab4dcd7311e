"""Attack corpus for `latency collect|fit|predict` and `search`: files of the wrong kind,
truncated, non-finite or absurdly nested. Each ends with exit 2 and one `error:` line, writes
nothing, and leaves every file it was given byte-identical."""
import json

import pytest
import torch
import yaml

from apps.cli import main
from pointgcn.errors import ConfigError, FormatError
from pointgcn.nas.genotype import Genotype, save_genotype
from pointgcn.nas.latency import collect
from pointgcn.nas.latency_file import read_rows
from pointgcn.nas.latreg import LatReg, fit, save_latreg

from test_nas_latency import ARCHS, TINY, synthetic_rows
from test_nas_search import shapes  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

ROW = json.dumps(synthetic_rows(1)[0])
GENOTYPE = Genotype([[("gat", 0), ("gin", 1)], [("skip_connect", 0), ("conv_1x1", 2)],
                     [("sage", 1), ("mr_conv", 3)]], cells=1, channels=8, k=4)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _foreign(kind: str, path):
    """Files a user may point `--out` at by mistake."""
    if kind == "latency regressor":  # the case: `collect --out reg.pt`
        save_latreg(LatReg(hidden=4), path)
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "other JSON, no final newline":
        path.write_text(json.dumps({"models": [{"name": "m", "file": "m.pt"}]}))
    elif kind == "other JSON":
        path.write_text(json.dumps({"models": []}) + "\n")
    elif kind == "csv":
        path.write_text("x,y,z\n1,2,3\n4,5")
    elif kind == "rows, then a foreign line":
        path.write_text(ROW + "\n" + "x,y,z\n" + ROW + "\n")
    elif kind == "rows, then a foreign unfinished line":
        path.write_text(ROW + "\nhello")


@pytest.mark.parametrize("kind", ["latency regressor", "binary", "other JSON, no final newline",
                                  "other JSON", "csv", "rows, then a foreign line",
                                  "rows, then a foreign unfinished line"])
def test_collect_leaves_a_file_it_does_not_recognise_byte_identical(tmp_path, capsys, kind):
    out = tmp_path / "reg.pt"
    _foreign(kind, out)
    before = out.read_bytes()
    with pytest.raises(FormatError, match="left unchanged"):
        collect(out, 1, TINY, archs=ARCHS[:1], warmup=0, rounds=1, progress=False, seed=0)
    assert out.read_bytes() == before
    # and through the CLI, at a name the CLI's own --out checks accept
    out = tmp_path / "lat.jsonl"
    out.write_bytes(before)
    assert main(["latency", "collect", "--out", str(out), "--n", "1", "--points", "16",
                 "--width", "2", "--cells", "1", "--k", "2", "--n-classes", "3", "--warmup", "0",
                 "--rounds", "1", "--no-progress"]) == 2
    line = _one_error_line(capsys)  # the CLI's kind check (apps/paths.py) or the library's
    assert "left unchanged" in line or "is not a .jsonl file of ours" in line
    assert out.read_bytes() == before


def test_collect_keeps_a_whole_last_row_that_lacks_its_newline(tmp_path):
    out = tmp_path / "lat.jsonl"
    collect(out, 1, TINY, archs=ARCHS[:1], warmup=0, rounds=1, progress=False, seed=0)
    edited = out.read_text().rstrip("\n")  # an editor that drops the final newline
    out.write_text(edited)
    assert len(read_rows(out)) == 1
    collect(out, 1, TINY, archs=ARCHS[1:2], warmup=0, rounds=1, progress=False, seed=0)
    assert out.read_text().startswith(edited + "\n")
    assert [r["ops"] for r in read_rows(out)] == ARCHS[:2]


def test_collect_checks_its_settings_before_touching_the_file(tmp_path):
    out = tmp_path / "lat.jsonl"
    out.write_text(ROW + "\n" + ROW[:30])  # an unfinished append of ours: collect would cut it
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="unknown op 'convolution'"):
        collect(out, 1, TINY, archs=[["convolution"] * 9], progress=False, seed=0)
    with pytest.raises(ConfigError, match="rounds"):
        collect(out, 1, TINY, archs=ARCHS[:1], rounds=0, progress=False, seed=0)
    assert out.read_bytes() == before


BAD_ROWS = {
    "binary": lambda: bytes(range(256)),
    "a checkpoint": None,  # written by the test
    "empty": lambda: b"",
    "NaN latency": lambda: (ROW.replace('"latency_ms": ', '"latency_ms": NaN, "x": ') + "\n").encode(),
    "infinite latency": lambda: (ROW.replace('"latency_ms": ', '"latency_ms": Infinity, "x": ')
                                 + "\n").encode(),
    "infinite reference": lambda: (ROW[:-1] + ', "reference_ms": 1e999}\n').encode(),
    "nested 100000 deep": lambda: ("[" * 100000 + "\n").encode(),
    "a genotype": lambda: yaml.safe_dump(GENOTYPE.to_dict()).encode(),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_fit_refuses_malformed_latency_files(tmp_path, capsys, kind):
    data = tmp_path / "lat.jsonl"
    if BAD_ROWS[kind] is None:
        torch.save({"format": "pointgcn", "state_dict": {}}, data)
    else:
        data.write_bytes(BAD_ROWS[kind]())
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(20)))
    before = data.read_bytes()
    assert main(["latency", "fit", str(good), str(data), "--out", str(tmp_path / "r.pt"),
                 "--steps", "5"]) == 2
    assert str(data) in _one_error_line(capsys)
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.jsonl", "lat.jsonl"]


def _latreg(path):
    reg, _ = fit(synthetic_rows(40), steps=5, hidden=8, min_architectures=1)
    save_latreg(reg, path)
    return path


BAD_GENOTYPES = {
    "binary": (".yaml", bytes(range(256))),
    "empty": (".yaml", b""),
    "nested 100000 deep JSON": (".json", b"[" * 100000),
    "nested 100000 deep YAML": (".yaml", b"[" * 100000),
    "python object tag": (".yaml", b"!!python/object/apply:os.system ['true']\n"),
    "nodes as a string": (".yaml", b"nodes: abc\n"),
    "a latency row": (".json", ROW.encode()),
    "truncated": (".yaml", yaml.safe_dump(GENOTYPE.to_dict()).encode()[:60]),
}


@pytest.mark.parametrize("kind", list(BAD_GENOTYPES))
def test_predict_refuses_malformed_genotype_files(tmp_path, capsys, kind):
    suffix, data = BAD_GENOTYPES[kind]
    g = tmp_path / f"g{suffix}"
    g.write_bytes(data)
    assert main(["latency", "predict", str(_latreg(tmp_path / "r.pt")), str(g)]) == 2
    assert str(g) in _one_error_line(capsys)
    assert g.read_bytes() == data


BAD_LATREGS = {
    "a genotype": lambda p: save_genotype(GENOTYPE, p),
    "a latency jsonl": lambda p: p.write_text(ROW + "\n"),
    "a model checkpoint": lambda p: torch.save({"format": "pointgcn", "state_dict": {}}, p),
    "no hidden width": lambda p: torch.save({"format": "pointgcn-latreg", "state_dict": {}}, p),
    "non-finite weights": lambda p: save_latreg(_nan_latreg(), p),
    "truncated": lambda p: p.write_bytes(_latreg(p).read_bytes()[:200]),
}


def _nan_latreg():
    reg = LatReg(hidden=4)
    with torch.no_grad():
        reg.net[0].weight[0, 0] = float("nan")
    return reg


@pytest.mark.parametrize("kind", list(BAD_LATREGS))
def test_predict_refuses_malformed_regressors(tmp_path, capsys, kind):
    reg = tmp_path / "r.pt"
    BAD_LATREGS[kind](reg)
    before = reg.read_bytes()
    g = save_genotype(GENOTYPE, tmp_path / "g.yaml")
    assert main(["latency", "predict", str(reg), str(g)]) == 2
    assert str(reg) in _one_error_line(capsys)
    assert reg.read_bytes() == before


def test_fit_refuses_too_few_architectures_and_says_why(tmp_path, capsys):
    data = tmp_path / "lat.jsonl"
    rows = synthetic_rows(5) * 30  # 150 rows, but 5 architectures measured 30 times each
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["latency", "fit", str(data), "--out", str(tmp_path / "r.pt"), "--steps", "5"]) == 2
    err = _one_error_line(capsys)
    assert "5 distinct architectures (150 rows)" in err and "≥ 100" in err and "90" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat.jsonl"]
    model, _ = fit(synthetic_rows(100), steps=5)  # the minimum itself is enough
    assert model.meta["latency_range_ms"][0] > 4.0  # the fastest latency it trained on


SEARCH_ATTACKS = {  # config text or a change to a valid config, the message
    "binary config": (bytes(range(256)), "not valid YAML (UnicodeDecodeError)"),
    "config nested 100000 deep": (b"[" * 100000, "not valid YAML (RecursionError)"),
    "config that is its own base": (b"base: c.yaml\n", "config base cycle"),
    "a genotype as config": (yaml.safe_dump(GENOTYPE.to_dict()).encode(), "data.dataset"),
    "a genotype in the supernet": ({"model": {"genotype": "g.yaml"}}, "no place in a search"),
    "a model for 40 classes": ({"model": {"n_classes": 40}},
                               "model.n_classes is 40 but the data set gives 13"),
    "a model for normals": ({"model": {"in_channels": 6}},
                            "model.in_channels is 6 but the data set gives 3"),
    "a genotype as regressor": ({"--latreg": "g.yaml"}, "not a readable checkpoint"),
    "a latency jsonl as regressor": ({"--latreg": "lat.jsonl"}, "not a readable checkpoint"),
}


@pytest.mark.parametrize("kind", list(SEARCH_ATTACKS))
def test_search_refuses_malformed_inputs(shapes, tmp_path, capsys, kind):
    from test_nas_search import MODEL, _config

    attack, msg = SEARCH_ATTACKS[kind]
    save_genotype(GENOTYPE, tmp_path / "g.yaml")
    (tmp_path / "lat.jsonl").write_text(ROW + "\n")
    options = ["--method", "sgas"]
    if isinstance(attack, bytes):
        (tmp_path / "c.yaml").write_bytes(attack)
    elif "--latreg" in attack:
        _config(tmp_path / "c.yaml", shapes)
        options = ["--method", "lcnas", "--target-ms", "5", "--latreg",
                   str(tmp_path / attack["--latreg"])]
    else:
        _config(tmp_path / "c.yaml", shapes, model={**MODEL, **attack["model"]})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["search", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"),
                 "--no-progress", *options]) == 2
    assert msg in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no output either
