"""Preflight: check an input cloud against the model's conventions (conventions.py), fix what
can be fixed safely, refuse what cannot, and say what was done — never silently.

- Up axis: the input is turned so that its up axis becomes the model's (a proper rotation;
  the output keeps the original coordinates, only the model's view turns). `up="auto"` picks
  it: for objects by the model itself — the view (x, y or z up) in which its top probability,
  averaged over its votes, is highest, only if that beats the trained view by 2.0 in log-odds
  (OBJECT_LOG_ODDS, measured on real shapes: a model unsure of a correctly oriented shape
  must not turn it into a wrong one); a note says when a file is turned, and when another
  view scored higher but not by the margin (kept as trained); for scenes from the planes (by
  10%) — the axis along which the
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
import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError, Setting
from ..io.cloud import PointCloud
from ..data.sampling import typical_spacing
from ..models.conventions import AXES, Conventions

log = logging.getLogger(__name__)
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
# auto turns a scene only when another axis's planes' share beats the model's own axis by 10%
# (a room's floor and ceiling do even in a 2.5 m corner crop)
TURN_MARGIN = {"scene": 1.1}
# ... and an object only when the model's top probability in another view beats the one in the
# trained view by this log-odds margin. Measured with the shipped modelnet10 classifier
# (benchmarks/auto_up_modelnet10.py): on its 599 z-up validation shapes the largest such gain
# is 1.50 (table_0045), so 2.0 turns none of them (the ratio rule before, top probability
# ×1.25, turned 15, all wrong: OA 96.3% vs 97.7% as trained), and turns back 109 of 200
# copies turned y up (OA on those 73.5%, vs 36.0% kept as trained; the ratio rule: 95.0%)
OBJECT_LOG_ODDS = 2.0
# A view not turned to is still worth a note when it wins by this much (a quarter of the
# margin): the user may know the file's axis; a near tie is not news.
OBJECT_HINT_LOG_ODDS = 0.5


@dataclass
class Preflight:
    """What harmonising did: the cloud the model sees, and one line per check."""
    cloud: PointCloud
    lines: list[str] = field(default_factory=list)
    up_axis: str | None = None      # the input's up axis as used
    scale: float = 1.0              # input units → the model's units
    views: dict = field(default_factory=dict)  # objects, auto: axis → what `confidence` gave


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
    for objects with `up="auto"`: a function cloud → class probabilities (or their maximum);
    what it returned per axis is kept in `Preflight.views`."""
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
        axis, line = _auto_up(cloud, conv, scale, confidence, out.views)
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


def log_odds(p: float) -> float:
    """log(p / (1 − p)), clipped: a confidence of 1.0 is not infinitely sure."""
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _auto_up(cloud: PointCloud, conv: Conventions, scale: float, confidence, views: dict):
    """The input's up axis, turned only on clear evidence (module doc); what each object view
    returned goes to `views`, so a caller need not run the model on the chosen one again."""
    where = cloud.source or "the input"
    if conv.units == "m" or confidence is None:  # scenes: the floor and ceiling
        _, score = floor_axis(cloud.points)
        best = max(score, key=score.get)
        axis = best if score[best] > score[conv.up_axis] * TURN_MARGIN["scene"] \
            else conv.up_axis
        shown = ", ".join(f"{a} {score[a]:.2f}" for a in AXES)
        turn = "as trained" if axis == conv.up_axis else f"→ turned to the model's {conv.up_axis}"
        return axis, f"up axis: {axis} (auto; flat patches facing {shown}) {turn}"
    for a in AXES:  # objects: the model's own confidence in each view
        views[a] = confidence(turned(cloud, a, conv.up_axis))
    score = {a: float(np.max(views[a])) for a in AXES}
    best = max(score, key=score.get)
    gain = log_odds(score[best]) - log_odds(score[conv.up_axis])
    axis = best if gain > OBJECT_LOG_ODDS else conv.up_axis
    shown = ", ".join(f"{a} {score[a]:.2f}" for a in AXES)
    if axis != conv.up_axis:
        log.warning("%s: turned: %s up scores %.2f against %.2f as trained (log-odds +%.1f > "
                    "%.1f)", where, axis, score[axis], score[conv.up_axis], gain,
                    OBJECT_LOG_ODDS)
        turn = f"→ turned to the model's {conv.up_axis}"
    else:
        turn = "as trained"
        if best != conv.up_axis and gain > OBJECT_HINT_LOG_ODDS:
            log.warning("%s: kept %s up as trained although %s up scores %.2f against %.2f "
                        "(log-odds +%.1f, not above %.1f); give the up axis as %s to turn it",
                        where, conv.up_axis, best, score[best], score[conv.up_axis], gain,
                        OBJECT_LOG_ODDS, best)
    return axis, f"up axis: {axis} (auto; model confidence if up were {shown}) {turn}"
