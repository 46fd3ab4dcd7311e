"""Shared pieces of the procedural data sets: surface primitives, seeding and their output folder
(`synth_folder`: written whole or not at all, marked, and never replacing anything but an
earlier synth output).

Surfaces are sampled with numpy rather than trimesh: room generation draws millions of
candidate points from a few hundred boxes and quads, and a closed-form sampler per primitive
(uniform in the quad's (a, b) parameters, in the cylinder's (angle, height)) is both exact and
an order of magnitude faster than building meshes and sampling triangles.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import numpy as np

from ... import __version__
from ...errors import InputError, Setting
from ...io.atomic import atomic_folder, clean_stale, tag


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


MARKER = ".pointgcn-synth.json"  # in every data set folder synth writes: what, and which files


@contextlib.contextmanager
def synth_folder(final: str | Path, kind: str, overwrite: bool = False,
                 **settings) -> Iterator[Path]:
    """Yield an empty staging folder beside `final`; on success it becomes `final`, whole or not
    at all, with a MARKER that lists kind, settings and the sha256 of every file written.

    `final` must be missing or an empty folder (`atomic_folder`). With `overwrite` it may also
    hold an earlier synth output of this kind and nothing else (`check_replaceable`: the folder
    names are those of the real downloads, so anything else in it may be a user's data set);
    that one is swapped out only after the new one is complete.
    """
    target = Path(final).resolve()
    if not (target.is_dir() and any(target.iterdir())):  # atomic_folder writes or refuses it
        with atomic_folder(final) as stage:
            yield stage
            write_marker(stage, kind, settings)
        return
    if not overwrite:
        hint = ("; {overwrite} replaces this earlier synthetic set" if _marker(target, kind)
                else " (it is not a synthetic set of this kind: choose another {out})")
        raise InputError("{final}: exists and is not empty" + hint + "; nothing was changed",
                         final=final, overwrite=Setting("overwrite", "overwrite=True"),
                         out=Setting("out", "folder"))
    check_replaceable(target, kind)
    clean_stale(target.parent, f".{target.name}.partial-")  # leftovers of a killed overwrite
    stage = target.parent / f".{target.name}.partial-{tag()}"
    stage.mkdir()
    try:
        yield stage
        write_marker(stage, kind, settings)
        check_replaceable(target, kind)  # again: nothing of the user's may have arrived since
        old = target.parent / f".{target.name}.partial-{tag()}"
        old.mkdir()
        os.replace(target, old / target.name)
        try:
            os.replace(stage, target)
        except OSError:
            os.replace(old / target.name, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_marker(folder: Path, kind: str, settings: dict) -> None:
    files = {p.relative_to(folder).as_posix(): _sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file()}
    info = {"written_by": "pointgcn data synth", "version": __version__, "kind": kind,
            **settings, "files": files}
    (folder / MARKER).write_text(json.dumps(info, indent=1) + "\n", "ascii", newline="\n")


def _marker(folder: Path, kind: str) -> dict | None:
    """The folder's marker if it is a valid one for `kind`, else None."""
    try:
        info = json.loads((folder / MARKER).read_text("ascii"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(info, dict) and info.get("kind") == kind
          and isinstance(info.get("files"), dict))
    return info if ok else None


def check_replaceable(folder: Path, kind: str) -> None:
    """InputError unless `folder` holds only what an earlier synth run of `kind` wrote: its
    marker, files listed there with unchanged contents (missing ones are fine) and the folders
    on the way to them. Symbolic links and anything else count as the user's."""
    info = _marker(folder, kind)
    if info is None:
        raise InputError(f"{folder}: not an earlier `data synth {kind}` output (no valid "
                         f"{MARKER}); not overwritten")
    files = info["files"]
    dirs = {parent.as_posix() for name in files for parent in PurePosixPath(name).parents}
    for here, subdirs, names in os.walk(folder):
        rel = Path(here).relative_to(folder)
        for name in subdirs + names:
            path, key = Path(here) / name, (rel / name).as_posix()
            if key == MARKER:
                continue
            ours = (not path.is_symlink()
                    and (key in dirs if path.is_dir() else
                         path.is_file() and files.get(key) == _sha256(path)))
            if not ours:
                raise InputError(f"{folder}: holds {key}, which `data synth` did not write (or "
                                 f"it was changed); not overwritten")
