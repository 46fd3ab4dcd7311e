"""Run configs: YAML files plus `key=value` overrides (dotted keys, YAML-typed values).

`load_config("configs/s3dis_resgcn28.yaml", ["model.k=9", "train.epochs=2"])` → plain dict.
A config may name a `base:` file (relative to itself) whose values it overrides.
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string; YAML 1.2 and every user
    mean a float, so such numbers are resolved as floats too."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file with its `base:` chain merged in; a chain that comes back to a file it
    has already read is a cycle (one line naming it), not a RecursionError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    chain = (*_chain, path)
    if path.resolve() in {p.resolve() for p in _chain}:
        raise ConfigError("config base cycle: " + " → ".join(str(p) for p in chain))
    try:
        data = parse_yaml(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:  # binary, nested 10⁵ deep
        why = str(e).splitlines()[0] if isinstance(e, yaml.YAMLError) else type(e).__name__
        raise ConfigError(f"{path}: not valid YAML ({why})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    if "base" in data:
        base = data.pop("base")
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: base must name a config file, got {base!r}")
        data = _merge(read_yaml(path.parent / base, chain), data)
    return data


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = cfg
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return cfg


def load_config(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> dict:
    """A config from a YAML path or a dict, with overrides applied; always a fresh dict."""
    cfg = read_yaml(source) if isinstance(source, (str, Path)) else copy.deepcopy(dict(source))
    return apply_overrides(cfg, overrides)


def check_int(section: dict, key: str, name: str, minimum: int = 1,
              maximum: int | None = None) -> None:
    """One-line ConfigError unless section[key] is an int in minimum…maximum (None is left
    alone)."""
    v = section.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{name}.{key} must be an integer ≥ {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ConfigError(f"{name}.{key} must be at most {maximum}, got {v}")


def check_number(section: dict, key: str, name: str, interval: str = "[0, inf)",
                 allow_none: bool = True) -> None:
    """One-line ConfigError unless section[key] is a finite number in `interval` (written as
    in maths: "(0, inf)", "[0, 1)"), or None where `allow_none`. NaN fails every comparison,
    so it is refused by name instead of slipping through a `v < low` test."""
    v = section.get(key)
    if v is None and allow_none:
        return
    low, high = (float(x) for x in interval[1:-1].split(","))
    ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
          and (v > low if interval[0] == "(" else v >= low)
          and (v < high if interval[-1] == ")" else v <= high))
    if not ok:
        if high == math.inf:
            want = "a finite number" + ("" if low == -math.inf else
                                        f" {'>' if interval[0] == '(' else '≥'} {low:g}")
        else:
            want = f"a number in {interval}"
        raise ConfigError(f"{name}.{key} must be {want}, got {v!r}")


def cache_dir() -> Path:
    """Where sampled shapes, exported models and latency tables are cached."""
    env = os.environ.get("POINTGCN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pointgcn"


def dump_config(cfg: Mapping, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
