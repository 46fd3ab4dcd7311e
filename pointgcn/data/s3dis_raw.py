"""The raw S3DIS tree: `Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/
<class>_<k>.txt`, one `x y z r g b` line per point; the class is the file-name prefix. The
archive's stray `stairs` files count as clutter, as in PointNet's `collect_point_label`; any other
unknown prefix is refused: the file name is the only label a point has, so there is nothing to
repair it to, and counting it as clutter would train on a guess (a typo, `Chair_1`, `banana_1`).

Known corruptions in the published archive and how they are repaired. Every reported one is a
single byte whose 0x20 bit was cleared, turning the numeric alphabet (space, '-', '.', digits,
all of which have that bit set) into ASCII control characters:
  Area_5/hallway_6/Annotations/ceiling_1.txt line 180389: a space became NUL, so the line reads
    as 5 columns (PointNet: "fixed manually"; mmdetection3d overwrites the byte with a space);
  Area_5/office_19/Annotations/ceiling_1.txt line 323474: `103.0\\x100000` — '0' became 0x10;
  Area_3/hallway_2: `-9.1\\x160` — '6' became 0x16;
  Area_1/WC_1/WC_1.txt line 429613 and Area_6/hallway_2/hallway_2.txt line 842733
    (torch-points3d's s3dis.patch): a colour value carrying an invisible byte, which the patch
    rewrites (`21….000000` → `211.000000`, i.e. 0x11 for '1').
So the repair is exact, not a guess: any byte 0x00–0x1F other than tab and newline gets the
bit back (NUL → ' ', 0x10 → '0', 0x16 → '6', 0x11 → '1'; a CR not followed by LF → '-').

Every other problem is checked here, once, for every command that reads raw rooms (`data
prepare` and `train` print what was done): a line that is still not `x y z r g b` — a
non-numeric token, a wrong number of values (a truncated line), NaN/Inf (`1e400` too), a colour
outside 0–255 — is dropped and counted, and an empty annotation file is skipped and counted
(`RawRoom.fixes`, summed over rooms by `DataReport`). What cannot be repaired is refused with
the file and line: more than `max_bad_lines` bad lines in one file, or a file with no good line
at all (binary or foreign data, which dropping would turn into a silently missing object).
"""
from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .classes import S3DIS_CLASSES
from .report import DataReport

RAW_DIR_NAME = "Stanford3dDataset_v1.2_Aligned_Version"
CLUTTER = S3DIS_CLASSES.index("clutter")
AS_CLUTTER = ("stairs",)  # prefixes in the archive that are no class: PointNet's clutter
_AREA_RE = re.compile(r"^Area_(\d+)$")

_FLIPPED = bytes(c for c in range(0x20) if c not in (0x09, 0x0A))  # includes CR (0x0D)
_RESTORE = bytes.maketrans(_FLIPPED, bytes(c | 0x20 for c in _FLIPPED))

# what is wrong with a dropped line, as counted in RawRoom.fixes and printed by DataReport
NON_NUMERIC = "non-numeric lines dropped"
WRONG_COLUMNS = "lines without exactly 6 values dropped"
NON_FINITE = "NaN/Inf lines dropped"
BAD_COLOUR = "lines with colours outside 0–255 dropped"
REPAIRED = "corrupted bytes repaired"
EMPTY_FILE = "empty annotation files skipped"


def repair_bit_flips(raw: bytes) -> tuple[bytes, int]:
    """Undo cleared-0x20-bit bytes (see module docstring). Returns (bytes, bytes repaired)."""
    raw = raw.replace(b"\r\n", b"\n")
    if raw.endswith(b"\r"):
        raw = raw[:-1] + b"\n"
    repaired = len(raw) - len(raw.translate(None, _FLIPPED))
    return (raw.translate(_RESTORE) if repaired else raw), repaired


@dataclass
class ParsedText:
    rows: np.ndarray  # (N, 6) float64 x y z r g b
    repaired: int  # control bytes restored
    dropped: Counter = field(default_factory=Counter)  # lines dropped, by what was wrong
    first_bad_line: int | None = None


def _line_problem(parts: list[str]) -> str | None:
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return NON_NUMERIC
    if len(values) != 6:
        return WRONG_COLUMNS
    if not np.isfinite(values).all():
        return NON_FINITE
    if not all(0 <= c <= 255 for c in values[3:]):
        return BAD_COLOUR
    return None


def _all_good(rows: np.ndarray) -> bool:
    return (rows.shape[1] == 6 and bool(np.isfinite(rows).all())
            and bool(((rows[:, 3:] >= 0) & (rows[:, 3:] <= 255)).all()))


