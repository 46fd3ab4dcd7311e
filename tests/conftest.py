import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pointgcn.data.base import SampleList  # noqa: F401 (tests import it from here)
from pointgcn.data.build import memory_bundle  # noqa: F401

# Devices tests run on: the CPU, and a GPU wherever one exists (CUDA cases skip elsewhere).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test: tiny tensors on a shared 2-core machine,
    where a second thread spin-waiting for a busy core made a 1 s search take 30 s. Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep the suite's caches (sampled shapes, latency tables) out of the user's home."""
    old = os.environ.get("POINTGCN_CACHE")
    os.environ["POINTGCN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("POINTGCN_CACHE", None)
    else:
        os.environ["POINTGCN_CACHE"] = old


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """Tiny synthetic data sets in the real on-disk formats, written once per session."""
    from pointgcn.data.synthetic import write_parts, write_rooms, write_shapes

    root = tmp_path_factory.mktemp("synth")
    write_rooms(root, n_rooms=6, seed=0)
    write_shapes(root, n_per_class=4, seed=0)
    write_parts(root, n_shapes=10, seed=0, n_points=512)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below `root` (hidden ones included, links left out) with its bytes: equal
    trees are equal outputs, and a tree unchanged by a refused command is untouched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def default_set(request, tmp_path_factory):
    """(root, seconds): the data set its test module's `WRITE` (a synthetic generator) writes
    with every default, written once per module and timed."""
    write = request.module.WRITE
    out = tmp_path_factory.mktemp(write.__name__)
    start = time.perf_counter()
    root = write(out)
    return root, time.perf_counter() - start


def tiny_model(**over) -> dict:
    base = dict(n_blocks=3, channels=8, k=6, fusion_channels=16, prediction=[16], dropout=0.1,
                epsilon=0.2)
    return {**base, **over}


def tiny_room_checkpoint(path: Path, n_points: int, stride: float) -> Path:
    """A random-weight 13-class room segmenter (9 input channels, 1 m blocks of `n_points`
    sampled every `stride` m) saved at `path`: for tests of the segment stage."""
    from pointgcn.models import build_model, save_checkpoint

    cfg = {"data": {"dataset": "s3dis", "n_points": n_points, "block": 1.0, "stride": stride},
           "model": tiny_model(in_channels=9, n_classes=13)}
    save_checkpoint(path, build_model(cfg).eval(), cfg)
    return path


def write_rich_las(path, version: str, point_format: int, xyz: np.ndarray, scale: float, rng,
                   rgb: np.ndarray | None = None):
    """A georeferenced LAS/LAZ with every kind of dimension: returns, flags, GPS time, a scaled
    int16 and a 3-float extra-bytes dimension, a VLR, and RGB where the format has it (`rgb`,
    else drawn from `rng`); returns it as laspy reads it back."""
    import laspy

    n = len(xyz)
    las = laspy.LasData(laspy.LasHeader(point_format=point_format, version=version))
    las.add_extra_dim(laspy.ExtraBytesParams(name="amplitude", type=np.int16, scales=[0.01],
                                             offsets=[1.0]))
    las.add_extra_dim(laspy.ExtraBytesParams(name="echo", type="3f4"))
    las.header.offsets, las.header.scales = [654000.0, 5432000.0, 0.0], [scale] * 3
    las.x, las.y, las.z = xyz.T
    las.classification = rng.integers(0, 20, n)
    las.intensity = rng.integers(0, 65536, n)
    las.return_number, las.number_of_returns = rng.integers(1, 3, n), np.full(n, 3)
    las.gps_time = rng.random(n) * 1e6
    las.user_data, las.point_source_id = rng.integers(0, 256, n), rng.integers(0, 65536, n)
    rgb = rng.integers(0, 65536, (n, 3)) if rgb is None else rgb
    if "red" in las.point_format.dimension_names:
        las.red, las.green, las.blue = rgb.T
    las.amplitude = np.round(rng.random(n) * 100, 2)
    las.echo = rng.random((n, 3)).astype(np.float32)
    las.header.vlrs.append(laspy.VLR(user_id="survey", record_id=7, description="crs stand-in",
                                     record_data=b"EPSG:32632"))
    las.write(str(path))
    return laspy.read(str(path))


def shapes_config(root, **train) -> dict:
    return {"name": "t", "seed": 0,
            "data": {"dataset": "modelnet40", "root": str(root / "ModelNet40"),
                     "n_points": 128, "val_fraction": 0.25},
            "model": tiny_model(),
            "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, **train}}


def rooms_config(root, **train) -> dict:
    return {"name": "r", "seed": 0,
            "data": {"dataset": "s3dis",
                     "root": str(root / "Stanford3dDataset_v1.2_Aligned_Version"),
                     "n_points": 256, "block": 2.0, "stride": 2.0, "val_fraction": 0.25},
            "model": tiny_model(),
            "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, **train}}


@contextlib.contextmanager
def deadline(seconds):
    """Fail with TimeoutError instead of hanging when the body runs longer than `seconds`
    (a SIGALRM in the main thread: for a test whose bug is an endless loop)."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
