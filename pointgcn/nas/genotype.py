"""Genotypes: a searched cell as plain data, its file format and its 9×10 encoding.

A cell has two input states (0 = the cell before the previous one, 1 = the previous cell) and
three intermediate nodes; node i may read every earlier state 0 … i+1, so the supernet has
2 + 3 + 4 = 9 edges, numbered node by node (`EDGES`). A genotype keeps, per node, a list of
(op, input state) pairs — two per node after SGAS — plus the network size it was searched or
is meant to be built at (cells, channels, k). Every cell of a network uses the same genotype.

File (YAML, or JSON when the name ends in .json):

    format: pointgcn-genotype
    version: 1
    nodes:                      # one list per intermediate node: [op, input state]
      - [[mr_conv, 0], [gat, 1]]
      - [[edge_conv, 1], [conv_1x1, 2]]
      - [[skip_connect, 0], [mr_conv, 3]]
    cells: 2
    channels: 32
    k: 9

The encoding is the flattened 9×10 one-hot of each edge's op in `PRIMITIVES` order, with
`none` on edges the genotype does not keep (LC-NAS's architecture encoding).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError, FormatError, InputError
from ..io.atomic import atomic_path
from .ops import NONE, PRIMITIVES, check_op

N_NODES = 3
N_INPUTS = 2
EDGES: tuple[tuple[int, int], ...] = tuple((node, src) for node in range(N_NODES)
                                           for src in range(N_INPUTS + node))
N_EDGES = len(EDGES)
N_OPS = len(PRIMITIVES)
ENCODING_DIM = N_EDGES * N_OPS
FORMAT = "pointgcn-genotype"


def edge_index(node: int, src: int) -> int:
    return EDGES.index((node, src))


def node_edges(node: int) -> list[int]:
    """Indices of the supernet edges that end at intermediate node `node`."""
    return [e for e, (n, _) in enumerate(EDGES) if n == node]


@dataclass
class Genotype:
    nodes: list[list[tuple[str, int]]]
    cells: int = 2
    channels: int = 32
    k: int = 9
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for node in self.nodes:
            for _, src in node:
                if not isinstance(src, (int, np.integer)) or isinstance(src, bool):
                    raise ConfigError(f"genotype: an input state must be an integer, got {src!r}")
        self.nodes = [[(str(op), int(src)) for op, src in node] for node in self.nodes]
        self.validate(two_per_node=False)

    # ---- checks -------------------------------------------------------------------------
    def validate(self, two_per_node: bool = True, where: str = "genotype") -> "Genotype":
        """Raise ConfigError unless the nodes form a cell of this space (SGAS: 2 edges/node)."""
        if len(self.nodes) != N_NODES:
            raise ConfigError(f"{where}: needs {N_NODES} nodes, got {len(self.nodes)}")
        for i, node in enumerate(self.nodes):
            if two_per_node and len(node) != 2:
                raise ConfigError(f"{where}: node {i} keeps {len(node)} edges, a genotype keeps 2")
            srcs = [src for _, src in node]
            if len(set(srcs)) != len(srcs):
                raise ConfigError(f"{where}: node {i} reads the same input twice {srcs}")
            for op, src in node:
                if check_op(op) == NONE:
                    raise ConfigError(f"{where}: node {i} keeps a 'none' edge; leave it out")
                if not 0 <= src < N_INPUTS + i:
                    raise ConfigError(f"{where}: node {i} cannot read state {src} "
                                      f"(states 0…{N_INPUTS + i - 1} exist before it)")
        for key in ("cells", "channels", "k"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        return self

    # ---- encodings ----------------------------------------------------------------------
    def edge_ops(self) -> list[str]:
        """The op on each of the 9 supernet edges, 'none' where no edge is kept."""
        ops = ["none"] * N_EDGES
        for i, node in enumerate(self.nodes):
            for op, src in node:
                ops[edge_index(i, src)] = op
        return ops

    def encoding(self) -> np.ndarray:
        """Flattened 9×10 one-hot, float32 (90,)."""
        return encode_ops(self.edge_ops())

    @classmethod
    def from_edge_ops(cls, ops: list[str], cells: int = 2, channels: int = 32, k: int = 9,
                      **meta) -> "Genotype":
        """A cell keeping every non-`none` edge of a 9-op assignment (any count per node)."""
        if len(ops) != N_EDGES:
            raise ConfigError(f"an edge assignment has {N_EDGES} ops, got {len(ops)}")
        nodes: list[list[tuple[str, int]]] = [[] for _ in range(N_NODES)]
        for (node, src), op in zip(EDGES, ops):
            if check_op(op) != NONE:
                nodes[node].append((op, src))
        return cls(nodes, cells, channels, k, meta)

    # ---- plain data ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"format": FORMAT, "version": 1,
               "nodes": [[[op, src] for op, src in node] for node in self.nodes],
               "cells": self.cells, "channels": self.channels, "k": self.k}
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, data, where: str = "genotype") -> "Genotype":
        if not isinstance(data, dict) or "nodes" not in data:
            raise ConfigError(f"{where}: a genotype is a mapping with 'nodes' "
                              "(and cells, channels, k)")
        if data.get("format", FORMAT) != FORMAT:
            raise FormatError(f"{where}: format is {data.get('format')!r}, expected {FORMAT}")
        nodes = data["nodes"]
        try:
            nodes = [[(op, src) for op, src in node] for node in nodes]
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: nodes must be lists of [op, input] pairs") from None
        unknown = set(data) - {"format", "version", "nodes", "cells", "channels", "k", "meta"}
        if unknown:
            raise ConfigError(f"{where}: unknown genotype keys {sorted(unknown)}")
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            raise ConfigError(f"{where}: genotype version {version!r} is not supported "
                              "(this version reads 1)")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise ConfigError(f"{where}: meta must be a mapping, got {type(meta).__name__}")
        try:
            g = cls(nodes, data.get("cells", 2), data.get("channels", 32), data.get("k", 9),
                    dict(meta))
        except ConfigError as e:
            raise ConfigError(str(e).replace("genotype:", f"{where}:", 1)) from None
        return g

    def describe(self) -> str:
        parts = [" + ".join(f"{op}({src})" for op, src in node) or "0" for node in self.nodes]
        return f"[{' | '.join(parts)}] cells={self.cells} C={self.channels} k={self.k}"


def encode_ops(ops: list[str]) -> np.ndarray:
    enc = np.zeros((N_EDGES, N_OPS), np.float32)
    for e, op in enumerate(ops):
        enc[e, check_op(op)] = 1.0
    return enc.reshape(-1)


def decode(encoding) -> list[str]:
    """Op names from a (90,) or (9, 10) one-hot (argmax per edge)."""
    enc = np.asarray(encoding, np.float64).reshape(N_EDGES, N_OPS)
    return [PRIMITIVES[int(i)] for i in enc.argmax(1)]


def save_genotype(genotype: Genotype, path: str | Path) -> Path:
    path = Path(path)
    data = genotype.to_dict()
    text = json.dumps(data, indent=2) if path.suffix == ".json" else \
        yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def load_genotype(source) -> Genotype:
    """A Genotype from a file path, a dict, or a Genotype."""
    if isinstance(source, Genotype):
        return source
    if isinstance(source, dict):
        return Genotype.from_dict(source)
    if not isinstance(source, (str, Path)):
        raise ConfigError(f"genotype must be a mapping or a file path, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"genotype file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise FormatError(f"{path}: not a readable genotype file ({type(e).__name__})") from None
    return Genotype.from_dict(data, where=str(path))
