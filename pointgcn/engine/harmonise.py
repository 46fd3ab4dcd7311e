"""Preflight: check an input cloud against the model's conventions (conventions.py), fix what
can be fixed safely, refuse what cannot, and say what was done — never silently.

- Up axis: the input is turned so that its up axis becomes the model's (a proper rotation;
  the output keeps the original coordinates, only the model's view turns). `up="auto"` picks
  it: for objects by the model itself (the orientation among x/y/z up in which it is most
  confident, averaged over its votes, if it beats the model's own axis by 25%: a near tie
  keeps the file as it is); for scenes from the planes (by 10%) — the axis along which the
  normals of flat patches point most often (floor, ceiling, table tops and seats face up,
  while walls split between the two horizontal axes; it can fail for corridors narrower than
  they are high, where `--up-axis` decides).
- Units (scenes, whose models see metres): a unit is plausible when it makes the horizontal
  extent 0.5–2000 m and the point spacing at most 0.5 m. A room in centimetres spanning 5 m
  is plausible in millimetres too (0.5 m), one in millimetres in centimetres (50 m), so
  extent alone cannot decide: among the plausible metric units the one whose spacing is
  nearest the model's training spacing and whose thinnest extent is nearest a room's height
  (the sum of their log-distances) wins when the next misfits by 3× more; otherwise, or when
  none is plausible, an error naming `--units` lists the candidates. Inches and feet are
  tried only when no metric unit is plausible. Known limit: an object scanned in millimetres
  (a 0.9 m chair) looks like a room ten times larger in centimetres, and a thin object in
  centimetres like a sparse scene in metres; the preflight line says what was chosen and
  `--units` decides. Objects for classification are normalised to the unit sphere /
  diagonal, so units do not matter there.
- Colours: a model trained with colours refuses a cloud without them (with harmonising off it
  gets mid grey, as before, and a note).
- Spacing is reported, not changed: blocks are sampled to the training point count, which
  matches the training density whatever the scan's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError, Setting
from ..io.cloud import PointCloud
from ..data.sampling import typical_spacing
from ..models.conventions import AXES, Conventions

UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "in": 0.0254, "ft": 0.3048}
METRIC = ("m", "cm", "mm")
PLAUSIBLE_EXTENT_M = (0.5, 2000.0)
PLAUSIBLE_SPACING_M = 0.5
# what a scene "looks like" when units must be chosen among several plausible ones: point
# spacing (the model's recorded training spacing, else this; measured on the synthetic rooms:
# 0.025–0.027 m) and thickness (the thinnest of the three extents: a room's height, ~3 m)
TYPICAL_SPACING_M = 0.02
TYPICAL_HEIGHT_M = 3.0
UNITS_MARGIN = np.log(3)  # the runner-up must misfit by 3× more, else the units are asked for
# auto turns only when another axis scores this much above the model's own axis: objects by
# the model's confidence (a near tie keeps the file), scenes by the planes' share (a room's
# floor and ceiling beat one wall pair by 10% or more even in a 2.5 m corner crop)
TURN_MARGIN = {"object": 1.25, "scene": 1.1}


@dataclass
class Preflight:
    """What harmonising did: the cloud the model sees, and one line per check."""
    cloud: PointCloud
    lines: list[str] = field(default_factory=list)
    up_axis: str | None = None      # the input's up axis as used
    scale: float = 1.0              # input units → the model's units


def rotation_to(src: str, dst: str) -> np.ndarray:
    """A proper rotation (det +1) taking axis `src` onto axis `dst` (identity if equal)."""
    i, j = AXES.index(src), AXES.index(dst)
    if i == j:
        return np.eye(3)
    k = 3 - i - j  # the third axis stays; a quarter turn about it takes i to j
    r = np.zeros((3, 3))
    r[j, i], r[k, k] = 1.0, 1.0
    r[i, j] = -1.0
    if np.linalg.det(r) < 0:
        r[k, k] = -1.0
    return r


def turned(cloud: PointCloud, src: str, dst: str, scale: float = 1.0) -> PointCloud:
    """The cloud as a model with up axis `dst` sees it: rotated (and scaled) copies of points
    and normals; colours, labels and fields shared."""
    r = rotation_to(src, dst) * scale
    points = (cloud.points.astype(np.float64) @ r.T).astype(np.float32)
    normals = None if cloud.normals is None else (
        cloud.normals @ rotation_to(src, dst).T).astype(np.float32)
    return dataclasses.replace(cloud, points=points, normals=normals,
                               offset=np.zeros(3))


def floor_axis(points: np.ndarray, seed: int = 0) -> tuple[str, dict]:
    """The axis that the normals of the cloud's planar patches point along most often (module
    doc), with each axis's share. Normals: PCA of 12 neighbours within a random subset."""
    rng = np.random.default_rng(seed)
    xyz = np.asarray(points, dtype=np.float64)
    pool = xyz[rng.choice(len(xyz), min(len(xyz), 100_000), replace=False)]
    query = pool[:20_000]
    _, idx = cKDTree(pool).query(query, k=min(12, len(pool)))
    nb = pool[idx] - pool[idx].mean(axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    planar = values[:, 0] < 0.05 * values[:, 1]  # flat neighbourhoods only: not clutter
    normals = np.abs(vectors[planar, :, 0])
    aligned = normals > np.cos(np.radians(15))
    total = max(int(planar.sum()), 1)
    share = {axis: float(aligned[:, i].sum() / total) for i, axis in enumerate(AXES)}
    return max(share, key=share.get), share


def guess_units(points: np.ndarray, ref_spacing: float | None = None,
                spacing: float | None = None) -> tuple[str | None, float, float, list[str]]:
    """(units, horizontal extent, spacing, the units that were plausible) by the rule in the
    module doc: None when no unit is plausible or the evidence does not separate two (the
    plausible ones listed). `ref_spacing`: the model's training spacing in metres."""
    extent = float(np.max(points[:, :2].max(0) - points[:, :2].min(0)))
    thickness = float(np.min(points.max(0) - points.min(0)))
    spacing = typical_spacing(points) if spacing is None else spacing
    lo, hi = PLAUSIBLE_EXTENT_M
    plausible = [u for u, f in UNITS.items()
                 if lo <= extent * f <= hi and spacing * f <= PLAUSIBLE_SPACING_M]
    metric = [u for u in plausible if u in METRIC]
    if not metric:  # inches and feet only where no metric unit fits (they cannot be told apart)
        return (plausible[0] if plausible else None), extent, spacing, plausible
    ref = ref_spacing or TYPICAL_SPACING_M

    def misfit(u):  # log-distances from a typical scene
        f = UNITS[u]
        return (abs(np.log(max(spacing * f, 1e-12) / ref))
                + abs(np.log(max(thickness * f, 1e-12) / TYPICAL_HEIGHT_M)))

    ranked = sorted(metric, key=misfit)
    if len(ranked) > 1 and misfit(ranked[1]) - misfit(ranked[0]) < UNITS_MARGIN:
        return None, extent, spacing, ranked
    return ranked[0], extent, spacing, ranked


def harmonise(cloud: PointCloud, conv: Conventions, *, up: str | None = "auto",
              units: str = "auto", enabled: bool = True, confidence=None) -> Preflight:
    """Check and fix `cloud` for a model with conventions `conv` (module doc). `confidence`,
    for objects with `up="auto"`: a function cloud → mean top-class probability."""
    out = Preflight(cloud, up_axis=conv.up_axis)
    lines = out.lines
    if not enabled:
        if conv.needs_colors and cloud.colors is None:
            lines.append("colours: none in the input; the model's rgb channels get mid grey "
                         "(0.5)")
        return out
    if conv.needs_colors and cloud.colors is None:
        raise InputError("{where}: this model was trained with colours and the input has none "
                         "({off} runs it with mid grey)", where=cloud.source or "the input",
                         off=Setting("harmonise", "enabled=False"))
    scale = 1.0
    spacing = None  # measured once: turning keeps distances, scaling scales them
    if conv.units == "m":
        spacing = typical_spacing(cloud.points)
        scale, line = _units(cloud, units, conv.spacing, spacing)
        lines.append(line)
    if up is None or up == conv.up_axis:
        axis = conv.up_axis
        lines.append(f"up axis: {axis}, as trained" + (" (given)" if up else ""))
    elif up in AXES:
        axis = up
        lines.append(f"up axis: {axis} (given) → turned to the model's {conv.up_axis}")
    else:
        axis, line = _auto_up(cloud, conv, scale, confidence)
        lines.append(line)
    if axis != conv.up_axis or scale != 1.0:
        out.cloud = turned(cloud, axis, conv.up_axis, scale)
    out.up_axis, out.scale = axis, scale
    if conv.spacing and conv.units == "m":
        spacing *= scale
        lines.append(f"spacing: ~{spacing:.3g} m between points (training samples "
                     f"~{conv.spacing:.3g} m; blocks are resampled to the training count)")
    return out


def _units(cloud: PointCloud, units: str, ref_spacing: float | None,
           spacing: float) -> tuple[float, str]:
    if units != "auto":
        if units not in UNITS:
            raise InputError("{units} must be auto or one of {known}, got {value!r}",
                             units=Setting("units"), known=", ".join(UNITS), value=units)
        f = UNITS[units]
        return f, f"units: {units} (given)" + (f" → scaled by {f:g} to metres" if f != 1 else "")
    name, extent, spacing, plausible = guess_units(cloud.points, ref_spacing, spacing)
    if name is None:
        why = (f"{' or '.join(sorted(plausible, key=list(UNITS).index))} fit about equally"
               if plausible
               else "no unit makes it a plausible scene")
        raise InputError("{where}: cannot tell its units (extent {extent:.4g}, point spacing "
                         "{spacing:.3g}: {why}); give {units} {known}",
                         where=cloud.source or "the input", extent=extent, spacing=spacing,
                         why=why, units=Setting("units"), known="|".join(UNITS))
    f = UNITS[name]
    seen = f"extent {extent:.4g}, spacing {spacing:.3g}"
    if f == 1.0:
        return 1.0, f"units: metres ({seen}), as trained"
    other = [u for u in plausible if u != name]
    why = (f"fits a scene better than {', '.join(other)}" if other
           else "would be implausible in metres")
    return f, f"units: {name}? ({seen}; {why}) → scaled by {f:g}"


def _auto_up(cloud: PointCloud, conv: Conventions, scale: float, confidence):
    """The input's up axis, turned only on clear evidence: another axis must beat the model's
    own by TURN_MARGIN (a near tie keeps the file as it is — a correctly oriented shape the
    model is unsure of is not turned into a wrong one)."""
    if conv.units == "m" or confidence is None:  # scenes: the floor and ceiling
        _, score = floor_axis(cloud.points)
        how, margin = "flat patches facing", TURN_MARGIN["scene"]
    else:  # objects: the model's own confidence
        score = {a: float(confidence(turned(cloud, a, conv.up_axis))) for a in AXES}
        how, margin = "model confidence if up were", TURN_MARGIN["object"]
    best = max(score, key=score.get)
    axis = best if score[best] > score[conv.up_axis] * margin else conv.up_axis
    shown = ", ".join(f"{a} {score[a]:.2f}" for a in AXES)
    turn = "as trained" if axis == conv.up_axis else f"→ turned to the model's {conv.up_axis}"
    return axis, f"up axis: {axis} (auto; {how} {shown}) {turn}"
