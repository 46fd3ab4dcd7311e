"""Attack corpus, inputs: what a file holds is what the stages use — a scanned mesh's vertices,
labels only from a column named as labels, clouds a model can really see — else one line and
exit 2 (issue 11)."""
import json
import warnings

import numpy as np
import pytest
import trimesh
from conftest import tiny_model

from apps.cli import main
from pointgcn.io import PointCloud, read_points, write_ply
from pointgcn.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    for name, model in (("seg", tiny_model(in_channels=9, n_classes=13)),
                        ("cls", tiny_model(in_channels=3, n_classes=5, task="classification")),
                        ("part", tiny_model(in_channels=3, n_classes=4,
                                            task="part_segmentation"))):
        cfg = {"data": {"n_points": 64 if name != "seg" else 128}, "model": model}
        save_checkpoint(d / f"{name}.pt", build_model(cfg).eval(), cfg)
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, message, *argv):
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)


def test_scanned_mesh_is_labelled_vertex_by_vertex(models, tmp_path, capsys):
    """A triangulated PLY scan (bunny-like): its vertices are its points, for segment and info."""
    mesh = trimesh.creation.icosphere(subdivisions=3)  # 642 vertices, 1280 faces
    mesh.export(tmp_path / "scan.ply")
    code, out, _ = run(capsys, "segment", tmp_path / "scan.ply", "--weights", models / "seg.pt",
                       "--out", tmp_path / "o.ply", "--no-harmonise")  # colourless
    assert code == 0 and "labelling its 642 vertices" in out
    np.testing.assert_allclose(read_points(tmp_path / "o.ply").points, mesh.vertices, atol=1e-6)
    code, out, _ = run(capsys, "data", "info", tmp_path / "scan.ply", "--json")
    info = json.loads(out)
    assert (info["points"], info["mesh_faces"]) == (642, 1280)
    mesh.export(tmp_path / "part.obj")
    code, out, _ = run(capsys, "segment", tmp_path / "part.obj", "--weights", models / "part.pt",
                       "--out", tmp_path / "p.ply")
    assert code == 0 and len(read_points(tmp_path / "p.ply")) == 642
    code, out, _ = run(capsys, "classify", tmp_path / "part.obj", "--weights", models / "cls.pt",
                       "--mesh-points", "500")
    assert code == 0 and "classifying 500 points sampled on its 1280 faces" in out


def room(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) * [3.0, 2.0, 2.5], rng.integers(0, 256, (n, 3))


@pytest.mark.parametrize("layout", ["xyz intensity", "cloudcompare xyz rgba"])
def test_unnamed_columns_are_never_scored(models, tmp_path, capsys, layout):
    xyz, rgb = room()
    if layout == "xyz intensity":
        table = np.c_[xyz, np.random.default_rng(1).integers(0, 12, len(xyz))]
    else:
        table = np.c_[xyz, rgb, np.full(len(xyz), 255)]  # alpha 255, would be "label 255"
    src = tmp_path / "scan.txt"
    np.savetxt(src, table, fmt="%.5f")
    seg = ["segment", src, "--weights", models / "seg.pt", "--out", tmp_path / "o.ply",
           "--no-harmonise"]  # the intensity table has no colours
    code, out, _ = run(capsys, *seg)
    assert code == 0 and "OA" not in out and "labels" not in out
    back = read_points(tmp_path / "o.ply")
    assert back.labels is None and "scalar" in back.fields and "pred" in back.fields
    if layout == "xyz intensity":  # the user may name the column: then it is scored
        code, out, _ = run(capsys, *seg, "--labels", "scalar")
        assert code == 0 and "against the file's labels: OA" in out
    else:
        one_line_error(capsys, "beyond this model's classes", *seg, "--labels", "scalar")
    one_line_error(capsys, "no field 'intensity'", *seg, "--labels", "intensity")


def test_las_classification_is_not_scored_as_s3dis_classes(models, tmp_path, capsys):
    import laspy

    xyz, _ = room()
    las = laspy.LasData(laspy.LasHeader(point_format=1, version="1.4"))
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.intensity, las.classification = np.arange(len(xyz)) % 7, np.full(len(xyz), 2)
    src = tmp_path / "tile.las"
    las.write(str(src))
    seg = ["segment", src, "--weights", models / "seg.pt", "--out", tmp_path / "o.ply",
           "--no-harmonise"]
    code, out, _ = run(capsys, *seg, "--png", tmp_path / "o.png")
    assert code == 0 and "OA" not in out and "ASPRS class codes" in out
    back = read_points(tmp_path / "o.ply")
    assert back.labels is None and set(back.fields) >= {"classification", "intensity", "pred"}
    code, out, _ = run(capsys, *seg, "--labels", "classification")  # told to: scored
    assert code == 0 and "against the file's labels: OA" in out


