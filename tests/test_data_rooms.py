"""Room blocking: block coverage, features, voting back to every point, bounded memory, and the
training blocks (PointNet's rule) from the same planner, against a brute-force reference."""
import time
import tracemalloc

import numpy as np
import pytest
import torch
from conftest import deadline

from pointgcn.data.blocks import apply_position_norm, block_channels, grid_starts, sample_block
from pointgcn.data.rooms import (DEFAULT_FILL_COLOR, VoteAccumulator, iter_blocks, plan_blocks,
                                 room_to_blocks)
from pointgcn.engine.inference import predict_room
from pointgcn.errors import InputError
from pointgcn.io.cloud import PointCloud


def brute_members(points, plan, start):
    s = points[:, :2].astype(np.float64) - plan.mins[:2]
    x0, y0 = start
    return np.flatnonzero((s[:, 0] >= x0) & (s[:, 0] <= x0 + plan.block)
                          & (s[:, 1] >= y0) & (s[:, 1] <= y0 + plan.block))


@pytest.mark.parametrize("extent,block,stride,min_points", [
    ((3.3, 2.1, 2.0), 1.0, 0.5, 100), ((0.4, 5.0, 1.0), 1.0, 0.5, 1),
    ((2.0, 2.0, 1.0), 0.8, 0.3, 60),
])
def test_every_point_lies_in_a_block(extent, block, stride, min_points):
    rng = np.random.default_rng(0)
    pts = (rng.random((4000, 3)) * extent - 7.0).astype(np.float32)
    pts[:5, 0] = pts[:, 0].max()  # points exactly on the far edge
    plan = plan_blocks(pts, block, stride, 256, min_points)
    covered = np.zeros(len(pts), bool)
    for k in range(len(plan)):
        members = plan.members(k)
        np.testing.assert_array_equal(members, brute_members(pts, plan, plan.starts[k]))
        assert len(members) == plan.counts[k] > 0
        covered[members] = True
    assert covered.all()


def test_small_blocks_dropped_only_when_covered():
    rng = np.random.default_rng(1)
    dense = rng.random((3000, 3)) * [2.1, 2.1, 1.0]  # strips x, y ∈ [2, 2.1]: small blocks
    corner = np.array([[2.9, 2.9, 0.5]])  # a lone point, reachable only by sparse blocks
    pts = np.concatenate([dense, corner]).astype(np.float32)
    plan = plan_blocks(pts, 1.0, 0.5, 128, min_points=100)
    assert (plan.counts < 100).any()  # the corner's block was kept despite its few points
    kept = set(np.concatenate([plan.members(k) for k in range(len(plan))]))
    assert kept == set(range(len(pts)))
    full = plan_blocks(pts, 1.0, 0.5, 128, min_points=1)
    assert len(plan) < len(full)


def label_of(xyz, n_classes):
    return (np.floor(xyz[:, 0] / 0.7) + 2 * np.floor(xyz[:, 1] / 0.45)
            + np.floor(xyz[:, 2] / 0.8)).astype(np.int64) % n_classes


def make_room(n, rng, colors=True):
    xyz = rng.random((n, 3)) * [3.1, 2.3, 2.4] + [4.0, -2.0, 0.1]
    grid = np.array([0.7, 0.45, 0.8])
    frac = (xyz / grid) % 1.0  # keep points 2 mm away from the function's steps
    xyz = np.where((frac < 0.01) | (frac > 0.99), xyz + 0.02, xyz)
    return PointCloud(xyz.astype(np.float32),
                      rng.random((n, 3)).astype(np.float32) if colors else None)


def known_model(plan, n_classes):
    """A "network" that labels each block point by a fixed function of its room position,
    recovered from channels 6–8 (xyz / room max) of the features it is given."""
    def predict(feats):
        xyz = feats[:, 6:9, :].transpose(0, 2, 1).astype(np.float64) * plan.room_max + plan.mins
        lab = label_of(xyz.reshape(-1, 3), n_classes).reshape(xyz.shape[:2])
        return torch.nn.functional.one_hot(torch.from_numpy(lab), n_classes).permute(0, 2, 1) * 4.0
    return predict


