"""Transforms against their formulas; FPS and voxel subsampling against brute force / Open3D."""
import numpy as np
import pytest

from pointgcn.data import sampling, transforms as T
from pointgcn.errors import InputError


@pytest.fixture
def cloud():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)) * [2.0, 1.0, 0.5] + [3.0, -1.0, 7.0]
    normals = rng.normal(size=(500, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return np.concatenate([pts, normals], axis=1).astype(np.float32)


def test_normalize_unit_sphere_and_scale(cloud):
    out = T.normalize_unit_sphere(cloud)
    np.testing.assert_allclose(out[:, :3].mean(0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(out[:, :3], axis=1).max(), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out[:, 3:], cloud[:, 3:])
    c = cloud[:, :3].astype(np.float64) - cloud[:, :3].astype(np.float64).mean(0)
    expect = c / np.abs(c).max() * 0.999999
    np.testing.assert_allclose(T.normalize_scale(cloud)[:, :3], expect, atol=1e-6)


def test_rotation_scale_translate_follow_their_formulas(cloud):
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    out = T.rotate_z(cloud, rng, normals=True)
    a = ref.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    np.testing.assert_allclose(out[:, :3], cloud[:, :3] @ rot.T, atol=1e-5)
    np.testing.assert_allclose(out[:, 3:], cloud[:, 3:] @ rot.T, atol=1e-5)
    np.testing.assert_allclose(out[:, 2], cloud[:, 2])  # z is the rotation axis
    out = T.scale_anisotropic(cloud, rng, normals=True)
    f = ref.uniform(2 / 3, 3 / 2, size=3)
    np.testing.assert_allclose(out[:, :3], cloud[:, :3] * f, rtol=1e-5)
    n = cloud[:, 3:] / f
    np.testing.assert_allclose(out[:, 3:], n / np.linalg.norm(n, axis=1, keepdims=True),
                               atol=1e-5)
    out = T.translate(cloud, rng)
    np.testing.assert_allclose(out[:, :3], cloud[:, :3] + ref.uniform(-0.2, 0.2, 3), atol=1e-5)


def test_jitter_is_clipped_and_shuffle_keeps_pairs(cloud):
    rng = np.random.default_rng(1)
    out = T.jitter(cloud, rng, sigma=0.5, clip=0.05)
    d = out[:, :3] - cloud[:, :3]
    assert np.abs(d).max() <= 0.05 + 1e-6 and (np.abs(d) > 0.049).mean() > 0.5
    labels = np.arange(len(cloud))
    pts, lab = T.shuffle(cloud, rng, labels)
    np.testing.assert_array_equal(pts, cloud[lab])
    assert not np.array_equal(lab, labels)


def test_point_dropout_replaces_with_first_point(cloud):
    rng = np.random.default_rng(2)
    labels = np.arange(len(cloud))
    out, lab = T.point_dropout(cloud, rng, labels)  # labels after rng are never the ratio
    assert out.shape == cloud.shape
    dropped = lab != labels
    assert dropped.any() and (lab[dropped] == 0).all()
    np.testing.assert_array_equal(out[dropped], np.broadcast_to(cloud[0], out[dropped].shape))
    np.testing.assert_array_equal(out[~dropped], cloud[~dropped])
    same, same_lab = T.point_dropout(cloud, rng, labels, max_ratio=0.0)  # r = 0 drops nothing
    np.testing.assert_array_equal(same, cloud)
    np.testing.assert_array_equal(same_lab, labels)


def brute_fps(p, m, start=0):
    chosen = [start]
    for _ in range(m - 1):
        d = np.array([min(((p[i] - p[j]) ** 2).sum() for j in chosen) for i in range(len(p))])
        chosen.append(int(np.argmax(d)))
    return np.array(chosen)


def test_fps_matches_brute_force():
    rng = np.random.default_rng(3)
    p = rng.random((120, 3))
    for start in (0, 17):
        np.testing.assert_array_equal(sampling.farthest_point_sample(p, 25, start),
                                      brute_fps(p, 25, start))
    idx = sampling.farthest_point_sample(p[:10], 14)
    assert sorted(idx[:10]) == list(range(10)) and len(idx) == 14


def test_random_sample_keeps_every_point_when_padding():
    rng = np.random.default_rng(4)
    idx = sampling.random_sample(10, 25, rng)
    assert len(idx) == 25 and set(idx) == set(range(10))
    idx = sampling.random_sample(100, 40, rng)
    assert len(set(idx)) == 40
    with pytest.raises(InputError):
        sampling.random_sample(0, 4, rng)


def brute_voxels(p, v):
    origin = p.min(0) - v / 2
    groups = {}
    for i, q in enumerate(p):
        groups.setdefault(tuple(np.floor((q - origin) / v).astype(int)), []).append(i)
    return list(groups.values())  # in order of first point


def test_voxel_subsample_modes_against_brute_force_and_open3d():
    import open3d as o3d

    rng = np.random.default_rng(6)
    p = rng.random((3000, 3)) * [2.0, 1.0, 0.5]
    colors = rng.random((3000, 3))
    labels = rng.integers(0, 4, 3000)
    groups = brute_voxels(p, 0.1)
    res = sampling.voxel_subsample(p, 0.1, colors, labels, mode="mean")
    assert len(res.points) == len(groups)
    for k, g in enumerate(groups):
        np.testing.assert_allclose(res.points[k], p[g].mean(0), atol=1e-5)
        np.testing.assert_allclose(res.colors[k], colors[g].mean(0), atol=1e-5)
        counts = np.bincount(labels[g], minlength=4)
        assert res.labels[k] == np.argmax(counts)  # majority, ties → smallest id
        assert (res.inverse[g] == k).all() and res.first[k] == g[0]
    first = sampling.voxel_subsample(p, 0.1, colors, labels, mode="first")
    np.testing.assert_array_equal(first.points, p[[g[0] for g in groups]])
    np.testing.assert_array_equal(first.labels, labels[[g[0] for g in groups]])
    o3d_pts = np.asarray(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
                         .voxel_down_sample(0.1).points)
    ours = res.points[np.lexsort(res.points.T)]
    np.testing.assert_allclose(ours, o3d_pts[np.lexsort(o3d_pts.T)], atol=1e-5)
    with pytest.raises(InputError, match="voxel size"):
        sampling.voxel_subsample(p, 0.0)


def test_voxel_grid_beyond_one_int64_key_stays_exact():
    """Extents whose voxel count overflows a single int64 key: voxels must not merge."""
    big = 2.0 ** 32 - 1
    p = np.array([[0, 0, 0], [5, 0, 0], [0, big, big], [5.3, 0.2, 0.0]])  # grid origin −0.5
    res = sampling.voxel_subsample(p, 1.0, mode="first")
    assert res.inverse.tolist() == [0, 1, 2, 1] and res.first.tolist() == [0, 1, 2]
