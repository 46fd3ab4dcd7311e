"""The fixed structure of a synthetic room: floor, ceiling, walls and what is set into them.

Doors, windows, boards and wall clutter lie in (or within a few cm of) the wall plane, as in
S3DIS, so geometry barely separates them from the wall; colour, frames and layout do. The wall
is cut where they sit (an `occluder` box), beams and columns likewise remove the ceiling and wall
points they cover. Room frame: x ∈ [0, L], y ∈ [0, W], z ∈ [0, H], walls listed
counter-clockwise with inward normals.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import Cylinder, Quad, box
from .furniture import CEILING, FLOOR, METAL, VIVID, WALL_PAINT, WOOD, Thing, color

Z = np.array([0.0, 0.0, 1.0])


@dataclass
class Wall:
    """One wall: floor corner `start`, unit `along` direction, unit `inward` normal."""

    start: np.ndarray
    along: np.ndarray
    inward: np.ndarray
    length: float
    used: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"low": [], "high": []})

    def point(self, t: float, z: float, off: float = 0.0) -> np.ndarray:
        return self.start + t * self.along + z * Z + off * self.inward

    def rect(self, t0: float, width: float, z0: float, height: float, off: float) -> Quad:
        """A quad in the wall's plane shifted by `off` into the room, facing inward."""
        return Quad(self.point(t0, z0, off), height * Z, width * self.along)

    def slab(self, t0: float, width: float, z0: float, height: float, off0: float, off1: float
             ) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box spanning [t0, t0+width] × [z0, z0+height] × [off0, off1]."""
        corners = np.array([self.point(t, z, o) for t in (t0, t0 + width)
                            for z in (z0, z0 + height) for o in (off0, off1)])
        return corners.min(0), corners.max(0)

    def slot(self, rng: np.random.Generator, width: float, layers: tuple[str, ...],
             margin: float = 0.15, tries: int = 30) -> float | None:
        """Reserve a free interval of `width` on the given layers; its start, or None."""
        if width + 2 * margin > self.length:
            return None
        for _ in range(tries):
            t0 = rng.uniform(margin, self.length - width - margin)
            if all(t0 + width + margin <= a or t0 >= b + margin
                   for layer in layers for a, b in self.used[layer]):
                for layer in layers:
                    self.used[layer].append((t0, t0 + width))
                return t0
        return None


@dataclass
class Room:
    """Mutable state while a room is being built."""

    rng: np.random.Generator
    rtype: str
    size: np.ndarray  # (L, W, H)
    things: list[Thing] = field(default_factory=list)
    occluders: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    footprints: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    walls: list[Wall] = field(default_factory=list)
    wall_rgb: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ceiling_rgb: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def footprint_free(self, lo: np.ndarray, hi: np.ndarray, gap: float = 0.05) -> bool:
        L, W, _ = self.size
        if lo[0] < 0.02 or lo[1] < 0.02 or hi[0] > L - 0.02 or hi[1] > W - 0.02:
            return False
        return all(hi[0] + gap <= a[0] or lo[0] >= b[0] + gap or
                   hi[1] + gap <= a[1] or lo[1] >= b[1] + gap for a, b in self.footprints)


def add_shell(room: Room) -> None:
    """Floor, ceiling and the four walls (each wall its own `wall_k` instance)."""
    rng, (L, W, H) = room.rng, room.size
    room.wall_rgb = color(rng, WALL_PAINT, 8)
    room.ceiling_rgb = color(rng, CEILING, 6)
    room.things.append(Thing("floor", shell=True).add(
        Quad(np.zeros(3), np.array([L, 0, 0]), np.array([0, W, 0])), color(rng, FLOOR), 9))
    room.things.append(Thing("ceiling", shell=True).add(
        Quad(np.array([0, 0, H]), np.array([0, W, 0]), np.array([L, 0, 0])), room.ceiling_rgb, 6))
    corners = [(0, 0), (L, 0), (L, W), (0, W)]
    for k in range(4):
        a, b = np.array([*corners[k], 0.0]), np.array([*corners[(k + 1) % 4], 0.0])
        along = (b - a) / np.linalg.norm(b - a)
        wall = Wall(a, along, np.cross(Z, along), float(np.linalg.norm(b - a)))
        room.walls.append(wall)
        room.things.append(Thing("wall", shell=True).add(
            wall.rect(0, wall.length, 0, H, 0), room.wall_rgb, 7))


def _strips(wall: Wall, t0: float, w: float, z0: float, h: float, f: float, off: float
            ) -> list[Quad]:
    """Four frame strips of width `f` around the rectangle (left, right, bottom, top)."""
    return [wall.rect(t0 - f, f, z0 - f, h + 2 * f, off),
            wall.rect(t0 + w, f, z0 - f, h + 2 * f, off),
            wall.rect(t0, w, z0 - f, f, off), wall.rect(t0, w, z0 + h, f, off)]


def _flat(slab: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The x–y footprint of a 3-D box."""
    return slab[0][:2], slab[1][:2]


