"""Shared pieces of the procedural data sets: surface primitives, seeding and staged output.

Surfaces are sampled with numpy rather than trimesh: room generation draws millions of
candidate points from a few hundred boxes and quads, and a closed-form sampler per primitive
(uniform in the quad's (a, b) parameters, in the cylinder's (angle, height)) is both exact and
an order of magnitude faster than building meshes and sampling triangles.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ...errors import InputError


def child_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """`n` independent generators derived from `seed` (item i never depends on n or on item j)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def rot_z(yaw: float) -> np.ndarray:
    """3×3 rotation about the up (z) axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to `axis` and to each other."""
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


@dataclass
class Quad:
    """Parallelogram origin + a·u + b·v, a, b ∈ [0, 1]; normal u × v."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def area(self) -> float:
        return float(np.linalg.norm(np.cross(self.u, self.v)))

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        ab = rng.random((n, 2))
        pts = self.origin + ab[:, :1] * self.u + ab[:, 1:] * self.v
        normal = np.cross(self.u, self.v)
        normal = normal / max(np.linalg.norm(normal), 1e-12)
        return pts, np.broadcast_to(normal, pts.shape)

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> "Quad":
        return Quad(rot @ self.origin + shift, rot @ self.u, rot @ self.v)


@dataclass
class Cylinder:
    """Lateral surface (plus optional caps) of a cylinder or cone frustum from `base` along `axis`.

    `radius` is at the base, `radius_top` (default: same) at base + axis; caps = (bottom, top).
    """

    base: np.ndarray
    axis: np.ndarray
    radius: float
    caps: tuple[bool, bool] = (False, True)
    radius_top: float | None = None

    @property
    def height(self) -> float:
        return float(np.linalg.norm(self.axis))

    def _areas(self) -> np.ndarray:
        r0 = self.radius
        r1 = r0 if self.radius_top is None else self.radius_top
        side = np.pi * (r0 + r1) * np.hypot(self.height, r1 - r0)
        return np.array([side, np.pi * r0 ** 2 * self.caps[0], np.pi * r1 ** 2 * self.caps[1]])

    @property
    def area(self) -> float:
        return float(self._areas().sum())

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        e1, e2 = _frame(self.axis)
        h = self.height
        unit = self.axis / h
        r0 = self.radius
        r1 = r0 if self.radius_top is None else self.radius_top
        areas = self._areas()
        which = rng.choice(3, size=n, p=areas / areas.sum())
        theta = rng.random(n) * 2 * np.pi
        u = rng.random(n)
        # side: the area density along the height grows with the radius r0 + (r1 − r0)·t, so
        # t comes from inverting the CDF (r0·t + (r1 − r0)·t²/2) / ((r0 + r1)/2)
        if abs(r1 - r0) > 1e-12:
            t = (np.sqrt(r0 ** 2 + (r1 ** 2 - r0 ** 2) * u) - r0) / (r1 - r0)
        else:
            t = u
        radial = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
        r_side = r0 + (r1 - r0) * t
        # caps: radius ∝ sqrt(U) gives a uniform disc
        r = np.where(which == 0, r_side, np.where(which == 1, r0, r1) * np.sqrt(u))
        z = np.where(which == 0, t * h, np.where(which == 1, 0.0, h))
        pts = self.base + r[:, None] * radial + z[:, None] * unit
        slope = (r0 - r1) / h
        side_n = radial + slope * unit
        side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
        normals = np.where((which == 0)[:, None], side_n,
                           np.where((which == 1)[:, None], -unit, unit))
        return pts, normals

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> "Cylinder":
        return Cylinder(rot @ self.base + shift, rot @ self.axis, self.radius, self.caps,
                        self.radius_top)


@dataclass
class Sphere:
    """Sphere surface, optionally squashed along z by `z_scale` (a globe shade, a bush)."""

    center: np.ndarray
    radius: float
    z_scale: float = 1.0

    @property
    def area(self) -> float:
        return float(4 * np.pi * self.radius ** 2 * (1 + 2 * self.z_scale) / 3)  # close enough

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        scale = np.array([1.0, 1.0, self.z_scale])
        return self.center + self.radius * d * scale, d

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> "Sphere":
        return Sphere(rot @ self.center + shift, self.radius, self.z_scale)


Primitive = Quad | Cylinder | Sphere
FACES = ("-x", "+x", "-y", "+y", "-z", "+z")


def box(lo: Sequence[float], hi: Sequence[float], faces: Sequence[str] = FACES) -> list[Quad]:
    """Outward-facing quads of the axis-aligned box [lo, hi] (only the named faces)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = np.diag(hi - lo)
    quads = {
        "-x": Quad(lo, dz, dy), "+x": Quad(np.array([hi[0], lo[1], lo[2]]), dy, dz),
        "-y": Quad(lo, dx, dz), "+y": Quad(np.array([lo[0], hi[1], lo[2]]), dz, dx),
        "-z": Quad(lo, dy, dx), "+z": Quad(np.array([lo[0], lo[1], hi[2]]), dx, dy),
    }
    return [quads[f] for f in faces]


def cylinder_z(x: float, y: float, z0: float, z1: float, radius: float,
               caps: tuple[bool, bool] = (False, True)) -> Cylinder:
    """Vertical cylinder standing at (x, y) from z0 to z1."""
    return Cylinder(np.array([x, y, z0]), np.array([0.0, 0.0, z1 - z0]), radius, caps)


def sample_exact(rng: np.random.Generator, prims: Sequence[Primitive], n: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exactly `n` points spread over `prims` by area; returns points and the primitive index."""
    areas = np.array([p.area for p in prims])
    counts = rng.multinomial(n, areas / areas.sum())
    pts, owner = [], []
    for i, (prim, k) in enumerate(zip(prims, counts)):
        if k:
            pts.append(prim.sample(rng, int(k))[0])
            owner.append(np.full(k, i))
    return np.concatenate(pts), np.concatenate(owner)


def check_count(name: str, value: int, low: int = 1) -> int:
    """Validate an integer size argument (bad values are user input, not bugs)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp dir beside `final`; on success it replaces `final` in one rename.

    An interrupted or failing run leaves `final` as it was (absent or the previous data set),
    never half written. A previous data set is moved aside first and deleted after the swap.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old",
                                        dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
