"""Procedural CAD-like shapes for classification, written as the raw ModelNet40 OFF tree.

`<out>/ModelNet40/<class>/{train,test}/<class>_XXXX.off` (numbering runs through train then
test, as in ModelNet) and `<out>/ModelNet40/modelnet40_shape_names.txt` listing the classes in
order (alphabetical, like ModelNet40; names are ModelNet40 names). Every 8th file gets ModelNet's
glued first line `OFF<V> <F> 0` so readers must handle that quirk.

Meshes are trimesh primitives (box, cylinder, cone, icosphere, capsule, torus) composed per
class with random proportions, a random rotation about the up axis (z), a random scale and
offset, and small vertex noise. Classes overlap on purpose: chair / stool / bench / sofa share
seats, legs and backs; table / desk share tops and legs; cup / bottle are both cylinders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from trimesh import creation

from ...errors import InputError
from .common import check_count, child_rngs, rot_z, synth_folder

ROOT = "ModelNet40"
NAMES_FILE = "modelnet40_shape_names.txt"
SECTIONS = 20  # facets around cylinders and cones


def _box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return creation.box(extents=hi - lo, transform=trimesh.transformations.translation_matrix(
        (lo + hi) / 2))


def _rod(p0, p1, r) -> trimesh.Trimesh:
    """Cylinder of radius r from p0 to p1."""
    return creation.cylinder(radius=r, segment=np.array([p0, p1], float), sections=SECTIONS)


def _ball(c, r) -> trimesh.Trimesh:
    return creation.icosphere(subdivisions=1, radius=r).apply_translation(c)


def _legs(rng, hx, hy, z, inset, r, round_legs=None) -> list[trimesh.Trimesh]:
    round_legs = rng.random() < 0.4 if round_legs is None else round_legs
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (hx - inset), sy * (hy - inset)
            out.append(_rod((x, y, 0), (x, y, z), r) if round_legs
                       else _box((x - r, y - r, 0), (x + r, y + r, z)))
    return out


def _seat_back(rng, w, d, hs, hb, st=0.05) -> list[trimesh.Trimesh]:
    tilt = rng.uniform(0, 0.1)
    return [_box((-w, -d, hs - st), (w, d, hs)),
            _box((-w, -d - tilt, hs), (w, -d - tilt + rng.uniform(0.03, 0.08), hs + hb))]


def chair(rng):
    w, d, hs = rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.28), rng.uniform(0.4, 0.5)
    parts = _seat_back(rng, w, d, hs, rng.uniform(0.3, 0.6))
    if rng.random() < 0.35:
        parts += [_rod((0, 0, 0.06), (0, 0, hs - 0.05), 0.025)]
        parts += [_rod((0, 0, 0.05), (0.3 * np.cos(a), 0.3 * np.sin(a), 0.03), 0.02)
                  for a in np.linspace(0, 2 * np.pi, 6)[:5] + rng.uniform(0, 1)]
    else:
        parts += _legs(rng, w, d, hs - 0.05, 0.03, rng.uniform(0.015, 0.03))
    if rng.random() < 0.35:
        parts += [_box((sx * w - 0.025, -d, hs + 0.2), (sx * w + 0.025, d, hs + 0.25))
                  for sx in (-1, 1)]
    return parts


def stool(rng):
    hs = rng.uniform(0.45, 0.8)
    r = rng.uniform(0.15, 0.25)
    parts = [_rod((0, 0, hs - 0.05), (0, 0, hs), r)] if rng.random() < 0.6 else \
        [_box((-r, -r, hs - 0.05), (r, r, hs))]
    n = int(rng.integers(3, 5))
    for a in np.linspace(0, 2 * np.pi, n + 1)[:-1] + rng.uniform(0, 1):
        foot = 1.2 * r * np.array([np.cos(a), np.sin(a)])
        parts.append(_rod((*foot, 0), (*(0.6 * foot), hs - 0.05), rng.uniform(0.015, 0.03)))
    if rng.random() < 0.4:
        ring = creation.torus(major_radius=0.9 * r, minor_radius=0.012,
                              major_sections=SECTIONS, minor_sections=6)
        parts.append(ring.apply_translation((0, 0, hs * rng.uniform(0.3, 0.45))))
    if rng.random() < 0.15:  # a low back rest, as on some bar stools
        parts.append(_box((-r, -r - 0.03, hs), (r, -r, hs + rng.uniform(0.1, 0.2))))
    return parts


def bench(rng):
    w, d, hs = rng.uniform(0.45, 1.0), rng.uniform(0.15, 0.25), rng.uniform(0.4, 0.5)
    parts = [_box((-w, -d, hs - 0.05), (w, d, hs))]
    if rng.random() < 0.5:
        parts += _legs(rng, w, d, hs - 0.05, 0.05, rng.uniform(0.02, 0.04))
    else:
        parts += [_box((sx * (w - 0.1) - 0.03, -d, 0), (sx * (w - 0.1) + 0.03, d, hs - 0.05))
                  for sx in (-1, 1)]
    if rng.random() < 0.4:
        parts.append(_box((-w, -d - 0.04, hs + 0.1), (w, -d, hs + rng.uniform(0.3, 0.5))))
    return parts


def sofa(rng):
    w = rng.uniform(0.45, 0.55) if rng.random() < 0.3 else rng.uniform(0.7, 1.2)
    d, hs = rng.uniform(0.38, 0.48), rng.uniform(0.38, 0.46)
    arm, back = rng.uniform(0.08, 0.2), rng.uniform(0.12, 0.25)
    parts = [_box((-w, -d, 0.08), (w, d, hs)),
             _box((-w, -d, hs), (w, -d + back, rng.uniform(0.7, 0.9)))]
    if rng.random() < 0.85:
        top = hs + rng.uniform(0.1, 0.25)
        parts += [_box((-w, -d, 0.08), (-w + arm, d, top)), _box((w - arm, -d, 0.08), (w, d, top))]
    return parts + _legs(rng, w, d, 0.08, 0.05, 0.02, True)


def bed(rng):
    hl, hw, top = rng.uniform(0.95, 1.1), rng.uniform(0.45, 0.95), rng.uniform(0.45, 0.65)
    parts = [_box((-hw, -hl, 0.15), (hw, hl, top - 0.2)),
             _box((-hw + 0.02, -hl + 0.02, top - 0.2), (hw - 0.02, hl - 0.02, top))]
    if rng.random() < 0.9:
        parts.append(_box((-hw, -hl - 0.05, 0), (hw, -hl, top + rng.uniform(0.3, 0.6))))
    if rng.random() < 0.4:
        parts.append(_box((-hw, hl, 0), (hw, hl + 0.05, top + rng.uniform(0.0, 0.2))))
    if rng.random() < 0.6:  # pillows
        parts += [_box((x - 0.2, -hl + 0.05, top), (x + 0.2, -hl + 0.4, top + 0.1))
                  for x in ((-hw / 2, hw / 2) if hw > 0.6 else (0.0,))]
    return parts + _legs(rng, hw, hl, 0.15, 0.05, 0.03)


def table(rng):
    hx, hy = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.6)
    h = rng.uniform(0.4, 0.5) if rng.random() < 0.2 else rng.uniform(0.7, 0.78)
    t = rng.uniform(0.02, 0.06)
    parts = [_box((-hx, -hy, h - t), (hx, hy, h))]
    pick = rng.random()
    if pick < 0.6:
        parts += _legs(rng, hx, hy, h - t, rng.uniform(0.03, 0.12), rng.uniform(0.02, 0.04))
    elif pick < 0.8:
        parts += [_rod((0, 0, 0.03), (0, 0, h - t), rng.uniform(0.04, 0.08)),
                  _rod((0, 0, 0), (0, 0, 0.03), min(hx, hy) * 0.7)]
    else:
        parts += [_box((sx * (hx - 0.08) - 0.02, -hy + 0.05, 0), (sx * (hx - 0.08) + 0.02,
                                                                   hy - 0.05, h - t))
                  for sx in (-1, 1)]
    return parts


def desk(rng):
    hx, hy, h = rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.4), rng.uniform(0.7, 0.78)
    t = rng.uniform(0.02, 0.05)
    parts = [_box((-hx, -hy, h - t), (hx, hy, h))]
    if rng.random() < 0.7:  # drawer cabinet on one side
        cw = rng.uniform(0.3, 0.45)
        parts.append(_box((hx - cw, -hy + 0.02, 0), (hx - 0.01, hy - 0.02, h - t)))
        parts.append(_box((-hx + 0.01, -hy + 0.05, 0), (-hx + 0.05, hy - 0.05, h - t)))
    else:
        parts += [_box((sx * (hx - 0.05) - 0.02, -hy + 0.02, 0), (sx * (hx - 0.05) + 0.02,
                                                                   hy - 0.02, h - t))
                  for sx in (-1, 1)]
    if rng.random() < 0.6:  # modesty panel
        parts.append(_box((-hx + 0.05, -hy + 0.01, 0.3), (hx - 0.05, -hy + 0.03, h - t)))
    return parts


def monitor(rng):
    w = rng.uniform(0.2, 0.4)
    sh, neck = w * rng.uniform(1.0, 1.3), rng.uniform(0.05, 0.2)
    depth = rng.uniform(0.15, 0.35) if rng.random() < 0.2 else rng.uniform(0.02, 0.06)
    return [_box((-w, -depth, neck), (w, 0, neck + sh)),
            _box((-0.03, -depth / 2 - 0.03, 0), (0.03, -depth / 2 + 0.03, neck + 0.05)),
            _box((-0.12, -0.1 - depth / 2, 0), (0.12, 0.1 - depth / 2, 0.015))]


def lamp(rng):
    rb = rng.uniform(0.06, 0.2)
    parts = [_rod((0, 0, 0), (0, 0, rng.uniform(0.02, 0.05)), rb)]
    if rng.random() < 0.3:  # desk lamp with a bent arm
        p1 = np.array([0, 0, rng.uniform(0.25, 0.45)])
        p2 = p1 + np.array([rng.uniform(0.15, 0.35), 0, rng.uniform(-0.05, 0.15)])
        parts += [_rod((0, 0, 0), p1, 0.012), _rod(p1, p2, 0.012)]
        shade = creation.cone(radius=rng.uniform(0.06, 0.1), height=0.12, sections=SECTIONS)
        shade.apply_transform(trimesh.transformations.rotation_matrix(np.pi, (1, 0, 0)))
        parts.append(shade.apply_translation(p2 + (0, 0, 0.04)))
    else:
        h = rng.uniform(0.3, 1.6)
        rs = rng.uniform(0.1, 0.25)
        parts.append(_rod((0, 0, 0), (0, 0, h), rng.uniform(0.01, 0.025)))
        shade = creation.cone(radius=rs, height=rs * rng.uniform(1.5, 3.0), sections=SECTIONS)
        parts.append(shade.apply_translation((0, 0, h - rs * 0.6)))
        if rng.random() < 0.5:
            parts.append(_ball((0, 0, h - rs * 0.3), rs * 0.3))
    return parts


def bottle(rng):
    r, h = rng.uniform(0.03, 0.06), rng.uniform(0.12, 0.3)
    rn, hn = r * rng.uniform(0.3, 0.5), rng.uniform(0.03, 0.08)
    sh = rng.uniform(0.02, 0.06)
    shoulder = creation.cone(radius=r, height=sh * r / (r - rn), sections=SECTIONS)
    return [_rod((0, 0, 0), (0, 0, h), r), shoulder.apply_translation((0, 0, h)),
            _rod((0, 0, h), (0, 0, h + sh + hn), rn),
            _rod((0, 0, h + sh + hn), (0, 0, h + sh + hn + 0.015), rn * 1.15)]


def cup(rng):
    r, h = rng.uniform(0.035, 0.05), rng.uniform(0.07, 0.15)
    parts = [_rod((0, 0, 0), (0, 0, h), r)]
    if rng.random() < 0.7:
        handle = creation.torus(major_radius=h * 0.3, minor_radius=0.006, major_sections=SECTIONS,
                                minor_sections=6)
        handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
        parts.append(handle.apply_translation((r, 0, h / 2)))
    return parts


def airplane(rng):
    length = rng.uniform(8, 40)
    rf = length * rng.uniform(0.04, 0.07)
    body = creation.capsule(height=length - 2 * rf, radius=rf, count=[SECTIONS, SECTIONS])
    body.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0)))
    span, chord = length * rng.uniform(0.8, 1.2), length * rng.uniform(0.1, 0.2)
    x0 = rng.uniform(-0.1, 0.1) * length
    parts = [body, _box((x0 - chord / 2, -span / 2, -rf * 0.3), (x0 + chord / 2, span / 2, 0))]
    xt = -length / 2 + chord * 0.3
    parts.append(_box((xt - chord * 0.3, -span * 0.2, 0), (xt + chord * 0.3, span * 0.2, rf * 0.2)))
    parts.append(_box((xt - chord * 0.3, -rf * 0.1, 0), (xt + chord * 0.2, rf * 0.1,
                                                         rf * rng.uniform(1.5, 3))))
    if rng.random() < 0.6:
        for sy in (-1, 1):
            y = sy * span * rng.uniform(0.15, 0.3)
            parts.append(_rod((x0 - chord * 0.2, y, -rf * 0.6), (x0 + chord * 0.6, y, -rf * 0.6),
                              rf * 0.3))
    return parts


def car(rng):
    hl, hw, hb = rng.uniform(1.7, 2.5), rng.uniform(0.8, 0.95), rng.uniform(0.5, 0.8)
    rw = rng.uniform(0.28, 0.4)
    cab_l = hl * rng.uniform(0.4, 0.65)
    cx = rng.uniform(-0.3, 0.2) * hl
    z_body = rw * 0.6 + hb
    parts = [_box((-hl, -hw, rw * 0.6), (hl, hw, z_body)),
             _box((cx - cab_l, -hw * 0.9, z_body),
                  (cx + cab_l, hw * 0.9, z_body + rng.uniform(0.35, 0.6)))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * hl * 0.7, sy * hw
            parts.append(_rod((x, y - 0.12 * sy, rw), (x, y + 0.08 * sy, rw), rw))
    return parts


BUILDERS = {"airplane": airplane, "bed": bed, "bench": bench, "bottle": bottle, "car": car,
            "chair": chair, "cup": cup, "desk": desk, "lamp": lamp, "monitor": monitor,
            "sofa": sofa, "stool": stool, "table": table}
CLASSES = tuple(sorted(BUILDERS))


def make_shape(cls: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """One random mesh of class `cls`: composed, posed (yaw), scaled, offset and jittered."""
    mesh = trimesh.util.concatenate(BUILDERS[cls](rng))
    size = float(np.linalg.norm(mesh.extents))
    verts = mesh.vertices + rng.normal(0, 0.003 * size, mesh.vertices.shape)
    verts = verts @ rot_z(rng.uniform(0, 2 * np.pi)).T
    verts = verts * rng.uniform(0.5, 2.0) + rng.uniform(-0.3, 0.3, 3) * size
    return trimesh.Trimesh(verts, mesh.faces, process=False)


def off_text(mesh: trimesh.Trimesh, glued_header: bool = False) -> str:
    """ModelNet-style OFF: `OFF`, `V F 0`, vertices, `3 i j k` faces (or `OFFV F 0` glued)."""
    v, f = mesh.vertices, mesh.faces
    head = f"OFF{len(v)} {len(f)} 0\n" if glued_header else f"OFF\n{len(v)} {len(f)} 0\n"
    verts = ("%.6f %.6f %.6f\n" * len(v)) % tuple(v.ravel().tolist())
    faces = ("3 %d %d %d\n" * len(f)) % tuple(f.ravel().tolist())
    return head + verts + faces


def write_shapes(out_dir: str | Path, n_per_class: int = 20, seed: int = 0,
                 test_fraction: float = 0.25, overwrite: bool = False) -> Path:
    """Write the synthetic shape classes as the raw ModelNet40 tree; returns `<out>/ModelNet40`
    (new or empty; `overwrite` replaces an earlier synthetic one only: `synth_folder`)."""
    n, seed = check_count("n_per_class", n_per_class), check_count("seed", seed, 0)
    if not 0.0 <= float(test_fraction) < 1.0:
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if test_fraction > 0 and n < 2:
        raise InputError(f"n_per_class={n} cannot fill both train and test; use at least 2")
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1) if test_fraction > 0 else 0
    final = Path(out_dir) / ROOT
    counter = 0
    with synth_folder(final, "shapes", overwrite, seed=seed, n_per_class=n,
                      test_fraction=float(test_fraction)) as tmp:
        for cls, rng in zip(CLASSES, child_rngs(seed, len(CLASSES))):
            for i in range(n):
                split = "train" if i < n - n_test else "test"
                path = tmp / cls / split / f"{cls}_{i + 1:04d}.off"
                path.parent.mkdir(parents=True, exist_ok=True)
                text = off_text(make_shape(cls, rng), glued_header=counter % 8 == 5)
                path.write_text(text, "ascii", newline="\n")
                counter += 1
        (tmp / NAMES_FILE).write_text("".join(c + "\n" for c in CLASSES), "ascii", newline="\n")
    return final