def _wall(room: Room, exclude: Wall | None = None) -> Wall:
    walls = [w for w in room.walls if w is not exclude]
    return walls[room.rng.integers(len(walls))]


def add_door(room: Room) -> bool:
    """A door leaf (closed, recessed up to 4 cm, or swung open into the room) with its frame."""
    rng, H = room.rng, room.size[2]
    wall = _wall(room)
    w, h, f = rng.uniform(0.8, 1.0), min(rng.uniform(2.0, 2.2), H - 0.25), rng.uniform(0.04, 0.08)
    t0 = wall.slot(rng, w + 2 * f, ("low", "high"), margin=0.1)
    if t0 is None:
        return False
    t0 += f
    pick = rng.random()
    leaf = (color(rng, WOOD) if pick < 0.5 else
            np.clip(room.wall_rgb * rng.uniform(0.93, 1.04), 0, 255) if pick < 0.75 else
            color(rng, METAL))
    frame = np.clip(leaf * rng.uniform(0.75, 0.95), 0, 255) if rng.random() < 0.6 else \
        color(rng, ((225, 225, 220),))
    door = Thing("door").add(_strips(wall, t0, w, 0.0 + f, h - f, f, 0.01)[:2]
                             + [wall.rect(t0 - f, w + 2 * f, h, f, 0.01)], frame, 6)
    if rng.random() < 0.3:  # open: leaf swung 35–90° into the room about its hinge
        a = rng.uniform(0.6, 1.57)
        direction = np.cos(a) * wall.along + np.sin(a) * wall.inward
        door.add(Quad(wall.point(t0, 0, 0.02), h * Z, w * direction), leaf, 8)
    else:
        off = -rng.uniform(0.0, 0.04)
        door.add(wall.rect(t0, w, 0, h, off), leaf, 8)
        knob = wall.point(t0 + w - 0.08, rng.uniform(0.95, 1.05), off)
        door.add(Cylinder(knob, 0.06 * wall.inward, 0.012, (False, True)), color(rng, METAL), 5)
    room.things.append(door)
    room.occluders.append(wall.slab(t0 - f, w + 2 * f, 0, h + f, -0.06, 0.06))
    room.footprints.append(_flat(wall.slab(t0 - f, w + 2 * f, 0, 0, 0.0, 1.0)))  # keep clear
    return True


def add_window(room: Room) -> bool:
    """Recessed glazing (bright, noisy) split into panes by frame bars, sometimes with a sill."""
    rng, H = room.rng, room.size[2]
    wall = _wall(room)
    w, z0 = rng.uniform(0.8, 2.5), rng.uniform(0.75, 1.1)
    h = rng.uniform(1.0, max(1.05, min(1.8, H - z0 - 0.25)))
    f = rng.uniform(0.04, 0.08)
    t0 = wall.slot(rng, w + 2 * f, ("high",))
    if t0 is None:
        return False
    t0 += f
    rec = rng.uniform(0.0, 0.04)
    frame = color(rng, ((230, 230, 228), (160, 160, 165), (80, 80, 85)), 6)
    glass = np.clip(np.array([195, 205, 220]) + rng.normal(0, 18, 3), 0, 255)
    win = Thing("window").add(_strips(wall, t0, w, z0, h, f, -rec), frame, 6)
    panes = max(1, int(round(w / rng.uniform(0.5, 1.0))))
    pw = w / panes
    for i in range(panes):
        win.add(wall.rect(t0 + i * pw + f / 4, pw - f / 2, z0, h, -rec - 0.01), glass, 26)
        if i:
            win.add(wall.rect(t0 + i * pw - f / 4, f / 2, z0, h, -rec), frame, 6)
    if rng.random() < 0.5:
        depth = rng.uniform(0.05, 0.15)
        lo, hi = wall.slab(t0 - f, w + 2 * f, z0 - f - 0.03, 0.03, -rec, depth)
        win.add(box(lo, hi, ("-x", "+x", "-y", "+y", "+z")), frame, 6)
    room.things.append(win)
    room.occluders.append(wall.slab(t0 - f, w + 2 * f, z0 - f - 0.03, h + 2 * f + 0.03,
                                    -0.06, 0.06))
    return True


