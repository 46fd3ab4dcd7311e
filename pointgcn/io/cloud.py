"""The in-memory point cloud every reader returns and every writer takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PointCloud:
    """Per-point arrays of one cloud; optional ones are None when the source has no such data.

    points  (N, 3) float32
    colors  (N, 3) float32 in [0, 1]
    normals (N, 3) float32
    labels  (N,) int64 ground-truth class ids
    fields  extra per-point arrays by name (e.g. "pred", "intensity")
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def subset(self, index: np.ndarray) -> "PointCloud":
        """The cloud restricted to `index` (bool mask or integer indices)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return PointCloud(self.points[index], pick(self.colors), pick(self.normals),
                          pick(self.labels), {k: v[index] for k, v in self.fields.items()},
                          self.source)