def parse_annotation(raw: bytes, source: str, max_bad_lines: int = 100) -> ParsedText:
    """An annotation file's `x y z r g b` lines after `repair_bit_flips`; bad lines dropped and
    counted, an unrepairable file refused (module docstring). Fast path: one `np.loadtxt`."""
    fixed, repaired = repair_bit_flips(raw)
    text = fixed.decode("latin-1")
    if not text.strip():
        return ParsedText(np.zeros((0, 6)), repaired)
    try:
        rows = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
        if _all_good(rows):
            return ParsedText(rows, repaired)
    except ValueError:
        pass
    good, dropped, first_bad, first_problem = [], Counter(), None, None
    for number, line in enumerate(text.split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        problem = _line_problem(parts)
        if problem is None:
            good.append([float(p) for p in parts])
            continue
        dropped[problem] += 1
        if first_bad is None:
            first_bad, first_problem = number, problem
    bad = sum(dropped.values())
    where = f"{source} line {first_bad}: {(first_problem or '').replace(' dropped', '')}"
    if bad > max_bad_lines:
        raise FormatError(f"{where} (and {bad - 1} more bad lines; a damaged file may lose at "
                          f"most {max_bad_lines})")
    if not good:
        raise FormatError(f"{where}, and no line is `x y z r g b` (binary or not an S3DIS "
                          f"annotation file)")
    return ParsedText(np.asarray(good, dtype=np.float64), repaired, dropped, first_bad)


def class_of_annotation(path: Path) -> int:
    """S3DIS class id from an annotation file name `<class>_<k>.txt` (`stairs` → clutter);
    an unknown class is a FormatError (module docstring says why)."""
    name = path.stem.split("_")[0]
    if name in S3DIS_CLASSES:
        return S3DIS_CLASSES.index(name)
    if name in AS_CLUTTER:
        return CLUTTER
    raise FormatError(f"{path}: unknown class {name!r} (S3DIS classes: "
                      f"{', '.join(S3DIS_CLASSES)}; `stairs` counts as clutter)")


@dataclass
class RawRoom:
    """One room assembled from its annotation files (coordinates as stored, not shifted)."""

    name: str  # Area_N_<room>, PointNet's naming
    area: int
    xyz: np.ndarray  # (N, 3) float64
    rgb: np.ndarray  # (N, 3) float64, 0–255
    labels: np.ndarray  # (N,) int64
    fixes: Counter = field(default_factory=Counter)  # what was repaired or dropped, counted

    def as_rows(self, shift: bool = True) -> np.ndarray:
        """N×7 float32 rows `x y z r g b label`; `shift` moves the min corner to the origin
        as PointNet's `collect_point_label` does."""
        xyz = self.xyz - self.xyz.min(axis=0) if shift and len(self.xyz) else self.xyz
        return np.concatenate([xyz, self.rgb, self.labels[:, None]], axis=1).astype(np.float32)


def read_raw_room(room_dir: str | Path, area: int | None = None, max_bad_lines: int = 100,
                  report: DataReport | None = None) -> RawRoom:
    """Concatenate a room's `Annotations/*.txt` (sorted by name) with their class labels;
    what was repaired or dropped is in `fixes` and, if given, added to `report`."""
    room_dir = Path(room_dir)
    ann_dir = room_dir / "Annotations"
    files = sorted(p for p in ann_dir.glob("*.txt") if not p.name.startswith("."))
    if not files:
        raise FormatError(f"{ann_dir}: no annotation files <class>_<k>.txt")
    if area is None:
        m = _AREA_RE.match(room_dir.parent.name)
        if not m:
            raise FormatError(f"{room_dir}: parent folder is not Area_N")
        area = int(m.group(1))
    parts, labels, fixes = [], [], Counter()
    for f in files:
        label = class_of_annotation(f)  # before reading: a wrong name fails fast
        try:
            raw = f.read_bytes()
        except OSError as e:
            raise InputError(f"{f}: cannot read ({e.strerror})") from None
        parsed = parse_annotation(raw, str(f), max_bad_lines)
        parts.append(parsed.rows)
        labels.append(np.full(len(parsed.rows), label, dtype=np.int64))
        fixes[REPAIRED] += parsed.repaired
        fixes.update(parsed.dropped)
        fixes[EMPTY_FILE] += len(parsed.rows) == 0
    rows = np.concatenate(parts)
    if len(rows) == 0:
        raise FormatError(f"{ann_dir}: the annotation files hold no points")
    room = RawRoom(f"Area_{area}_{room_dir.name}", area, rows[:, :3], rows[:, 3:6],
                   np.concatenate(labels), +fixes)
    if report is not None:
        report.add(room.name, room.fixes)
    return room


def find_raw_root(root: str | Path) -> Path | None:
    """The folder holding Area_N/ (the given one, or its Stanford3dDataset… child), or None."""
    root = Path(root)
    for cand in (root, root / RAW_DIR_NAME):
        if cand.is_dir() and any(_AREA_RE.match(p.name) and any(p.glob("*/Annotations"))
                                 for p in cand.iterdir() if p.is_dir()):
            return cand
    return None


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_raw_rooms(root: str | Path) -> list[tuple[int, Path]]:
    """(area, room folder) of every room with an Annotations folder, in natural order."""
    base = find_raw_root(root)
    if base is None:
        raise FormatError(f"{root}: not an S3DIS raw tree (no Area_N/<room>/Annotations)")
    rooms = []
    for area_dir in sorted(base.iterdir(), key=lambda p: _natural(p.name)):
        m = _AREA_RE.match(area_dir.name)
        if not (m and area_dir.is_dir()):
            continue
        for room in sorted(area_dir.iterdir(), key=lambda p: _natural(p.name)):
            if (room / "Annotations").is_dir():
                rooms.append((int(m.group(1)), room))
    return rooms