def test_overflowing_coordinates_are_one_line_errors(models, tmp_path, capsys):
    """A bit-flipped binary PLY: float32-max coordinates overflow every distance."""
    pts = np.random.default_rng(0).random((300, 3)).astype(np.float32)
    pts[7] = np.finfo(np.float32).max
    write_ply(tmp_path / "flip.ply", PointCloud(pts))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may leak either
        one_line_error(capsys, "span", "classify", tmp_path / "flip.ply", "--weights",
                       models / "cls.pt")
        one_line_error(capsys, "span", "segment", tmp_path / "flip.ply", "--weights",
                       models / "seg.pt", "--out", tmp_path / "o.ply")
    assert not (tmp_path / "o.ply").exists()


@pytest.mark.parametrize("n, distinct", [(1, 1), (2, 2), (10, 10), (5000, 1)])
def test_too_few_distinct_points_for_the_graph(models, tmp_path, capsys, n, distinct):
    """The tiny models gather k·dilation = 12 neighbours: fewer distinct points is an error,
    not a confident answer."""
    rng = np.random.default_rng(0)
    pts = rng.random((distinct, 3)).astype(np.float32)[np.arange(n) % distinct]
    write_ply(tmp_path / "few.ply", PointCloud(pts))
    message = f"{distinct} distinct point"
    one_line_error(capsys, message, "classify", tmp_path / "few.ply", "--weights",
                   models / "cls.pt")
    one_line_error(capsys, message, "segment", tmp_path / "few.ply", "--weights",
                   models / "seg.pt", "--out", tmp_path / "o.ply")
    one_line_error(capsys, message, "segment", tmp_path / "few.ply", "--weights",
                   models / "part.pt", "--out", tmp_path / "o.ply")
    assert not (tmp_path / "o.ply").exists()
    pts = rng.random((12, 3)).astype(np.float32)  # exactly enough
    write_ply(tmp_path / "enough.ply", PointCloud(pts))
    assert run(capsys, "classify", tmp_path / "enough.ply", "--weights", models / "cls.pt")[0] == 0


def test_absurd_mesh_sample_counts_and_nan_meshes(models, tmp_path, capsys):
    trimesh.creation.box().export(tmp_path / "box.off")
    one_line_error(capsys, "--mesh-points 1 to 1,000,000", "classify", tmp_path / "box.off",
                   "--weights", models / "cls.pt", "--mesh-points", "300000000")
    one_line_error(capsys, "--mesh-points must be 1 to 1,000,000", "viz", tmp_path / "box.off",
                   "--mesh-points", "300000000", "--png", tmp_path / "b.png")
    (tmp_path / "nan.off").write_text("OFF\n3 1 0\nnan 0 0\n0 1 0\n1 1 0\n3 0 1 2\n")
    one_line_error(capsys, "pass --drop-invalid", "classify", tmp_path / "nan.off",
                   "--weights", models / "cls.pt")
    one_line_error(capsys, "all 1 faces touch NaN/Inf vertices", "classify",
                   tmp_path / "nan.off", "--weights", models / "cls.pt", "--drop-invalid")


def test_expand_inputs_skips_hidden_files_and_unreadable_glob_matches(tmp_path, capsys):
    """A folder's hidden files and folders (.git/, .ipynb_checkpoints/, ._x.ply) are not
    shapes; a glob's matches are filtered by readable suffix like a folder's walk, saying how
    many it skipped."""
    from apps.paths import expand_inputs
    from pointgcn.errors import InputError
    from pointgcn.io import SUPPORTED

    for name in ("a.ply", "sub/b.off", ".hidden.ply", ".git/c.ply", "sub/.cache/d.ply",
                 "notes.txt.bak", "e.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    got = expand_inputs([tmp_path], SUPPORTED)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["a.ply", "sub/b.off"]
    assert capsys.readouterr().err == ""
    got = expand_inputs([str(tmp_path / "*")], SUPPORTED)  # a.ply, e.json, notes.txt.bak
    assert [p.name for p in got] == ["a.ply"]
    assert "skipped 2 of 3 matching files" in capsys.readouterr().err
    with pytest.raises(InputError, match="no readable files"):
        expand_inputs([str(tmp_path / "*.json")], SUPPORTED)
