"""Square xy tiles over a cloud's block grid, for clouds processed a part at a time.

Coordinates are the block plan's shifted ones (points − the cloud's min corner, rooms.py).
Each point belongs to one tile, its *core* tile (half-open squares of side `size`; the last
row and column take the far edge). A tile is *loaded* with every point within `halo` of its
core (closed, Chebyshev distance in xy), so a point is loaded by its core tile and, near an
edge, by up to 8 neighbours (`halo ≤ size`). The halo a block planner needs to decide the
tile's blocks exactly is `halo_for` (engine/streaming.py says why).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


def halo_for(block: float, stride: float, reach: float) -> float:
    """Blocks over points within `reach` of the core, the blocks one block beyond whose counts
    decide whether they are kept, and a stride of slack for points on block edges."""
    return reach + 2 * block + stride


@dataclass(frozen=True)
class TileGrid:
    extent: tuple[float, float]  # the cloud's shifted x, y maxima
    size: float
    halo: float

    def __post_init__(self) -> None:
        if not (self.size > 0 and 0 <= self.halo <= self.size):
            raise ConfigError(f"tiles need 0 ≤ halo ≤ size, got size {self.size}, "
                              f"halo {self.halo}")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(math.floor(e / self.size)) + 1 for e in self.extent)

    def __len__(self) -> int:
        nx, ny = self.shape
        return nx * ny

    def _axis(self, v: np.ndarray, n: int) -> np.ndarray:
        return np.clip(np.floor(v / self.size).astype(np.int64), 0, n - 1)

    def core(self, xy: np.ndarray) -> np.ndarray:
        """(N,) id (tx · ny + ty) of each shifted point's core tile."""
        nx, ny = self.shape
        return self._axis(xy[:, 0], nx) * ny + self._axis(xy[:, 1], ny)

    def loading(self, xy: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """[(tile id, ascending indices of the points it loads)] for the tiles loading any."""
        nx, ny = self.shape
        cx, cy = self._axis(xy[:, 0], nx), self._axis(xy[:, 1], ny)
        out = {}
        for dx in (-1, 0, 1):
            tx = cx + dx
            okx = (tx >= 0) & (tx < nx) & self._near(xy[:, 0], tx, nx)
            for dy in (-1, 0, 1):
                ty = cy + dy
                ok = okx & (ty >= 0) & (ty < ny) & self._near(xy[:, 1], ty, ny)
                ids = tx[ok] * ny + ty[ok]
                idx = np.flatnonzero(ok)
                for t in np.unique(ids):
                    out.setdefault(int(t), []).append(idx[ids == t])
        return [(t, np.sort(np.concatenate(parts))) for t, parts in sorted(out.items())]

    def _near(self, v: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
        """Whether v lies within the halo of tile t's core along one axis (the edge tiles'
        cores reach out to ±infinity, as `core` clips)."""
        lo = np.where(t <= 0, -np.inf, t * self.size) - self.halo
        hi = np.where(t >= n - 1, np.inf, (t + 1) * self.size) + self.halo
        return (v >= lo) & (v <= hi)

    def core_square(self, tile: int) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of a tile's core (edges at infinity as in `core`)."""
        nx, ny = self.shape
        tx, ty = divmod(int(tile), ny)
        x0 = -math.inf if tx == 0 else tx * self.size
        x1 = math.inf if tx == nx - 1 else (tx + 1) * self.size
        y0 = -math.inf if ty == 0 else ty * self.size
        y1 = math.inf if ty == ny - 1 else (ty + 1) * self.size
        return x0, x1, y0, y1