def test_features_match_the_points_they_index():
    rng = np.random.default_rng(2)
    cloud = make_room(3000, rng)
    plan = plan_blocks(cloud.points, n_points=512)
    shifted = cloud.points.astype(np.float64) - plan.mins
    for feats, index in iter_blocks(cloud, plan, batch=3, position_norm="none"):
        assert feats.shape[1:] == (9, 512) and index.shape == (feats.shape[0], 512)
        for f, idx in zip(feats, index):
            expect = block_channels(shifted[idx], cloud.colors[idx], plan.room_max, 1.0)
            np.testing.assert_allclose(f.T, expect, atol=1e-6)
    feats, index = next(iter_blocks(PointCloud(cloud.points), plan, batch=2))
    np.testing.assert_array_equal(feats[:, 3:6], DEFAULT_FILL_COLOR)  # no colours → fill
    expect = apply_position_norm(block_channels(shifted[index[0]], np.full((512, 3), 0.5),
                                                plan.room_max, 1.0), "normalize_scale")
    np.testing.assert_allclose(feats[0].T, expect, atol=1e-6)


def test_cover_all_votes_reproduce_the_function_at_every_point():
    rng = np.random.default_rng(3)
    cloud = make_room(20000, rng)
    plan = plan_blocks(cloud.points, n_points=1024)
    assert (plan.counts > 1024).any()  # big blocks are split into several samples
    logits = predict_room(cloud, known_model(plan, 5), 5, n_points=1024, batch=4,
                          cover_all=True)
    assert logits.shape == (20000, 5)
    np.testing.assert_array_equal(logits.argmax(1), label_of(cloud.points.astype(np.float64), 5))
    np.testing.assert_allclose(logits.max(1), 4.0)  # a mean of identical one-hot votes


def test_unvoted_points_take_their_nearest_voted_point():
    rng = np.random.default_rng(4)
    cloud = make_room(3000, rng)
    plan = plan_blocks(cloud.points, n_points=128)
    votes = VoteAccumulator(len(cloud), 5)
    model = known_model(plan, 5)
    for feats, index in iter_blocks(cloud, plan, batch=8):
        votes.add(model(feats), index)
    voted = votes.voted
    assert 0 < voted.sum() < len(cloud)
    with pytest.raises(InputError, match="have no votes"):
        votes.result()
    out = votes.result(cloud.points)
    truth = label_of(cloud.points.astype(np.float64), 5)
    np.testing.assert_array_equal(out[voted].argmax(1), truth[voted])
    have, miss = np.flatnonzero(voted), np.flatnonzero(~voted)
    d = ((cloud.points[miss, None, :] - cloud.points[None, have, :]) ** 2).sum(-1)
    np.testing.assert_allclose(out[miss], out[have[d.argmin(1)]])
    np.testing.assert_allclose(votes.result(cloud.points, "sum")[voted],
                               votes.sums[voted])
    np.testing.assert_allclose(out[voted] * votes.counts[voted, None], votes.sums[voted],
                               rtol=1e-6)


def test_two_million_points_in_bounded_memory():
    rng = np.random.default_rng(5)
    n = 2_000_000
    cloud = PointCloud((rng.random((n, 3)) * [12.0, 12.0, 3.0]).astype(np.float32))
    plan = plan_blocks(cloud.points)
    all_blocks_bytes = len(plan) * 4096 * (9 * 4 + 8)
    votes = VoteAccumulator(n, 2)
    tracemalloc.start()
    try:
        for feats, index in iter_blocks(cloud, plan, batch=8):
            votes.add(np.stack([feats[:, 6], -feats[:, 6]], axis=1), index)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < all_blocks_bytes / 5, (peak, all_blocks_bytes)
    out = votes.result(cloud.points)
    assert out.shape == (n, 2) and np.isfinite(out).all()
    assert votes.counts.sum() == len(plan) * 4096


def brute_plan(points, block, stride, min_points, cover=True):
    """Reference plan: every block of the bounding-box grid, members by direct comparison, then
    the min_points rule (small blocks dropped only when all their points lie in blocks of at
    least min_points; without `cover`, always — PointNet's training rule)."""
    s = points[:, :2].astype(np.float64) - points[:, :2].min(axis=0).astype(np.float64)
    starts, members = [], []
    for x0 in grid_starts(s[:, 0].max(), block, stride):
        in_x = (s[:, 0] >= x0) & (s[:, 0] <= x0 + block)
        for y0 in grid_starts(s[:, 1].max(), block, stride):
            idx = np.flatnonzero(in_x & (s[:, 1] >= y0) & (s[:, 1] <= y0 + block))
            if len(idx):
                starts.append((x0, y0))
                members.append(idx)
    keep = [len(m) >= min_points for m in members]
    covered = np.zeros(len(points), bool)
    for k in np.flatnonzero(keep):
        covered[members[k]] = True
    small = [cover and not keep[k] and not covered[m].all() for k, m in enumerate(members)]
    keep = [a or b for a, b in zip(keep, small)]
    return ([starts[k] for k in np.flatnonzero(keep)],
            [members[k] for k in np.flatnonzero(keep)])


