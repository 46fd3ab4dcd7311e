import numpy as np
import pytest
import torch

from pointgcn.errors import InputError
from pointgcn.graph import DilatedKnn, dilate, export_mode, knn, knn_export


def brute_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: exact squared distances, order (self first, distance, index)."""
    x = x.double().numpy()
    b, _, n = x.shape
    out = np.empty((b, n, k), dtype=np.int64)
    for bi in range(b):
        p = x[bi].T
        for i in range(n):
            d = ((p - p[i]) ** 2).sum(1)
            not_self = np.arange(n) != i
            order = np.lexsort((np.arange(n), d, not_self))  # last key sorts first
            out[bi, i] = order[:k]
    return torch.from_numpy(out)


@pytest.mark.parametrize("b,c,n,k", [(1, 3, 50, 1), (2, 3, 64, 8), (3, 7, 33, 33), (2, 16, 100, 10),
                                     (2, 8, 300, 70)])  # the last selects with argpartition
def test_knn_matches_brute_force(b, c, n, k):
    x = torch.randn(b, c, n, dtype=torch.float64)
    expect = brute_knn(x, k)
    assert torch.equal(knn(x, k), expect)
    assert torch.equal(knn(x, k, chunk_elements=b * n * 7), expect)  # 7-row chunks
    assert torch.equal(knn_export(x, k), expect)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_selection_path_exact_on_any_thread_count(threads):
    """float32 rows with > SMALL_TAKE candidates go through numpy (argpartition + int64 keys), one
    chunk per worker thread; small integer coordinates make every distance exact, with ties."""
    x = torch.randint(-6, 7, (2, 8, 300)).float()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for k in (70, 200):
            expect = brute_knn(x, k)
            assert torch.equal(knn(x, k), expect)
            assert torch.equal(knn(x, k, chunk_elements=2 * 300 * 7), expect)
            assert torch.get_num_threads() == threads  # restored after the worker threads
    finally:
        torch.set_num_threads(before)


def test_float32_selection_path_by_share_of_the_row(monkeypatch):
    """Rows whose candidates are ≤ 1/TOPK_SHARE of the row select with torch.topk (faster
    there, docs/performance.md), longer takes with numpy's argpartition; both exact, with the
    ties of integer coordinates and duplicated points ordered by index."""
    import importlib

    knn_mod = importlib.import_module("pointgcn.graph.knn")
    calls = []
    real = np.argpartition
    monkeypatch.setattr(knn_mod.np, "argpartition",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    g = torch.randint(-4, 5, (1, 3, 500)).float()
    x = torch.cat([g, g[:, :, :140]], 2)  # duplicated points: ties at every k
    n = x.shape[2]
    for k, numpy_path in ((20, False), (n // knn_mod.TOPK_SHARE - knn_mod.TIE_WINDOW, False),
                          (n // knn_mod.TOPK_SHARE, True), (100, True)):
        calls.clear()
        assert torch.equal(knn(x, k), brute_knn(x, k)), k
        assert bool(calls) == numpy_path, k


@pytest.fixture
def fresh_buffer_on_this_thread(monkeypatch):
    """The kNN module with no score buffer yet, its chunks run on this thread (1 thread)."""
    import importlib

    knn_mod = importlib.import_module("pointgcn.graph.knn")
    monkeypatch.setattr(knn_mod._SCORES, "buf", None, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield knn_mod
    torch.set_num_threads(before)


def test_cpu_score_chunks_reuse_one_buffer_per_thread(fresh_buffer_on_this_thread):
    """Each thread keeps one score buffer across chunks and calls (fresh ones page-fault under
    pointgcn's 64 KiB mmap threshold), and the neighbours stay exact."""
    knn_mod = fresh_buffer_on_this_thread
    x = torch.randn(2, 5, 300)
    assert torch.equal(knn(x, 20), brute_knn(x, 20))
    first = knn_mod._SCORES.buf.data_ptr()
    assert torch.equal(knn(x, 20, chunk_elements=2 * 300 * 7), brute_knn(x, 20))
    y = torch.randn(1, 5, 200)
    assert torch.equal(knn(y, 9), brute_knn(y, 9))
    assert knn_mod._SCORES.buf.data_ptr() == first


def test_score_buffer_made_under_inference_mode_serves_later_calls(
        fresh_buffer_on_this_thread):
    """A first kNN under `torch.inference_mode` (latency measurement) must not leave this
    thread an inference-tensor buffer that a later no_grad or training call cannot write."""
    x = torch.randn(1, 5, 200)
    want = brute_knn(x, 9)
    with torch.inference_mode():
        assert torch.equal(knn(x, 9), want)
    with torch.no_grad():
        assert torch.equal(knn(x, 9), want)
    assert torch.equal(knn(x, 9), want)


def test_knn_ties_broken_by_index():
    # An integer lattice with duplicated points: many exact ties, all computed exactly.
    g = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij")).reshape(1, 3, -1)
    x = torch.cat([g, g[:, :, :10]], dim=2)[:, :, torch.randperm(74)]
    for k in (1, 2, 5, 7, 13, 50):
        expect = brute_knn(x, k)
        assert torch.equal(knn(x, k), expect)
        assert torch.equal(knn(x, k, chunk_elements=74 * 5), expect)


def test_heavily_duplicated_points():
    """Resampled blocks repeat points many times: ties wider than the candidate window."""
    base = torch.randn(1, 3, 20)
    x = base.repeat(1, 1, 12)[:, :, torch.randperm(240)]
    for k in (5, 16, 30, 60):
        assert torch.equal(knn(x, k), brute_knn(x, k))
        assert torch.equal(knn(x, k, chunk_elements=240 * 7), brute_knn(x, k))


def test_self_is_first_and_float32_close_to_brute():
    x = torch.randn(2, 3, 300)
    idx = knn(x, 12)
    assert torch.equal(idx[:, :, 0], torch.arange(300).expand(2, 300))
    ref = brute_knn(x, 12)
    # float32 rounding may swap near-equal neighbours; distances must agree closely
    def dist(ix):
        p = x.transpose(1, 2)
        nb = torch.gather(p.unsqueeze(1).expand(2, 300, 300, 3), 2,
                          ix.unsqueeze(-1).expand(2, 300, 12, 3))
        return ((nb - p.unsqueeze(2)) ** 2).sum(-1)
    assert torch.allclose(dist(idx), dist(ref), atol=1e-5)
    assert (idx == ref).float().mean() > 0.99


def test_knn_errors():
    with pytest.raises(InputError, match="only 5 points"):
        knn(torch.randn(1, 3, 5), 6)
    with pytest.raises(InputError, match="shape"):
        knn(torch.randn(3, 5), 2)
    with pytest.raises(InputError, match="k·d"):
        DilatedKnn(4, 3)(torch.randn(1, 3, 10))


def test_export_mode_uses_loop_free_path(monkeypatch):
    import sys
    mod = sys.modules["pointgcn.graph.knn"]
    real, calls = mod.knn_export, []
    monkeypatch.setattr(mod, "knn_export", lambda x, k: calls.append(k) or real(x, k))
    x = torch.randn(1, 3, 20)
    with export_mode():
        out = knn(x, 4)
    assert calls == [4] and torch.equal(out, knn(x, 4))


def test_dilation_keeps_every_dth():
    x = torch.randn(2, 3, 80, dtype=torch.float64)
    full = brute_knn(x, 4 * 3)
    assert torch.equal(DilatedKnn(4, 3)(x), full[:, :, ::3])
    assert torch.equal(dilate(full, 4, 3), full[:, :, [0, 3, 6, 9]])


def test_stochastic_dilation_per_sample():
    full = torch.arange(12).expand(64, 5, 12).contiguous()  # positions == indices
    regular = full[:, :, ::3]
    # eval / epsilon 0: regular stride
    assert torch.equal(dilate(full, 4, 3, epsilon=0.0, stochastic=True), regular)
    assert torch.equal(dilate(full, 4, 3, epsilon=1.0, stochastic=False), regular)
    out = dilate(full, 4, 3, epsilon=1.0, stochastic=True)
    assert out.shape == (64, 5, 4)
    assert (out.diff(dim=-1) > 0).all()                     # ascending distance order kept
    assert torch.equal(out, out[:, :1].expand_as(out))       # one subset per sample, all points
    subsets = {tuple(s.tolist()) for s in out[:, 0]}
    assert len(subsets) > 20                                 # drawn per sample, not per batch
    torch.manual_seed(1)
    half = dilate(full, 4, 3, epsilon=0.5, stochastic=True)
    random_share = (half[:, 0] != regular[:, 0]).any(-1).float().mean()
    assert 0.25 < random_share < 0.75


def test_graph_module_respects_train_eval():
    g = DilatedKnn(4, 3, stochastic=True, epsilon=1.0)
    x = torch.randn(8, 3, 60, dtype=torch.float64)
    g.eval()
    assert torch.equal(g(x), brute_knn(x, 12)[:, :, ::3])
    g.train()
    assert not torch.equal(g(x), brute_knn(x, 12)[:, :, ::3])


def test_cluster_backend_matches_dense():
    pytest.importorskip("torch_cluster")
    x = torch.rand(2, 3, 500)
    dense = DilatedKnn(16, 2)(x)
    clus = DilatedKnn(16, 2, backend="cluster")(x)
    assert torch.equal(dense, clus)


def test_16384_points_in_bounded_memory():
    """Chunked rows: N=16384 stays far below the 1 GB one distance matrix would take."""
    import subprocess
    import sys
    code = """
import torch
from pointgcn.graph import knn
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
x = torch.rand(1, 64, 16384)
open('/proc/self/clear_refs', 'w').write('5')
base = hwm()
idx = knn(x, 16)
assert idx.shape == (1, 16384, 16) and (idx[0, :, 0] == torch.arange(16384)).all()
print(hwm() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 300_000, out.stdout  # kB


def test_knn_ignores_autocast():
    x = torch.randn(2, 16, 200)
    ref = DilatedKnn(16, 3)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(DilatedKnn(16, 3)(x), ref)


def test_cluster_backend_keeps_self_first_with_duplicates():
    pytest.importorskip("torch_cluster")
    from pointgcn.graph.knn import knn_cluster
    x = torch.rand(1, 3, 30).repeat(1, 1, 20)
    idx = knn_cluster(x, 16)
    assert torch.equal(idx[0, :, 0], torch.arange(600))


def _large_norm_features(seed=0, offset=300.0, b=2, c=32, n=300):
    """Deep residual features: a large common offset against small distances between points."""
    g = torch.Generator().manual_seed(seed)
    return (offset * torch.randn(b, c, 1, generator=g) + torch.randn(b, c, n, generator=g)).float()


def _float64_distances(x):
    p = x.double().transpose(1, 2)
    return ((p.unsqueeze(2) - p.unsqueeze(1)) ** 2).sum(-1)  # (B, N, N), exact enough


def test_centred_distances_match_float64_where_the_naive_formula_does_not():
    """Scores + the row term ‖x_i − s‖² are squared distances: on large-norm features they
    equal float64 brute force within 1e-3 (relative to the mean distance), while the naive
    ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j in float32 misses that bound by orders of magnitude."""
    from pointgcn.graph.knn import _augment, centre
    x = _large_norm_features()
    exact = _float64_distances(x)
    scale = exact.mean()
    xt = x.transpose(1, 2)
    q, k = _augment(xt)
    row = (centre(xt).double() ** 2).sum(-1, keepdim=True)
    ours = torch.bmm(q, k.transpose(1, 2)).double() + row
    sq = (xt * xt).sum(-1, keepdim=True)
    naive = (sq + sq.transpose(1, 2) - 2 * torch.bmm(xt, xt.transpose(1, 2))).double()
    ours_err = float((ours - exact).abs().max() / scale)
    naive_err = float((naive - exact).abs().max() / scale)
    assert ours_err < 1e-3, ours_err
    assert naive_err > 1e-2, naive_err


def test_knn_on_large_norm_features_equals_float64_in_both_paths():
    """float32 kNN (eager and the export path) picks the float64 neighbours on features whose
    norm is 300× their spread; uncentred float32 scores would pick other ones."""
    x = _large_norm_features(seed=1)
    expect = brute_knn(x, 24)
    assert torch.equal(knn(x, 24), expect)
    assert torch.equal(knn_export(x, 24), expect)
    xt = x.transpose(1, 2)
    naive = (xt * xt).sum(-1).unsqueeze(1) - 2 * torch.bmm(xt, xt.transpose(1, 2))
    r = torch.arange(x.shape[2])
    naive[:, r, r] = -float("inf")
    assert not torch.equal(naive.topk(24, largest=False).indices.sort(-1).values,
                           expect.sort(-1).values)


def test_centring_shift_is_short_and_keeps_integer_data_exact():
    """The shift is the mean on a grid of 1/16 of a power of two below the spread: integer
    coordinates stay on a 2⁻⁴ grid (exact ties stay exact), within a grid step of the mean,
    and a large offset goes."""
    from pointgcn.graph.knn import centre
    x = torch.randint(-7, 9, (3, 40, 5)).float()  # (B, N, C), spread ≥ 1
    c = centre(x)
    assert torch.equal((c * 16).round(), c * 16)
    assert ((x - c) - x.mean(1, keepdim=True)).abs().max() <= 0.5
    assert torch.equal(centre(x + 3072.0), c)  # the offset is a multiple of the grid: exact
    deep = _large_norm_features()[:, :, :50].transpose(1, 2)
    assert centre(deep).abs().max() < 5 < deep.abs().min()


def test_float64_scores_reference_mode():
    """Inside float64_scores() every eager kNN scores in float64 (the parity check's reference):
    on neighbours 10·2⁻⁷ apart in squared distance at coordinates up to 2000 — closer than
    float32 scores resolve, farther than float64's — it picks the float64 neighbours where
    plain float32 does not."""
    from pointgcn.graph import float64_scores
    from pointgcn.graph.knn import _FLOAT64
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(60, 3, generator=g) * 2000).round()
    far = q + torch.tensor([5.0 + 2 ** -7, 0, 0])   # d² = 25 + 10·2⁻⁷ + 2⁻¹⁴, lower index
    near = q + torch.tensor([3.0, 4.0, 0])          # d² = 25 exactly
    x = torch.stack([q, far, near], 1).reshape(-1, 3).T[None].contiguous()  # exact float32
    expect = brute_knn(x, 3)
    assert not torch.equal(knn(x, 3), expect)
    with float64_scores():
        assert torch.equal(knn(x, 3), expect)
    assert _FLOAT64 == [False] and not torch.equal(knn(x, 3), expect)  # restored
