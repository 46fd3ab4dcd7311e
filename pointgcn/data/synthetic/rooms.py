"""Scanner-like indoor rooms with the 13 S3DIS classes, written as the raw S3DIS tree.

`<out>/Stanford3dDataset_v1.2_Aligned_Version/Area_N/<roomType>_<i>/Annotations/<class>_<k>.txt`
plus `<room>/<room>.txt`, lines `x y z r g b` (xyz with 3 decimals as in the published files,
rgb integers 0–255, space separated). The room file is the byte concatenation of its annotation
files in sorted file-name order. Coordinates are area coordinates (rooms laid side by side).

A virtual scanner stands in each room: points are drawn densely on every surface, then kept with
a probability falling with distance and with grazing incidence, so density is uneven as in a real
scan (there is no occlusion). Colours get a lighting factor and per-point noise.
`style="shifted"` (STYLES) draws rooms as another scanner and another building would: three
times the sensor noise, half the points, a warm white balance, more offices and lounges and
extra chairs — data a model trained on the default rooms has not seen (docs/adaptation.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import S3DIS_CLASSES
from ...errors import InputError
from .common import check_count, child_rngs, rot_z, synth_folder
from .furniture import Thing, bookcase, chair, floor_clutter, sofa, table, table_clutter
from .room_shell import (Room, Z, add_beams, add_board, add_column, add_door, add_shell,
                         add_wall_clutter, add_window)

ROOT = "Stanford3dDataset_v1.2_Aligned_Version"
ROOM_TYPES = ("conferenceRoom", "office", "lounge", "storage", "hallway", "pantry")
AREA_ORDER = (1, 5, 2, 3, 4, 6)  # Area_5 (the test area) gets the second room
SIZES = {"conferenceRoom": ((5, 8), (4, 6.5)), "office": ((3, 6), (3, 5)),
         "lounge": ((4, 8), (4, 7)), "storage": ((3, 5), (3, 4.5)),
         "hallway": ((5, 8), (2.2, 3.0)), "pantry": ((3, 6), (3, 5))}
# per room type: (min, max) count of doors, windows, boards, wall clutter items
OPENINGS = {"conferenceRoom": ((1, 2), (1, 3), (1, 2), (0, 2)),
            "office": ((1, 1), (1, 2), (0, 1), (0, 3)),
            "lounge": ((1, 2), (1, 3), (0, 1), (1, 3)),
            "storage": ((1, 1), (0, 1), (0, 0), (0, 1)),
            "hallway": ((2, 4), (0, 1), (0, 1), (0, 2)),
            "pantry": ((1, 1), (1, 2), (0, 1), (0, 2))}
MIN_POINTS = 30  # smaller instances are dropped (no empty or near-empty annotation files)


@dataclass(frozen=True)
class Style:
    """How a scanner and building differ from the default generator's (module doc)."""
    noise: float = 1.0                                # × sensor noise
    density: float = 1.0                              # × points per room
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # × r, g, b (white balance)
    room_types: tuple[str, ...] = ROOM_TYPES          # the mix rooms are drawn from
    extra_chairs: int = 0                             # free-standing chairs added per room


STYLES = {"default": Style(),
          "shifted": Style(noise=3.0, density=0.5, tint=(1.12, 0.98, 0.78),
                           room_types=("office", "lounge", "office", "lounge", "storage",
                                       "conferenceRoom"), extra_chairs=2)}


