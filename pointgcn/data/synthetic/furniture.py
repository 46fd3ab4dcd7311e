"""Room furniture and clutter as coloured primitives, built in a local frame.

Local frame of every piece of furniture: standing on z = 0, centred at x = y = 0, its back at
−y and its front (where a person sits or reaches) at +y. The room places it with a yaw and a
shift. Proportions overlap on purpose (a coffee table is as low as a sofa seat, an armchair is as
narrow as a chair, a painted door can have the wall's colour) so that neither size nor colour
alone names the class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import Primitive, box, cylinder_z, Cylinder, Sphere

WOOD = ((140, 100, 60), (170, 130, 85), (110, 75, 45), (190, 160, 120), (95, 65, 40))
LAMINATE = ((215, 215, 210), (180, 180, 178), (120, 120, 125), (200, 190, 170))
METAL = ((60, 60, 65), (150, 150, 155), (190, 190, 195), (40, 40, 42))
FABRIC = ((40, 40, 45), (70, 80, 120), (120, 40, 40), (60, 90, 60), (150, 140, 120),
          (90, 90, 95), (30, 50, 90))
WALL_PAINT = ((200, 195, 185), (185, 185, 180), (210, 200, 170), (170, 175, 180),
              (190, 180, 160))
CEILING = ((215, 215, 212), (200, 200, 195), (225, 220, 210))
FLOOR = ((95, 95, 100), (70, 75, 95), (120, 100, 80), (140, 135, 125), (105, 85, 70))
VIVID = ((200, 40, 40), (40, 120, 200), (230, 200, 40), (40, 160, 80), (220, 120, 30),
         (120, 60, 160), (240, 240, 240), (30, 30, 30), (160, 110, 70))


@dataclass
class Piece:
    """One primitive of an annotated object with its base colour (0–255) and colour noise σ."""

    prim: Primitive
    rgb: np.ndarray
    noise: float = 8.0


@dataclass
class Thing:
    """One annotated instance: an S3DIS class name and its coloured pieces.

    `shell` marks walls/floor/ceiling, whose points are cut where an opening or a solid
    (door, window, board, beam, column, wall clutter) occupies them.
    """

    cls: str
    pieces: list[Piece] = field(default_factory=list)
    shell: bool = False

    def add(self, prims, rgb, noise: float = 8.0) -> "Thing":
        prims = prims if isinstance(prims, list) else [prims]
        self.pieces += [Piece(p, np.asarray(rgb, float), noise) for p in prims]
        return self

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> "Thing":
        return Thing(self.cls, [Piece(p.prim.transformed(rot, shift), p.rgb, p.noise)
                                for p in self.pieces], self.shell)


def color(rng: np.random.Generator, palette, jitter: float = 12.0) -> np.ndarray:
    """A palette entry with a per-instance shift, so no two objects share an exact colour."""
    base = np.asarray(palette[rng.integers(len(palette))], float)
    return np.clip(base + rng.normal(0, jitter, 3), 0, 255)


def _legs(rng, hx, hy, z_top, inset, thick, rgb, round_legs) -> list[Piece]:
    pieces = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (hx - inset), sy * (hy - inset)
            if round_legs:
                prim = [cylinder_z(x, y, 0.0, z_top, thick / 2, caps=(False, False))]
            else:
                prim = box((x - thick / 2, y - thick / 2, 0), (x + thick / 2, y + thick / 2, z_top),
                           ("-x", "+x", "-y", "+y"))
            pieces += [Piece(p, rgb) for p in prim]
    return pieces


def table(rng: np.random.Generator, kind: str) -> tuple[Thing, tuple[float, float], float]:
    """A table of `kind` (desk, conference, coffee, dining); returns it, its half extents, top z."""
    sizes = {"desk": ((1.2, 1.8), (0.6, 0.8), (0.70, 0.78)),
             "conference": ((1.8, 3.2), (0.9, 1.4), (0.72, 0.78)),
             "coffee": ((0.6, 1.2), (0.45, 0.7), (0.38, 0.50)),
             "dining": ((0.8, 1.4), (0.7, 0.9), (0.72, 0.78))}[kind]
    (lx0, lx1), (ly0, ly1), (h0, h1) = sizes
    hx, hy, h = rng.uniform(lx0, lx1) / 2, rng.uniform(ly0, ly1) / 2, rng.uniform(h0, h1)
    t = rng.uniform(0.025, 0.06)
    top_rgb = color(rng, WOOD if rng.random() < 0.6 else LAMINATE)
    leg_rgb = top_rgb if rng.random() < 0.5 else color(rng, METAL)
    thing = Thing("table").add(box((-hx, -hy, h - t), (hx, hy, h)), top_rgb, 7)
    base = rng.choice(["legs", "panels", "pedestal"], p=[0.6, 0.25, 0.15])
    if kind == "conference" and base == "pedestal":
        base = "legs"
    if base == "legs":
        thing.pieces += _legs(rng, hx, hy, h - t, rng.uniform(0.03, 0.12), rng.uniform(0.04, 0.08),
                              leg_rgb, rng.random() < 0.3)
    elif base == "panels":
        pt = rng.uniform(0.02, 0.04)
        for sx in (-1, 1):
            x = sx * (hx - 0.05)
            thing.add(box((x - pt, -hy + 0.05, 0), (x + pt, hy - 0.05, h - t),
                          ("-x", "+x", "-y", "+y")), leg_rgb)
        if kind == "desk":  # modesty panel at the back
            thing.add(box((-hx + 0.05, -hy + 0.03, 0.3), (hx - 0.05, -hy + 0.05, h - t),
                          ("-y", "+y")), leg_rgb)
    else:
        r = rng.uniform(0.04, 0.08)
        thing.add(cylinder_z(0, 0, 0.03, h - t, r, caps=(False, False)), leg_rgb)
        thing.add(cylinder_z(0, 0, 0.0, 0.03, min(hx, hy) * 0.7), leg_rgb)
    return thing, (hx, hy), h


def chair(rng: np.random.Generator) -> tuple[Thing, tuple[float, float]]:
    """Office or plain chair: seat, back, legs or star base, optional arms."""
    w, d = rng.uniform(0.40, 0.55) / 2, rng.uniform(0.40, 0.52) / 2
    hs, hb = rng.uniform(0.40, 0.52), rng.uniform(0.30, 0.60)
    fab, frame = color(rng, FABRIC), color(rng, METAL if rng.random() < 0.7 else WOOD)
    st = rng.uniform(0.04, 0.09)
    thing = Thing("chair").add(box((-w, -d, hs - st), (w, d, hs)), fab, 9)
    bt = rng.uniform(0.03, 0.08)
    tilt = rng.uniform(0.0, 0.12)
    thing.add(box((-w, -d - tilt, hs + 0.05), (w, -d - tilt + bt, hs + 0.05 + hb)), fab, 9)
    if rng.random() < 0.55:  # office chair: pole and five spokes
        thing.add(cylinder_z(0, 0, 0.08, hs - st, 0.025, caps=(False, False)), frame)
        for k in range(5):
            a = 2 * np.pi * k / 5 + rng.uniform(0, 0.3)
            end = np.array([np.cos(a), np.sin(a), 0.0]) * rng.uniform(0.26, 0.32)
            thing.add(Cylinder(np.array([0, 0, 0.06]), end, 0.018, (False, True)), frame)
    else:
        thing.pieces += _legs(rng, w, d, hs - st, 0.03, rng.uniform(0.025, 0.045), frame,
                              rng.random() < 0.4)
    if rng.random() < 0.4:
        for sx in (-1, 1):
            x = sx * (w + 0.02)
            thing.add(box((x - 0.025, -d, hs + 0.18), (x + 0.025, d * 0.8, hs + 0.23)), frame)
    return thing, (w + 0.05, d + tilt + 0.05)


def sofa(rng: np.random.Generator) -> tuple[Thing, tuple[float, float]]:
    """Sofa or armchair: base, seat cushion, back and arms (armchairs are chair-sized)."""
    width = rng.uniform(0.65, 0.95) if rng.random() < 0.3 else rng.uniform(1.4, 2.4)
    hx, hy = width / 2, rng.uniform(0.7, 0.95) / 2
    hs, hb = rng.uniform(0.38, 0.46), rng.uniform(0.70, 0.90)
    fab = color(rng, FABRIC)
    arm_w, back_d = rng.uniform(0.08, 0.22), rng.uniform(0.15, 0.25)
    thing = Thing("sofa").add(box((-hx, -hy, 0.08), (hx, hy, hs - 0.12)), fab * 0.9, 10)
    thing.add(box((-hx + arm_w, -hy + back_d, hs - 0.12), (hx - arm_w, hy, hs)), fab, 10)
    thing.add(box((-hx, -hy, hs - 0.12), (hx, -hy + back_d, hb)), fab, 10)
    arm_h = hs + rng.uniform(0.12, 0.25)
    for sx in (-1, 1):
        x0, x1 = (-hx, -hx + arm_w) if sx < 0 else (hx - arm_w, hx)
        thing.add(box((x0, -hy + back_d, hs - 0.12), (x1, hy, arm_h)), fab, 10)
    thing.pieces += _legs(rng, hx, hy, 0.08, 0.05, 0.04, color(rng, WOOD), True)
    return thing, (hx, hy)


def bookcase(rng: np.random.Generator) -> tuple[Thing, tuple[float, float]]:
    """Open shelf unit (back at −y) with rows of books standing on the shelves."""
    hx, hy = rng.uniform(0.8, 2.0) / 2, rng.uniform(0.28, 0.40) / 2
    h = rng.uniform(1.0, 2.2)
    frame = color(rng, WOOD if rng.random() < 0.6 else LAMINATE)
    t = 0.02
    thing = Thing("bookcase")
    for x in (-hx, hx - t):
        thing.add(box((x, -hy, 0), (x + t, hy, h)), frame, 7)
    thing.add(box((-hx, -hy, 0), (hx, -hy + t, h), ("+y",)), frame, 7)
    n_shelf = max(2, int(h / rng.uniform(0.3, 0.42)))
    for z in np.linspace(0.05, h - t, n_shelf + 1):
        thing.add(box((-hx + t, -hy, z), (hx - t, hy, z + t), ("+z", "-z", "+y")), frame, 7)
    for z in np.linspace(0.05, h - t, n_shelf + 1)[:-1]:
        x = -hx + t + rng.uniform(0, 0.15)
        gap = (h - 0.05) / n_shelf
        while x < hx - 0.1 and rng.random() < 0.93:
            bw = rng.uniform(0.02, 0.06) * rng.integers(1, 5)
            bh = gap * rng.uniform(0.55, 0.85)
            bd = 2 * hy * rng.uniform(0.6, 0.9)
            x1 = min(x + bw, hx - t)
            thing.add(box((x, -hy + t, z + t), (x1, -hy + t + bd, z + t + bh),
                          ("-x", "+x", "+y", "+z")), color(rng, VIVID, 25), 14)
            x = x1 + rng.uniform(0, 0.02)
            if rng.random() < 0.05:
                x += rng.uniform(0.1, 0.3)
    return thing, (hx, hy)


def floor_clutter(rng: np.random.Generator) -> tuple[Thing, tuple[float, float]]:
    """A box, bin, plant or cabinet standing on the floor (back at −y)."""
    kind = rng.choice(["box", "bin", "plant", "cabinet"])
    thing = Thing("clutter")
    if kind == "box":
        hx, hy, h = rng.uniform(0.15, 0.4), rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.7)
        thing.add(box((-hx, -hy, 0), (hx, hy, h), ("-x", "+x", "-y", "+y", "+z")),
                  color(rng, ((170, 130, 90), (200, 200, 195), (60, 60, 60))), 10)
    elif kind == "bin":
        hx = hy = r = rng.uniform(0.12, 0.22)
        thing.add(cylinder_z(0, 0, 0, rng.uniform(0.3, 0.6), r, caps=(False, False)),
                  color(rng, VIVID), 10)
    elif kind == "plant":
        r = rng.uniform(0.12, 0.2)
        hx = hy = r * 2
        hp = rng.uniform(0.25, 0.45)
        thing.add(cylinder_z(0, 0, 0, hp, r), color(rng, ((150, 80, 50), (200, 200, 200))), 10)
        thing.add(Sphere(np.array([0, 0, hp + r * 1.5]), r * 2, rng.uniform(1.0, 2.0)),
                  color(rng, ((50, 110, 50), (80, 130, 60))), 22)
    else:  # filing cabinet / fridge: a tall box that is not a bookcase
        hx, hy, h = rng.uniform(0.2, 0.45), rng.uniform(0.22, 0.35), rng.uniform(0.7, 1.8)
        thing.add(box((-hx, -hy, 0), (hx, hy, h), ("-x", "+x", "-y", "+y", "+z")),
                  color(rng, METAL + LAMINATE), 6)
    return thing, (hx, hy)


def table_clutter(rng: np.random.Generator, z: float) -> tuple[Thing, tuple[float, float]]:
    """Monitor, paper stack, cup or small box standing on a surface at height z."""
    kind = rng.choice(["monitor", "papers", "cup", "box"], p=[0.35, 0.3, 0.15, 0.2])
    thing = Thing("clutter")
    if kind == "monitor":
        hx, hy = rng.uniform(0.2, 0.35), 0.1
        sh = rng.uniform(0.25, 0.4)
        dark = color(rng, ((30, 30, 32), (50, 50, 55)), 6)
        thing.add(box((-0.1, -0.08, z), (0.1, 0.08, z + 0.015)), dark, 5)
        thing.add(box((-0.02, -0.02, z), (0.02, 0.02, z + 0.12), ("-y", "+y")), dark, 5)
        thing.add(box((-hx, -0.03, z + 0.1), (hx, 0.0, z + 0.1 + sh)), dark, 5)
    elif kind == "papers":
        hx, hy = 0.15 * rng.uniform(0.8, 1.3), 0.11 * rng.uniform(0.8, 1.3)
        thing.add(box((-hx, -hy, z), (hx, hy, z + rng.uniform(0.005, 0.06)),
                      ("-x", "+x", "-y", "+y", "+z")), (235, 235, 230), 6)
    elif kind == "cup":
        hx = hy = r = rng.uniform(0.035, 0.05)
        thing.add(cylinder_z(0, 0, z, z + rng.uniform(0.08, 0.12), r), color(rng, VIVID), 10)
    else:
        hx, hy = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.15)
        thing.add(box((-hx, -hy, z), (hx, hy, z + rng.uniform(0.05, 0.25)),
                      ("-x", "+x", "-y", "+y", "+z")), color(rng, VIVID), 12)
    return thing, (hx, hy)
