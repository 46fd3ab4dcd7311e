"""Module → ONNX file with dynamic axes, in export mode, with exporter failures as `ExportError`.

Exporter choice, by measurement (docs/performance.md): both the TorchScript-based exporter
("legacy", opset 17) and the torch.export one ("dynamo", opset 18, needs onnxscript) export
every block × conv × GEN-aggregator model the configs can produce, with identical onnxruntime
outputs; legacy exports about ten times faster (and every export exports twice: the
static-graph parity copy), the dynamo graph is smaller but runs no faster (the time is in
TopK either way), and legacy names an unsupported aten op in one sentence where dynamo buries
it in a multi-page report (both are parsed here). So "legacy" is the default and "dynamo"
stays available (`exporter="dynamo"`).

Graph modules: every `DilatedKnn` in the model builds one dynamic kNN graph; models that build
graphs elsewhere (e.g. future searched cells) export the same way as long as their kNN goes
through `pointgcn.graph.knn` (which `export_mode()` routes to the loop-free path). Inside
`custom_knn.custom_knn_ops` each `DilatedKnn` traces as one custom node instead, and the file
imports that node's domain (legacy exporter only).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError
from ..graph import export_mode
from . import custom_knn

EXPORTERS = ("legacy", "dynamo")
MIN_OPSET = 17


@contextlib.contextmanager
def quiet_native_output():
    """Silence writes to fds 1 and 2 from C++ and the exporters: torch 2.13's legacy exporter
    dumps the whole TorchScript graph to stdout when an op fails (even with logging off), and
    the dynamo exporter prints progress lines. Our one-line `ExportError` replaces both."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    saved = []
    try:
        with tempfile.TemporaryFile() as sink:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:  # no such fd (embedded interpreters): leave it alone
                    pass
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


_OP_PATTERNS = [
    r"OpOverload\(op='([\w.]+)'",                    # dynamo: No ONNX function found for …
    r"target=torch\.ops\.([\w.]+)",                  # dynamo: Error when translating node
    r"operator '([\w:.]+)'",                        # legacy: Exporting the operator 'aten::x'
    r"Python operator (\w+)",                       # autograd.Function without a symbolic
    r"(?:decomposition|translation|function) for (?:the )?(?:operator )?['`\"]?"
    r"((?:aten|prim|torch)[\w:.]+)",                # dynamo exporter
    r"((?:aten|prim)::\w+)",
    r"(aten\.\w+(?:\.\w+)?)",
]


def unsupported_op(exc: BaseException) -> str | None:
    """The op an exporter exception complains about, if it names one."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    for pattern in _OP_PATTERNS:
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    return None


def trace_to_onnx(module: nn.Module, args: tuple, path: str | Path, *, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict, opset: int = MIN_OPSET,
                  exporter: str = "legacy") -> None:
    """Export `module(*args)` in export mode; any exporter failure → one-line `ExportError`."""
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: pointgcn exports need opset ≥ {MIN_OPSET}")
    what = type(module).__name__
    custom = custom_knn.is_active()
    if custom and exporter != "legacy":
        raise ExportError("the custom kNN operator exports with the legacy exporter only")
    try:
        with export_mode(), torch.no_grad(), warnings.catch_warnings(), quiet_native_output():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes,
                              opset_version=opset, dynamo=exporter == "dynamo",
                              do_constant_folding=True,
                              **({"custom_opsets": {custom_knn.DOMAIN: 1}} if custom else {}))
    except ExportError:
        raise
    except Exception as e:  # the exporters raise many types (UnsupportedOperatorError, …)
        op = unsupported_op(e)
        if op:
            raise ExportError(f"cannot export {what} to ONNX (opset {opset}): operator "
                              f"'{op}' is not supported by the {exporter} exporter") from e
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(f"cannot export {what} to ONNX (opset {opset}): "
                          f"{type(e).__name__}: {first}") from e