def _n(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _footprint(half, center, rot) -> tuple[np.ndarray, np.ndarray]:
    ext = np.abs(rot[:2, :2]) @ np.asarray(half, float)
    return center[:2] - ext, center[:2] + ext


def _place(room: Room, thing: Thing, half, center, rot, check: bool = True) -> bool:
    lo, hi = _footprint(half, center, rot)
    if check and not room.footprint_free(lo, hi):
        return False
    room.things.append(thing.transformed(rot, np.array([center[0], center[1], 0.0])))
    room.footprints.append((lo, hi))
    return True


def _free_spot(room: Room, half, yaw=None, tries: int = 40):
    """A random free floor position (and yaw) for a footprint of half extents `half`."""
    rng, (L, W, _) = room.rng, room.size
    for _ in range(tries):
        a = yaw if yaw is not None else rng.integers(4) * np.pi / 2 + rng.normal(0, 0.08)
        rot = rot_z(a)
        c = np.array([rng.uniform(0.3, L - 0.3), rng.uniform(0.3, W - 0.3), 0.0])
        lo, hi = _footprint(half, c, rot)
        if room.footprint_free(lo, hi):
            return c, rot
    return None


def _put_free(room: Room, built) -> bool:
    thing, half = built[0], built[1]
    spot = _free_spot(room, half)
    return spot is not None and _place(room, thing, half, *spot, check=False)


def _put_on_wall(room: Room, built, layers=("low",)):
    """Stand furniture with its back (−y) against a random wall; returns (centre, rot) or None."""
    thing, (hx, hy) = built[0], built[1]
    for k in room.rng.permutation(4):
        wall = room.walls[k]
        t0 = wall.slot(room.rng, 2 * hx, layers, margin=0.05)
        if t0 is None:
            continue
        rot = np.column_stack([wall.along, wall.inward, Z])
        c = wall.point(t0 + hx, 0, hy + 0.02)
        if _place(room, thing, (hx, hy), c, rot):
            return c, rot
        for layer in layers:  # give the interval back
            wall.used[layer].remove((t0, t0 + 2 * hx))
    return None


def _chairs_around(room: Room, center, rot, half, count: int) -> None:
    """Chairs facing a table from its long sides, pushed in by varying amounts."""
    rng = room.rng
    hx, hy = half
    per_side = max(1, int(2 * hx / 0.65))
    slots = [(s, i) for s in (-1, 1) for i in range(per_side)]
    for k in rng.permutation(len(slots))[:count]:
        side, i = slots[k]
        x = -hx + (i + 0.5) * 2 * hx / per_side
        local = np.array([x, side * (hy + rng.uniform(0.0, 0.35)), 0.0])
        yaw = np.arctan2(rot[1, 0], rot[0, 0]) + (np.pi if side > 0 else 0.0) + rng.normal(0, 0.2)
        thing, chalf = chair(rng)
        _place(room, thing, chalf, center + rot @ local, rot_z(yaw), check=False)


def _table_items(room: Room, tops, count: int) -> None:
    """Clutter standing on table tops (monitors, papers, cups, boxes)."""
    rng = room.rng
    for _ in range(count if tops else 0):
        center, rot, (hx, hy), z = tops[rng.integers(len(tops))]
        thing, (ix, iy) = table_clutter(rng, z)
        if ix > hx or iy > hy:
            continue
        local = np.array([rng.uniform(-hx + ix, hx - ix), rng.uniform(-hy + iy, hy - iy), 0.0])
        item_rot = rot @ rot_z(rng.normal(0, 0.3))
        room.things.append(thing.transformed(item_rot, center + rot @ local))


def _furnish(room: Room) -> None:
    rng, t = room.rng, room.rtype
    tops = []
    if t in ("conferenceRoom", "pantry"):
        L, W, _ = room.size
        kinds = ("conference", "dining", "dining") if t == "conferenceRoom" else ("dining",) * 2
        for kind in kinds:  # a big table first, smaller ones if it does not fit
            thing, half, h = table(rng, kind)
            c = np.array([L / 2, W / 2, 0]) + np.array([*rng.uniform(-0.3, 0.3, 2), 0])
            rot = rot_z((0.0 if L >= W else np.pi / 2) + rng.normal(0, 0.05))
            if _place(room, thing, half, c, rot):
                tops.append((c, rot, half, h))
                n_chairs = (4, 10) if t == "conferenceRoom" else (2, 4)
                _chairs_around(room, c, rot, half, _n(rng, n_chairs))
                break
    if t == "office":
        for _ in range(_n(rng, (1, 3))):
            built = table(rng, "desk")
            spot = _put_on_wall(room, built)
            if spot is not None:
                c, rot = spot
                tops.append((c, rot, built[1], built[2]))
                thing, chalf = chair(rng)
                front = c + rot @ np.array([rng.uniform(-0.3, 0.3), built[1][1] + 0.25, 0])
                yaw = np.arctan2(rot[1, 0], rot[0, 0]) + np.pi + rng.normal(0, 0.4)
                _place(room, thing, chalf, front, rot_z(yaw), check=False)
    if t == "lounge":
        for _ in range(_n(rng, (1, 3))):
            built = sofa(rng)
            if _put_on_wall(room, built) is None:
                _put_free(room, built)
        for _ in range(_n(rng, (1, 2))):
            thing, half, h = table(rng, "coffee")
            spot = _free_spot(room, half)
            if spot is not None and _place(room, thing, half, *spot, check=False):
                tops.append((*spot, half, h))
    n_books = {"office": (0, 2), "storage": (2, 4), "hallway": (0, 1), "conferenceRoom": (0, 1)}
    for _ in range(_n(rng, n_books.get(t, (0, 0)))):
        _put_on_wall(room, bookcase(rng), ("low", "high"))
    extra_chairs = {"lounge": (0, 3), "storage": (0, 1), "hallway": (0, 1), "office": (0, 1)}
    for _ in range(_n(rng, extra_chairs.get(t, (0, 0)))):
        _put_free(room, chair(rng))
    if t == "storage" and rng.random() < 0.5:
        _put_free(room, table(rng, "desk"))
    n_floor = {"storage": (3, 8), "office": (1, 4), "lounge": (1, 3), "pantry": (1, 3),
               "conferenceRoom": (0, 2), "hallway": (0, 2)}[t]
    for _ in range(_n(rng, n_floor)):
        built = floor_clutter(rng)
        if rng.random() < 0.5 and _put_on_wall(room, built) is not None:
            continue
        _put_free(room, built)
    _table_items(room, tops, _n(rng, (1, 6)))


def build_room(rng: np.random.Generator, rtype: str, beams: bool, columns: bool,
               extra_chairs: int = 0) -> Room:
    """Lay out one room of `rtype` (structure, openings, furniture) in its own frame."""
    (l0, l1), (w0, w1) = SIZES[rtype]
    size = np.array([rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(2.7, 3.4)])
    if rtype != "hallway" and rng.random() < 0.5:
        size[:2] = size[1::-1]
    room = Room(rng, rtype, size)
    add_shell(room)
    doors, windows, boards, wall_items = OPENINGS[rtype]
    for _ in range(_n(rng, doors)):
        add_door(room)
    if not any(t.cls == "door" for t in room.things):
        for _ in range(20):
            if add_door(room):
                break
    for _ in range(_n(rng, (1, 2)) if columns else 0):
        add_column(room)
    for _ in range(_n(rng, windows)):
        add_window(room)
    for _ in range(_n(rng, boards)):
        add_board(room)
    if beams:
        add_beams(room)
    _furnish(room)
    for _ in range(extra_chairs):
        _put_free(room, chair(rng))
    for _ in range(_n(rng, wall_items)):
        add_wall_clutter(room)
    return room


def scan(room: Room, target: int, style: Style = STYLES["default"]
         ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Sample the room as a scanner would see it: [(class, xyz float64, rgb uint8)] per instance."""
    rng, size = room.rng, room.size
    scanner = np.array([*(size[:2] * rng.uniform(0.25, 0.75, 2)), rng.uniform(1.3, 1.8)])
    falloff, sigma = rng.uniform(1.5, 3.0), rng.uniform(0.002, 0.004) * style.noise
    light = np.array([*rng.uniform(-0.4, 0.4, 2), 1.0])
    light /= np.linalg.norm(light)
    pieces = [(i, p) for i, t in enumerate(room.things) for p in t.pieces]
    density = 2.5 * target / sum(p.prim.area for _, p in pieces)
    pts, nrm, owner, base, noise = [], [], [], [], []
    for i, piece in pieces:
        n = int(rng.poisson(piece.prim.area * density))
        if n == 0:
            continue
        p, q = piece.prim.sample(rng, n)
        pts.append(p), nrm.append(q), owner.append(np.full(n, i))
        base.append(np.broadcast_to(piece.rgb, (n, 3))), noise.append(np.full(n, piece.noise))
    pts, nrm, owner = np.concatenate(pts), np.concatenate(nrm), np.concatenate(owner)
    base, noise = np.concatenate(base), np.concatenate(noise)
    pts = pts + nrm * rng.normal(0, sigma, (len(pts), 1)) + rng.normal(0, sigma / 2, pts.shape)
    keep = np.all((pts > -0.08) & (pts < size + 0.08), axis=1)
    shell = np.array([t.shell for t in room.things])[owner]
    for lo, hi in room.occluders:
        keep &= ~(shell & np.all((pts > lo) & (pts < hi), axis=1))
    to_scanner = scanner - pts
    dist = np.linalg.norm(to_scanner, axis=1)
    cos = np.abs(np.einsum("ij,ij->i", nrm, to_scanner)) / np.maximum(dist, 1e-6)
    weight = (0.2 + 0.8 * cos) / (1 + (dist / falloff) ** 2) * keep
    keep &= rng.random(len(pts)) < np.minimum(1.0, weight * target / weight.sum())
    shade = (0.85 + 0.15 * (nrm @ light)) * (1.05 - 0.12 * np.minimum(dist / 6, 1))
    rgb = (base * shade[:, None] + rng.normal(0, 1, base.shape) * noise[:, None]) * style.tint
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    out = []
    for i, thing in enumerate(room.things):
        sel = keep & (owner == i)
        if sel.sum() >= MIN_POINTS:
            out.append((thing.cls, pts[sel], rgb[sel]))
    return out


def format_points(xyz: np.ndarray, rgb: np.ndarray) -> str:
    """S3DIS text lines (`%.3f %.3f %.3f %d %d %d`), formatted by one % on a flat tuple
    (its cost per row: docs/performance.md)."""
    flat = np.empty((len(xyz), 6), dtype=object)
    flat[:, :3] = xyz.tolist()
    flat[:, 3:] = rgb.astype(int).tolist()
    return ("%.3f %.3f %.3f %d %d %d\n" * len(xyz)) % tuple(flat.ravel())


def _plan(n_rooms: int, seed: int, areas: int, room_types=ROOM_TYPES):
    """Room types, areas and names: types cycle so each 6 rooms hold every type; Area_5 second."""
    rng = child_rngs(seed, 1)[0]
    types: list[str] = []
    while len(types) < n_rooms:
        types += [str(t) for t in rng.permutation(room_types)]
    order = [a for a in AREA_ORDER if a <= areas]
    beams, columns = rng.random(n_rooms) < 0.45, rng.random(n_rooms) < 0.45
    if n_rooms >= 2:
        beams[rng.integers(n_rooms)] |= not beams.any()
        columns[rng.integers(n_rooms)] |= not columns.any()
    counts: dict[tuple[int, str], int] = {}
    plan = []
    for k in range(n_rooms):
        area, rtype = order[k % len(order)], types[k]
        counts[area, rtype] = counts.get((area, rtype), 0) + 1
        name = f"{rtype}_{counts[area, rtype]}"
        plan.append((area, name, rtype, bool(beams[k]), bool(columns[k])))
    return plan


def write_rooms(out_dir: str | Path, n_rooms: int = 12, seed: int = 0, areas: int = 6,
                overwrite: bool = False, style: str = "default") -> Path:
    """Write `n_rooms` synthetic rooms as the raw S3DIS tree; returns its `Stanford3d…` dir
    (new or empty; `overwrite` replaces an earlier synthetic one only: `synth_folder`).

    Rooms go round-robin over Area_1…Area_`areas` (Area_5 first gets the second room), so the
    Area-5 test protocol always has a room when n_rooms ≥ 2 and areas ≥ 5. `style` names
    a STYLES entry (module doc).
    """
    if style not in STYLES:
        raise InputError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    look = STYLES[style]
    n_rooms, seed = check_count("n_rooms", n_rooms), check_count("seed", seed, 0)
    areas = check_count("areas", areas)
    if areas > 6:
        raise InputError(f"areas must be between 1 and 6 (S3DIS has Area_1…Area_6), got {areas}")
    plan = _plan(n_rooms, seed, areas, look.room_types)
    rngs = child_rngs(seed + 1, n_rooms)
    area_rng = child_rngs(seed + 2, 6)
    origin = {a: np.array([0.0, r.uniform(-15, 15), r.uniform(0, 1.5)])
              for a, r in zip(range(1, 7), area_rng)}
    final = Path(out_dir) / ROOT
    named = {} if style == "default" else {"style": style}  # default sets stay byte-identical
    with synth_folder(final, "rooms", overwrite, seed=seed, n_rooms=n_rooms, areas=areas,
                      **named) as tmp:
        for (area, name, rtype, beams, columns), rng in zip(plan, rngs):
            room = build_room(rng, rtype, beams, columns, look.extra_chairs)
            L, W, _ = room.size
            target = int(30000 + 50000 * np.clip((L * W - 9) / 40, 0, 1) * rng.uniform(0.8, 1.0))
            instances = scan(room, int(target * look.density), look)
            shift = origin[area] + np.array([rng.uniform(0.2, 1.0), rng.uniform(0, 2), 0])
            origin[area][0] += L + 0.5
            room_dir = tmp / f"Area_{area}" / name
            (room_dir / "Annotations").mkdir(parents=True)
            order = sorted(range(len(instances)),
                           key=lambda i: S3DIS_CLASSES.index(instances[i][0]))
            seen: dict[str, int] = {}
            files = {}
            for i in order:
                cls, xyz, rgb = instances[i]
                seen[cls] = seen.get(cls, 0) + 1
                files[f"{cls}_{seen[cls]}.txt"] = format_points(xyz + shift, rgb)
            for fname, text in files.items():
                (room_dir / "Annotations" / fname).write_text(text, "ascii", newline="\n")
            room_text = "".join(files[f] for f in sorted(files))
            (room_dir / f"{name}.txt").write_text(room_text, "ascii", newline="\n")
    return final
