"""Shipped weights: `weights/manifest.json` names each checkpoint with its sha256 and card.

`resolve_weights("synth-rooms")` → verified path; a path is returned as is (after an
existence check). Loading by name always verifies the hash, so a corrupted or swapped file
is refused instead of silently giving wrong predictions.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import yaml

from ..errors import InputError
from ..io.atomic import atomic_path
from .checkpoint import atomic_torch_save, read_checkpoint
from .conventions import conventions_of

MANIFEST = "manifest.json"


def weights_dir() -> Path:
    env = os.environ.get("POINTGCN_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path | None = None) -> list[dict]:
    path = (folder or weights_dir()) / MANIFEST
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["models"]
    except (ValueError, KeyError) as e:
        raise InputError(f"{path}: not a valid weights manifest ({e})") from e


def find_entry(name: str, folder: Path | None = None) -> dict | None:
    return next((m for m in read_manifest(folder) if m["name"] == name), None)


def resolve_weights(name_or_path: str | Path, folder: Path | None = None) -> Path:
    """A checkpoint path from a path or a shipped model's name (hash-verified)."""
    path = Path(name_or_path)
    if path.suffix and path.exists():
        return path
    folder = folder or weights_dir()
    entry = find_entry(str(name_or_path), folder)
    if entry is None:
        if path.suffix or os.sep in str(name_or_path):
            raise InputError(f"weights not found: {name_or_path}")
        names = ", ".join(m["name"] for m in read_manifest(folder)) or "none"
        raise InputError(f"no shipped model named {name_or_path!r} (shipped: {names})")
    file = folder / entry["file"]
    if not file.is_file():
        raise InputError(f"shipped model {entry['name']}: file {file} is missing")
    digest = sha256(file)
    if digest != entry["sha256"]:
        raise InputError(f"shipped model {entry['name']}: sha256 mismatch for {file} "
                         f"(expected {entry['sha256'][:12]}…, got {digest[:12]}…)")
    return file


def ship_checkpoint(src: str | Path, name: str, card: dict, folder: Path | None = None) -> dict:
    """Copy a trained checkpoint into the weights folder without its training state, write
    its model card and add (or replace) its manifest entry. `card` holds: task, data,
    command, metrics {name: value}, accuracy {metric, value, data}, notes; optionally
    `default: true` (serves its task when no model is named; one per task) and
    `real_data: true` (trained on a real data set, not the procedural ones)."""
    folder = folder or weights_dir()
    ckpt = read_checkpoint(src)
    slim = {k: v for k, v in ckpt.items() if k != "train_state"}
    file = folder / f"{name}.pt"
    atomic_torch_save(slim, file)
    model_cfg = dict(ckpt["config"].get("model", {}))
    params = sum(v.numel() for k, v in ckpt["state_dict"].items()
                 if torch.is_floating_point(v) and "running" not in k)
    entry = {"name": name, "file": file.name, "sha256": sha256(file), "task": card["task"],
             "in_channels": model_cfg.get("in_channels"),
             "points": ckpt["config"].get("data", {}).get("n_points"),
             "accuracy": card["accuracy"], "params": int(params),
             "size_bytes": file.stat().st_size, "card": f"{name}.md",
             **({"default": True} if card.get("default") else {}),
             **({"real_data": True} if card.get("real_data") else {})}
    conventions = (ckpt.get("meta") or {}).get("conventions")
    calibration = (ckpt.get("meta") or {}).get("calibration")
    with atomic_path(folder / f"{name}.md") as tmp:
        tmp.write_text(_card_text(name, entry, card, ckpt["config"], conventions, calibration))
    entries = [m for m in read_manifest(folder) if m["name"] != name] + [entry]
    if entry.get("default"):  # one default per task
        entries = [m if m is entry or m.get("task") != entry["task"]
                   else {k: v for k, v in m.items() if k != "default"} for m in entries]
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"models": entries}, indent=2) + "\n")
    return entry


def _calibration_text(c: dict) -> str:
    return (f"\n## Calibration\nTemperature {c['temperature']:.3f} (probabilities are "
            f"softmax(logits / T)), fitted on the {c['fitted_on']}: ECE {c['ece_before']:.4f} "
            f"before, {c['ece_after']:.4f} after, over {c['points']:,} points, {c['bins']} bins, "
            f"measured on {c['measured_on']}. `pointgcn eval` reports it on the test split.\n")


def record_calibration(name: str, record: dict, folder: Path | None = None) -> dict:
    """Store a calibration `record` (calibration.calibration_report plus `fitted_on`,
    `measured_on`) in a shipped model: its checkpoint's meta (`temperature`, `calibration`;
    weights untouched), its manifest entry's sha256 and size, and its card's Calibration
    section (added before Config, or replaced). Returns the new manifest entry."""
    folder = folder or weights_dir()
    path = resolve_weights(name, folder)  # hash-verified before it is changed
    ckpt = read_checkpoint(path)
    ckpt["meta"] = {**ckpt.get("meta", {}), "temperature": float(record["temperature"]),
                    "calibration": dict(record)}
    atomic_torch_save(ckpt, path)
    entries = read_manifest(folder)
    entry = next(m for m in entries if m["name"] == name)
    entry.update(sha256=sha256(path), size_bytes=path.stat().st_size)
    card = folder / entry["card"]
    if card.is_file():
        text, section = card.read_text(), _calibration_text(record)
        if "\n## Calibration\n" in text:
            head, _, rest = text.partition("\n## Calibration\n")
            tail = rest[rest.index("\n## "):] if "\n## " in rest else ""
            text = head + section + tail
        else:
            head, sep, tail = text.partition("\n## Config\n")
            text = head + section + sep + tail if sep else text + section
        text = text.replace(entry_sha_line(text), f"sha256 `{entry['sha256']}`")
        with atomic_path(card) as tmp:
            tmp.write_text(text)
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"models": entries}, indent=2) + "\n")
    return entry


def entry_sha_line(text: str) -> str:
    """The card's `sha256 `…`` mention (the file's hash changes when its meta does)."""
    start = text.index("sha256 `")
    return text[start:text.index("`", start + 8) + 1]


def _card_text(name: str, entry: dict, card: dict, config: dict,
               conventions: dict | None, calibration: dict | None = None) -> str:
    conv = conventions_of({**config, "conventions": conventions})
    calibrated = _calibration_text(calibration) if calibration else ""

    provenance = ("- trained on real data (above); its metrics are on held-out shapes of that "
                  "data, not on an official test split" if card.get("real_data") else
                  "- **not** an S3DIS / ModelNet40 / PartNet model: it has only seen procedural "
                  "synthetic data.")
    metrics = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                        for k, v in card.get("metrics", {}).items())
    return f"""# {name}

{card.get('summary', '')}

- task: {entry['task']}; input channels: {entry['in_channels']}; points per sample: {entry['points']}
- parameters: {entry['params']:,}; file: `{entry['file']}` ({entry['size_bytes'] / 1e6:.2f} MB),
  sha256 `{entry['sha256']}`
- trained on: {card['data']}
{provenance}
- conventions (checked by `segment`/`classify` before inference): {conv.describe()}

## How it was made
```
{card['command']}
```

## Held-out metrics ({card['accuracy']['data']})
| metric | value |
|---|---|
{metrics}
{calibrated}
{card.get('notes', '')}

## Config
```yaml
{yaml.safe_dump(config, sort_keys=False).strip()}
```
"""
