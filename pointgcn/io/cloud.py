"""The in-memory point cloud every reader returns and every writer takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Beyond ±2048 (2¹¹) float32's spacing is 2⁻¹² or coarser, so storing a coordinate rounds it by
# up to 2⁻¹³ m ≈ 0.12 mm (0.5 mm at 10⁴ m, 3 cm at UTM eastings, 0.125 m at UTM northings);
# below it by at most 2⁻¹⁴ m ≈ 0.06 mm. Clouds reaching that far are stored relative to an offset.
LOCAL_LIMIT = 2048.0


@dataclass
class PointCloud:
    """Per-point arrays of one cloud; optional ones are None when the source has no such data.

    points  (N, 3) float32, relative to `offset`
    colors  (N, 3) float32 in [0, 1]
    normals (N, 3) float32
    labels  (N,) int64 ground-truth class ids
    fields  extra per-point arrays by name (e.g. "pred", "intensity")
    label_scheme  whose class ids `labels` are when the format says (LAS: "asprs"); None for a
            column named as labels, which stages take to be in their model's scheme
    offset  (3,) float64 origin of `points`: the coordinates in the file are `points + offset`
            (`absolute_points()`). Zeros, unless `read_points` met a coordinate of magnitude
            ≥ LOCAL_LIMIT (2048) — georeferenced scans — where float32 would round by more
            than 0.1 mm; then it is the bounding-box minimum rounded down to whole units (see
            `local_frame`). Processing uses the local float32 `points` (blocks and models are
            translation-invariant); the writers add `offset` back (as float64).
    label_field  the name of the column `labels` came from (`label`, `class`, an npz `seg`;
            None for labels made in code, and LAS, whose labels are its `classification`), so
            `--labels NAME` picks labels only by the name the file gave them (io/columns.py)
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    label_scheme: str | None = None
    label_field: str | None = None

    def __post_init__(self) -> None:
        self.offset = np.asarray(self.offset, np.float64).reshape(3)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def has_offset(self) -> bool:
        return bool(np.any(self.offset != 0))

    def absolute_points(self) -> np.ndarray:
        """(N, 3) float64 `points + offset`: the coordinates as the file gave them."""
        return self.points.astype(np.float64) + self.offset

    def subset(self, index: np.ndarray) -> "PointCloud":
        """The cloud restricted to `index` (bool mask or integer indices)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return PointCloud(self.points[index], pick(self.colors), pick(self.normals),
                          pick(self.labels), {k: v[index] for k, v in self.fields.items()},
                          self.source, self.offset, self.label_scheme, self.label_field)


def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (min, max) of (N, 3) points. Column by column: numpy's axis-0 reduction of an
    (N, 3) array runs an inner loop of 3 and is ≈ 10× slower on millions of points."""
    lo = np.array([points[:, i].min() for i in range(3)], dtype=np.float64)
    hi = np.array([points[:, i].max() for i in range(3)], dtype=np.float64)
    return lo, hi


def local_frame(points: np.ndarray, lo: np.ndarray | None = None,
                hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Finite (N, 3) coordinates (float64 as read) → (float32 points, float64 offset).

    The offset is zero when every |coordinate| < LOCAL_LIMIT, else the per-axis minimum rounded
    down to a whole unit: an integer offset makes `points − offset` exact in float64, so the
    only rounding is float32's on the local coordinates (≤ 0.06 mm while the cloud spans less
    than 2 km). `lo`, `hi`: the points' `bounds`, when the caller has them.
    """
    xyz = np.asarray(points, np.float64)
    if not len(xyz):
        return np.ascontiguousarray(xyz, np.float32), np.zeros(3)
    if lo is None or hi is None:
        lo, hi = bounds(xyz)
    offset = np.zeros(3)
    if max(np.abs(lo).max(), np.abs(hi).max()) >= LOCAL_LIMIT:
        offset = np.floor(lo)
    if not offset.any():
        return np.ascontiguousarray(xyz, np.float32), offset
    return np.ascontiguousarray(xyz - offset, np.float32), offset
