"""Default cameras: an oblique view from above for rooms (ceiling removed), a 3/4 view for objects.

A camera is a look-at (eye, centre, up) plus a vertical field of view; every backend is driven
from the same `Camera`, so the Open3D and matplotlib pictures frame the scene alike.
The eye distance is solved so every point projects inside the image (not from the bounding
sphere, which leaves flat rooms small in the frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.classes import S3DIS_CLASSES
from ..errors import InputError

VIEWS = ("auto", "room", "object")
ROOM_EXTENT = 3.0  # metres: a scene wider than this horizontally is treated as a room
# (elevation, azimuth) in degrees of the eye as seen from the scene centre, z up.
ROOM_ANGLES = (50.0, -60.0)
OBJECT_ANGLES = (25.0, -50.0)


@dataclass
class Camera:
    eye: np.ndarray
    center: np.ndarray
    up: np.ndarray
    fov_deg: float = 40.0  # vertical field of view

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, true up, forward) unit vectors; forward points from the eye into the scene."""
        forward = self.center - self.eye
        forward = forward / np.linalg.norm(forward)
        right = np.cross(forward, self.up)
        right = right / np.linalg.norm(right)
        return right, np.cross(right, forward), forward

    def elevation_azimuth(self) -> tuple[float, float]:
        """Angles of the eye around the centre (z up), as matplotlib's `view_init` wants them."""
        d = self.eye - self.center
        d = d / np.linalg.norm(d)
        elev = np.degrees(np.arcsin(np.clip(d[2], -1, 1)))
        return float(elev), float(np.degrees(np.arctan2(d[1], d[0])))

    def extrinsic(self) -> np.ndarray:
        """4×4 world→camera matrix in the OpenCV convention (x right, y down, z forward)."""
        right, up, forward = self.basis()
        rot = np.stack([right, -up, forward])
        ext = np.eye(4)
        ext[:3, :3] = rot
        ext[:3, 3] = -rot @ self.eye
        return ext

    def project(self, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u right, v down) and depth of points, for tests and fitting checks."""
        cam = (self.extrinsic()[:3, :3] @ (np.asarray(points, np.float64) - self.eye).T).T
        f = (height / 2) / np.tan(np.radians(self.fov_deg) / 2)
        depth = cam[:, 2]
        u = width / 2 + f * cam[:, 0] / depth
        v = height / 2 + f * cam[:, 1] / depth
        return np.stack([u, v], 1), depth


def is_room(points: np.ndarray) -> bool:
    """A scene wider than ROOM_EXTENT horizontally is a room; objects are usually unit-scaled."""
    if len(points) == 0:
        return False
    extent = points[:, :2].max(0) - points[:, :2].min(0)
    return bool(extent.max() > ROOM_EXTENT)


def resolve_view(view: str, points: np.ndarray, palette: str | None = None) -> str:
    if view not in VIEWS:
        raise InputError(f"unknown view {view!r} (choose from {', '.join(VIEWS)})")
    if view != "auto":
        return view
    return "room" if palette == "s3dis" or is_room(points) else "object"


def ceiling_mask(points: np.ndarray, labels: np.ndarray | None = None, s3dis: bool = False,
                 top_fraction: float = 0.10) -> np.ndarray:
    """Points to keep when looking into a room from above.

    With S3DIS labels, drop the points labelled ceiling; otherwise drop the top `top_fraction`
    of the z range (ceilings are the highest large surface in a scan).
    """
    if s3dis and labels is not None:
        return np.asarray(labels) != S3DIS_CLASSES.index("ceiling")
    z = points[:, 2]
    if z.size == 0:
        return np.ones(0, bool)
    cut = z.max() - top_fraction * (z.max() - z.min())
    return z <= cut


def fit_camera(points: np.ndarray, view: str, aspect: float, fov_deg: float = 40.0,
               margin: float = 1.06) -> Camera:
    """Camera looking at the bounding-box centre from the view's angles, as close as possible
    while every point stays inside an image of width/height = `aspect` (times `margin`)."""
    pts = np.asarray(points, np.float64)
    if len(pts) == 0:
        raise InputError("nothing to render: the cloud has no points")
    if len(pts) > 200_000:  # the fit only needs the shape; a fixed subsample keeps it fast
        pts = pts[np.random.default_rng(0).choice(len(pts), 200_000, replace=False)]
    lo, hi = pts.min(0), pts.max(0)
    center = (lo + hi) / 2
    elev, azim = np.radians(ROOM_ANGLES if view == "room" else OBJECT_ANGLES)
    direction = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    up = np.array([0.0, 0.0, 1.0])
    cam = Camera(center + direction, center, up, fov_deg)
    right, true_up, forward = cam.basis()
    rel = pts - center
    tan_v = np.tan(np.radians(fov_deg) / 2)
    tan_h = tan_v * aspect
    # A point at offset rel is inside the frustum of an eye at distance d when
    # |rel·right| <= tan_h (d + rel·forward), and likewise vertically.
    along = rel @ forward
    need = np.maximum(np.abs(rel @ right) * margin / tan_h,
                      np.abs(rel @ true_up) * margin / tan_v) - along
    dist = max(float(need.max()), 1e-3 + float(np.max(-along, initial=0.0)))
    if not np.any(hi > lo):  # a single point (no extent): frame a unit box around it
        dist = 0.5 / tan_v
    return Camera(center + direction * dist, center, up, fov_deg)


def normalized(points: np.ndarray) -> np.ndarray:
    """Centre on the bounding box and scale its diagonal to 1, in float64 before the float32 cast.

    A picture does not change under translation and uniform scale, but renderers do: Open3D
    clips at a fixed near plane of 0.1 (a 5 cm part would vanish) and float32 loses
    georeferenced coordinates (UTM eastings ~ 5e5 m) to rounding.
    """
    p = np.asarray(points, np.float64)
    if len(p) == 0:
        return p.astype(np.float32)
    lo, hi = p.min(0), p.max(0)
    diag = float(np.linalg.norm(hi - lo))
    return ((p - (lo + hi) / 2) / (diag if diag > 0 else 1.0)).astype(np.float32)


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Rotate +90° about x so a y-up cloud (e.g. PointNet's ModelNet h5) stands on z."""
    p = np.asarray(points)
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1).astype(p.dtype)
