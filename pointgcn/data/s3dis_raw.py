"""The raw S3DIS tree: `Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/
<class>_<k>.txt`, one `x y z r g b` line per point; the class is the file-name prefix and unknown
prefixes (the stray `stairs` files) count as clutter, as in PointNet's `collect_point_label`.

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
bit back (NUL → ' ', 0x10 → '0', 0x16 → '6', 0x11 → '1'; a CR not followed by LF → '-'). Lines that
still do not parse as 6 finite numbers are dropped and counted (at most `max_bad_lines` per
file, beyond which the file is rejected with its first bad line number).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .classes import S3DIS_CLASSES

RAW_DIR_NAME = "Stanford3dDataset_v1.2_Aligned_Version"
CLUTTER = S3DIS_CLASSES.index("clutter")
_AREA_RE = re.compile(r"^Area_(\d+)$")

_FLIPPED = bytes(c for c in range(0x20) if c not in (0x09, 0x0A))  # includes CR (0x0D)
_RESTORE = bytes.maketrans(_FLIPPED, bytes(c | 0x20 for c in _FLIPPED))


def repair_bit_flips(raw: bytes) -> tuple[bytes, int]:
    """Undo cleared-0x20-bit bytes (see module docstring). Returns (bytes, bytes repaired)."""
    raw = raw.replace(b"\r\n", b"\n")
    if raw.endswith(b"\r"):
        raw = raw[:-1] + b"\n"
    repaired = len(raw) - len(raw.translate(None, _FLIPPED))
    return (raw.translate(_RESTORE) if repaired else raw), repaired


@dataclass
class ParsedText:
    rows: np.ndarray  # (N, columns) float64
    repaired: int  # control bytes restored
    dropped: int  # lines still unparseable, dropped
    first_bad_line: int | None


def parse_numeric_text(raw: bytes, columns: int, source: str,
                       max_bad_lines: int = 100) -> ParsedText:
    """Whitespace-separated numeric lines with exactly `columns` finite values each, after
    `repair_bit_flips`. Fast path: one `np.loadtxt`; on failure, line by line."""
    fixed, repaired = repair_bit_flips(raw)
    text = fixed.decode("latin-1")
    if not text.strip():
        return ParsedText(np.zeros((0, columns)), repaired, 0, None)
    try:
        rows = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
        if rows.shape[1] == columns and np.isfinite(rows).all():
            return ParsedText(rows, repaired, 0, None)
    except ValueError:
        pass
    good, bad, first_bad = [], 0, None
    for number, line in enumerate(text.split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
            ok = len(values) == columns and all(np.isfinite(values))
        except ValueError:
            ok = False
        if ok:
            good.append(values)
        else:
            bad += 1
            first_bad = first_bad or number
    if bad > max_bad_lines:
        raise FormatError(f"{source}: {bad} lines are not {columns} numbers "
                          f"(first at line {first_bad})")
    rows = np.asarray(good, dtype=np.float64).reshape(-1, columns)
    return ParsedText(rows, repaired, bad, first_bad)


def class_of_annotation(path: Path) -> int:
    """S3DIS class id from an annotation file name `<class>_<k>.txt`; unknown → clutter."""
    name = path.stem.split("_")[0]
    return S3DIS_CLASSES.index(name) if name in S3DIS_CLASSES else CLUTTER


@dataclass
class RawRoom:
    """One room assembled from its annotation files (coordinates as stored, not shifted)."""

    name: str  # Area_N_<room>, PointNet's naming
    area: int
    xyz: np.ndarray  # (N, 3) float64
    rgb: np.ndarray  # (N, 3) float64, 0–255
    labels: np.ndarray  # (N,) int64
    repaired: int = 0
    dropped: int = 0

    def as_rows(self, shift: bool = True) -> np.ndarray:
        """N×7 float32 rows `x y z r g b label`; `shift` moves the min corner to the origin
        as PointNet's `collect_point_label` does."""
        xyz = self.xyz - self.xyz.min(axis=0) if shift and len(self.xyz) else self.xyz
        return np.concatenate([xyz, self.rgb, self.labels[:, None]], axis=1).astype(np.float32)


def read_raw_room(room_dir: str | Path, area: int | None = None,
                  max_bad_lines: int = 100) -> RawRoom:
    """Concatenate a room's `Annotations/*.txt` (sorted by name) with their class labels."""
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
    parts, labels, repaired, dropped = [], [], 0, 0
    for f in files:
        try:
            raw = f.read_bytes()
        except OSError as e:
            raise InputError(f"{f}: cannot read ({e.strerror})") from None
        parsed = parse_numeric_text(raw, 6, str(f), max_bad_lines)
        parts.append(parsed.rows)
        labels.append(np.full(len(parsed.rows), class_of_annotation(f), dtype=np.int64))
        repaired += parsed.repaired
        dropped += parsed.dropped
    rows = np.concatenate(parts)
    if len(rows) == 0:
        raise FormatError(f"{ann_dir}: the annotation files hold no points")
    return RawRoom(f"Area_{area}_{room_dir.name}", area, rows[:, :3], rows[:, 3:6],
                   np.concatenate(labels), repaired, dropped)


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