@pytest.mark.parametrize("seed,outlier,block,stride,min_points", [
    (10, None, 1.0, 0.5, 40), (11, (43.0, 31.0), 1.0, 0.5, 40), (12, (-35.0, 12.0), 0.8, 0.3, 5),
    (13, (9.0, -48.0), 1.0, 0.5, 1), (14, None, 1.5, 0.4, 25),
])
def test_plan_matches_brute_force(seed, outlier, block, stride, min_points):
    rng = np.random.default_rng(seed)
    pts = rng.random((600, 3)) * [4.2, 3.3, 2.0] + [3.0, -1.0, 0.0]
    pts[:40, :2] = np.round(pts[:40, :2] / stride) * stride  # points on cell and block edges
    if outlier is not None:
        pts[-1, :2] = outlier
    pts = pts.astype(np.float32)
    plan = plan_blocks(pts, block, stride, 64, min_points)
    starts, members = brute_plan(pts, block, stride, min_points)
    np.testing.assert_array_equal(plan.starts, np.array(starts).reshape(-1, 2))
    for k, expect in enumerate(members):
        np.testing.assert_array_equal(plan.members(k), expect)
        assert plan.counts[k] == len(expect)


def edge_room(seed, stride, outlier=None):
    rng = np.random.default_rng(seed)
    pts = rng.random((600, 3)) * [4.2, 3.3, 2.0] + [3.0, -1.0, 0.0]
    pts[:40, :2] = np.round(pts[:40, :2] / stride) * stride  # points on cell and block edges
    if outlier is not None:
        pts[-1, :2] = outlier
    return pts.astype(np.float32)


@pytest.mark.parametrize("seed,outlier,block,stride,min_points", [
    (20, None, 1.0, 0.5, 40), (21, (43.0, 31.0), 1.0, 0.5, 1), (22, None, 0.8, 0.3, 5),
    (23, None, 1.5, 0.4, 25), (24, (-35.0, 12.0), 1.0, 0.5, 30),
])
def test_training_blocks_match_brute_force(seed, outlier, block, stride, min_points):
    """room_to_blocks = PointNet's loop over the whole grid: same blocks in the same order, so
    the same generator draws give the same samples (bit for bit)."""
    pts = edge_room(seed, stride, outlier)
    starts, members = brute_plan(pts, block, stride, min_points, cover=False)
    assert len(members) > 1 and all(len(m) >= min_points for m in members)
    plan = plan_blocks(pts, block, stride, 64, min_points, cover_every_point=False)
    np.testing.assert_array_equal(plan.starts, np.array(starts).reshape(-1, 2))
    rgb = np.random.default_rng(seed).integers(0, 256, (len(pts), 3)).astype(np.float32)
    labels = np.arange(len(pts)) % 13
    data, lab = room_to_blocks(pts, rgb, labels, np.random.default_rng(0), 64, block, stride,
                               min_points)
    rng, xyz = np.random.default_rng(0), pts.astype(np.float64) - pts.min(0)
    assert data.shape == (len(members), 64, 9)
    for b, idx in enumerate(members):
        chosen = idx[sample_block(len(idx), 64, rng)]
        np.testing.assert_array_equal(
            data[b], block_channels(xyz[chosen], rgb[chosen] / 255.0, xyz.max(0), block))
        np.testing.assert_array_equal(lab[b], labels[chosen])