def add_board(room: Room) -> bool:
    """White-, green- or blackboard 1–3 cm proud of the wall, with frame and marker tray."""
    rng = room.rng
    wall = _wall(room)
    w, h, z0 = rng.uniform(1.2, 3.0), rng.uniform(0.9, 1.3), rng.uniform(0.8, 1.0)
    t0 = wall.slot(rng, w + 0.06, ("high",))
    if t0 is None:
        return False
    t0 += 0.03
    pick = rng.random()
    surface = (np.clip(np.array([232, 232, 228]) + rng.normal(0, 6, 3), 0, 255) if pick < 0.6
               else color(rng, ((40, 70, 55), (35, 38, 40))))
    board = Thing("board").add(wall.rect(t0, w, z0, h, 0.015), surface, 7)
    board.add(_strips(wall, t0, w, z0, h, 0.03, 0.025), color(rng, METAL[1:3], 8), 6)
    lo, hi = wall.slab(t0, w, z0 - 0.06, 0.03, 0.0, 0.07)
    board.add(box(lo, hi, ("-x", "+x", "-y", "+y", "+z")), color(rng, METAL[1:3], 8), 6)
    room.things.append(board)
    room.occluders.append(wall.slab(t0 - 0.03, w + 0.06, z0 - 0.06, h + 0.09, -0.06, 0.06))
    return True


def add_wall_clutter(room: Room) -> bool:
    """A picture/poster (flat on the wall, like a small board) or a radiator box under it."""
    rng = room.rng
    wall = _wall(room)
    thing = Thing("clutter")
    if rng.random() < 0.65:
        w, h, z0 = rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8), rng.uniform(1.1, 1.6)
        t0 = wall.slot(rng, w, ("high",))
        if t0 is None:
            return False
        off = rng.uniform(0.008, 0.03)
        thing.add(wall.rect(t0, w, z0, h, off), color(rng, VIVID + WALL_PAINT, 30), 30)
        room.occluders.append(wall.slab(t0, w, z0, h, -0.06, 0.06))
    else:
        w, h, depth = rng.uniform(0.6, 1.5), rng.uniform(0.4, 0.7), rng.uniform(0.06, 0.12)
        t0 = wall.slot(rng, w, ("low",))
        if t0 is None:
            return False
        lo, hi = wall.slab(t0, w, 0.1, h, 0.0, depth)
        thing.add(box(lo, hi, ("-x", "+x", "-y", "+y", "+z")),
                  np.clip(room.wall_rgb * rng.uniform(0.95, 1.08), 0, 255), 9)
        room.occluders.append(wall.slab(t0, w, 0.1, h, -0.06, depth))
        room.footprints.append(_flat(wall.slab(t0, w, 0, 0, 0.0, depth + 0.1)))
    room.things.append(thing)
    return True


def add_beams(room: Room) -> None:
    """1–3 parallel beams under the ceiling, spanning wall to wall, coloured like the ceiling."""
    rng, (L, W, H) = room.rng, room.size
    axis = int(rng.integers(2))  # beams run along y (axis 0 positions in x) or along x
    span = (L, W)[axis]
    n = int(rng.integers(1, 4))
    rgb = np.clip(room.ceiling_rgb * rng.uniform(0.92, 1.04), 0, 255)
    for i in range(n):
        pos = span * (i + 1) / (n + 1) + rng.uniform(-0.2, 0.2)
        bw, bd = rng.uniform(0.2, 0.45), rng.uniform(0.25, 0.5)
        lo, hi = np.array([pos - bw / 2, 0, H - bd]), np.array([pos + bw / 2, W, H])
        faces = ("-z", "-x", "+x")
        if axis == 1:
            lo, hi = np.array([0, pos - bw / 2, H - bd]), np.array([L, pos + bw / 2, H])
            faces = ("-z", "-y", "+y")
        room.things.append(Thing("beam").add(box(lo, hi, faces), rgb, 6))
        room.occluders.append((lo - 0.01, hi + 0.01))


def add_column(room: Room) -> bool:
    """A floor-to-ceiling pillar half embedded in a wall (or free standing), wall coloured."""
    rng, (L, W, H) = room.rng, room.size
    cw, cd = rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.5)
    rgb = np.clip(room.wall_rgb * rng.uniform(0.9, 1.05), 0, 255)
    if rng.random() < 0.25 and min(L, W) > 4.5:
        c = np.array([rng.uniform(1.5, L - 1.5), rng.uniform(1.5, W - 1.5)])
        lo, hi = np.array([*(c - cw / 2), 0.0]), np.array([*(c + cw / 2), H])
    else:
        wall = _wall(room)
        t0 = wall.slot(rng, cw, ("low", "high"), margin=0.0)
        if t0 is None:
            return False
        lo, hi = wall.slab(t0, cw, 0, H, -0.3, cd)
    if not room.footprint_free(np.maximum(lo[:2], 0.05), np.minimum(hi[:2], room.size[:2] - 0.05),
                               gap=0.0):
        return False
    room.things.append(Thing("column").add(box(lo, hi, ("-x", "+x", "-y", "+y")), rgb, 7))
    room.occluders.append((lo - 0.01, hi + 0.01))
    room.footprints.append((np.maximum(lo[:2], 0.0), np.minimum(hi[:2], room.size[:2])))
    return True
