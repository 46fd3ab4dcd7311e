"""What kind of file is at a path, by content: may an output replace it?

A stage about to write `OUT.png` may replace a PNG (an earlier preview) but not a cloud, a
checkpoint or a latency table that a mistyped path happens to name. Kinds are told by the first
bytes of the file (magic numbers), text kinds by being text; an empty file holds nothing to lose.
"""
from __future__ import annotations

import json
from pathlib import Path

# suffix → accepted leading bytes (any of them)
MAGIC = {
    ".ply": (b"ply\n", b"ply\r\n"),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".npy": (b"\x93NUMPY",),
    ".npz": (b"PK\x03\x04", b"PK\x05\x06"),
    ".pt": (b"PK\x03\x04", b"\x80"),      # torch.save: zip archive, or a legacy pickle
    ".pth": (b"PK\x03\x04", b"\x80"),
    ".onnx": (b"\x08",),                    # ModelProto field 1 (ir_version), a varint
    ".las": (b"LASF",),
    ".laz": (b"LASF",),
    ".pcd": (b"#", b"VERSION", b"FIELDS"),
}
TEXT = (".json", ".jsonl", ".md", ".csv", ".txt", ".xyz", ".pts", ".yaml", ".yml")
CLOUD_TEXT = (".txt",)  # written as clouds (segment): replace only a table of points
_PROBE = 1 << 16


def same_kind(path: str | Path, suffix: str) -> bool:
    """True when the existing file at `path` is of the kind `suffix` names (or is empty), so
    replacing or appending to it loses nothing of another kind."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_PROBE)
    if not head:
        return True
    suffix = suffix.lower()
    if suffix in MAGIC:
        return head.startswith(MAGIC[suffix])
    if suffix in TEXT:
        if b"\x00" in head:
            return False
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as e:  # a multi-byte character cut at the probe's end is fine
            if e.start < len(head) - 4:
                return False
            text = head[:e.start].decode("utf-8")
        if suffix == ".json":
            return text.lstrip()[:1] in ("{", "[") and _parses(path)
        if suffix == ".jsonl":
            return text.lstrip()[:1] == "{"
        if suffix in CLOUD_TEXT:
            return _point_table(text)
        return True
    return False  # a kind we cannot recognise is never replaced


def _point_table(text: str) -> bool:
    """The first line of data is numbers, or a header naming x y z (notes are not clouds)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.lstrip("/").replace(",", " ").replace(";", " ").split()
        if {"x", "y", "z"} <= {t.strip("\"'").lower() for t in tokens}:
            return True
        try:
            [float(t) for t in tokens]
        except ValueError:
            return False
        return True
    return True


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return True