@pytest.mark.parametrize("stride", [1.0, 0.5])
@pytest.mark.parametrize("min_points", [100, 1])
def test_training_blocks_with_a_far_outlier(stride, min_points):
    """100 km away: PointNet's loop would walk 4·10¹⁰ empty blocks, the planner looks at the
    outlier's own. Reference: PointNet's loop over the part of the grid the room reaches (the
    grid spans the bounding box, so with stride < block the room's far edge also gets the
    half-overlapping blocks that a grid ending at the room would not have), then the outlier's
    block, which min_points drops like any sparse block."""
    rng = np.random.default_rng(25)
    near = rng.random((5000, 3)) * [3.9, 3.9, 3.0]
    xyz = np.concatenate([near, [[1e5, 1e5, 1.0]]])
    rgb = rng.integers(0, 256, (len(xyz), 3)).astype(np.float64)
    labels = np.append(rng.integers(0, 12, len(near)), 12)
    with deadline(10):
        data, lab = room_to_blocks(xyz, rgb, labels, np.random.default_rng(0), 256, 1.0, stride,
                                   min_points)
    shifted = xyz - xyz.min(0)
    starts = np.arange(int(4.0 / stride) + 1) * stride
    members = [np.flatnonzero((shifted[:-1, 0] >= x0) & (shifted[:-1, 0] <= x0 + 1)
                              & (shifted[:-1, 1] >= y0) & (shifted[:-1, 1] <= y0 + 1))
               for x0 in starts for y0 in starts]
    members = [m for m in members if len(m) >= min_points]
    draw = np.random.default_rng(0)
    for b, idx in enumerate(members):
        chosen = idx[sample_block(len(idx), 256, draw)]
        np.testing.assert_array_equal(
            data[b], block_channels(shifted[chosen], rgb[chosen] / 255.0, shifted.max(0), 1.0))
    own = slice(len(members), None)
    assert len(data[own]) == (min_points == 1) and (lab[own] == 12).all()
    assert np.allclose(data[own][:, :, 6:8], 1.0)
    if stride == 1.0:  # the grid adds nothing at the room's edge: the blocks without it
        alone = room_to_blocks(near, rgb[:-1], labels[:-1], np.random.default_rng(0), 256, 1.0,
                               stride, min_points)
        np.testing.assert_array_equal(data[:len(members), :, :6], alone[0][:, :, :6])
        np.testing.assert_array_equal(lab[:len(members)], alone[1])


def test_far_outlier_gets_its_own_block_quickly():
    rng = np.random.default_rng(15)
    pts = (rng.random((5000, 3)) * [4.0, 4.0, 3.0]).astype(np.float32)
    pts[-1, :2] = (1e5, -1e5)  # 100 km away: the bounding box holds 4·10¹⁰ stride cells
    t = time.perf_counter()
    plan = plan_blocks(pts, min_points=100)
    assert time.perf_counter() - t < 5.0
    assert len(plan) < 100
    covered = np.zeros(len(pts), bool)
    for k in range(len(plan)):
        covered[plan.members(k)] = True
    assert covered.all()
    outlier_blocks = [k for k in range(len(plan)) if len(pts) - 1 in plan.members(k)]
    assert outlier_blocks and all(plan.counts[k] == 1 for k in outlier_blocks)


@pytest.mark.parametrize("change,kwargs,msg", [
    (lambda p: p.__setitem__((-1, 0), 1e30), {}, r"spans 1e\+30 m in x"),
    (lambda p: p.__setitem__((-1, 1), -3e9), {}, r"spans 3e\+09 m in y"),
    (lambda p: p.__setitem__((-1, 2), np.nan), {}, "NaN or infinite"),
    (lambda p: p.__setitem__((-1, 0), -np.inf), {}, "NaN or infinite"),
    (lambda p: p.__iadd__(1e20), {}, r"coordinate of 1e\+20 m"),
    (lambda p: p.__imul__(2.0), {"stride": 1e-3}, "blocks to look at"),  # 10⁶ per cell
])
def test_absurd_extents_are_input_errors(change, kwargs, msg):
    pts = np.random.default_rng(16).random((40, 3)) * 5.0
    change(pts)
    with pytest.raises(InputError, match=msg):
        plan_blocks(pts, **kwargs)


def test_every_point_votes_with_a_far_outlier():
    rng = np.random.default_rng(17)
    cloud = make_room(3000, rng)
    points = cloud.points.copy()
    points[-1] = (2e4, 5e3, 1.0)  # 20 km away, the largest x
    cloud = PointCloud(points, cloud.colors)

    def predict(feats):  # logits (x, -x) / room max x: the outlier's are (1, -1)
        return np.stack([feats[:, 6], -feats[:, 6]], axis=1)
    plan = plan_blocks(cloud.points, n_points=256)
    votes = VoteAccumulator(len(cloud), 2)
    for feats, index in iter_blocks(cloud, plan, batch=8, cover_all=True):
        votes.add(predict(feats), index)
    assert votes.voted.all()
    out = predict_room(cloud, predict, 2, n_points=256, cover_all=True)
    np.testing.assert_allclose(out, votes.result(), rtol=1e-6)
    np.testing.assert_allclose(out[-1], [1.0, -1.0])
    x = (cloud.points[:, 0].astype(np.float64) - plan.mins[0]) / plan.room_max[0]
    np.testing.assert_allclose(out[:, 0], x, atol=1e-6)
