"""Optional export variant: each dilated kNN as one custom onnxruntime node running our eager kNN.

Why: the portable export's kNN is an N×N score matrix and one ONNX TopK per layer, and
onnxruntime's CPU TopK grows with k (k·d reaches 432 in ResGCN-28), so onnxruntime ran the paper's
model slower than eager PyTorch (docs/performance.md, "Eager PyTorch vs onnxruntime"). Here each
`DilatedKnn` exports as one node `ai.onnx.contrib:PointgcnDilatedKnn(features) → (B, N, k)`
with attributes `k` and `dilation`, which onnxruntime-extensions runs as a Python operator: the
eager `graph.knn.knn` (row chunks in worker threads, numpy selection) followed by `dilate`. The
same function as eager, so the neighbours equal eager PyTorch's on the same features exactly,
and it costs what eager's kNN costs; no N×N score matrix stays in memory. What that bought, per
model and load, is in docs/performance.md ("The custom kNN operator").

The domain is onnxruntime-extensions' (its Python operators are registered there). The file
then needs that package (`pip install 'pointgcn[ortx]'`) and pointgcn's Python (the operator
is Python); the metadata `pointgcn.knn` says "custom" so `runtime.make_session` registers the
library, or refuses in one line where it is missing. The default export stays standard opset.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import torch
from torch import nn

from ..errors import InputError, Setting
from ..graph import dilate, export_mode, knn, knn_modules

DOMAIN = "ai.onnx.contrib"
OP_TYPE = "PointgcnDilatedKnn"
STANDARD, CUSTOM = "standard", "custom"   # the `pointgcn.knn` metadata values
PACKAGE = "onnxruntime-extensions"
INSTALL = "pip install 'pointgcn[ortx]'"

_ACTIVE = [False]
# Threads of the operator's kNN during one session run (the predictor's thread count).
_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("knn_threads",
                                                                     default=None)
_REGISTERED: list = []


def extensions_available() -> bool:
    try:
        import onnxruntime_extensions  # noqa: F401  (optional: only custom-kNN files need it)
    except ImportError:
        return False
    return True


def is_active() -> bool:
    """True while `custom_knn_ops` routes the model's graphs through the custom node."""
    return _ACTIVE[0]


def dilated_knn(features: np.ndarray, k: int, dilation: int) -> np.ndarray:
    """The operator's body: eager kNN of `(B, C, N)` float32 features, then the dilation pick
    (eval: every d-th of the k·d nearest) → `(B, N, k)` int64."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    threads = _THREADS.get()
    saved = torch.get_num_threads()
    if threads and threads != saved:
        torch.set_num_threads(threads)
    try:
        with export_mode(False), torch.no_grad():
            idx = knn(x, k * dilation)
        return dilate(idx, k, dilation).contiguous().numpy()
    finally:
        if threads and threads != saved:
            torch.set_num_threads(saved)


@contextlib.contextmanager
def knn_threads(threads: int | None):
    """Within this block, the custom operator's kNN uses `threads` threads."""
    token = _THREADS.set(threads)
    try:
        yield
    finally:
        _THREADS.reset(token)


def require(setting: str | None = None) -> None:
    """Raise a one-line `InputError` when onnxruntime-extensions is not installed; names the
    export setting that asked for the operator, if any."""
    if extensions_available():
        return
    if setting:
        raise InputError("{custom} needs " + f"{PACKAGE} ({INSTALL})",
                         custom=Setting(setting))
    raise InputError("this ONNX model's kNN is pointgcn's custom operator, which needs "
                     f"{PACKAGE} ({INSTALL}); a standard export runs anywhere")


def register(session_options) -> None:
    """Add onnxruntime-extensions' library and our Python operator to `session_options`."""
    require()
    from onnxruntime_extensions import PyOp, get_library_path, onnx_op

    if not _REGISTERED:  # onnxruntime-extensions keeps Python operators process-wide
        _REGISTERED.append(onnx_op(op_type=OP_TYPE, inputs=[PyOp.dt_float],
                                   outputs=[PyOp.dt_int64],
                                   attrs={"k": PyOp.dt_int64, "dilation": PyOp.dt_int64}
                                   )(dilated_knn))
    session_options.register_custom_ops_library(get_library_path())


class _KnnNode(torch.autograd.Function):
    """Traced as one custom node; run (while tracing) as the model's own kNN."""

    @staticmethod
    def forward(ctx, x, k: int, dilation: int):
        return dilate(knn(x, k * dilation), k, dilation)

    @staticmethod
    def symbolic(g, x, k: int, dilation: int):
        out = g.op(f"{DOMAIN}::{OP_TYPE}", x, k_i=k, dilation_i=dilation)
        return out.setType(x.type().with_dtype(torch.int64).with_sizes([None, None, k]))


@contextlib.contextmanager
def custom_knn_ops(model: nn.Module, enabled: bool = True):
    """While exporting inside this block, every `DilatedKnn` of `model` traces as the custom
    node (eager calls, e.g. parity's PyTorch side, run unchanged)."""
    if not enabled:
        yield
        return
    require("custom_knn")
    patched = []
    for m in knn_modules(model):
        if m.backend != "dense":
            raise InputError("the custom kNN operator runs the dense kNN; this model uses "
                             f"knn_backend {m.backend!r}")
        original = m.forward

        def forward(x, m=m, original=original):
            if torch.onnx.is_in_onnx_export():
                return _KnnNode.apply(x, m.k, m.dilation)
            return original(x)
        m.forward = forward  # instance attribute shadows the class method
        patched.append(m)
    old = _ACTIVE[0]
    _ACTIVE[0] = True
    try:
        yield
    finally:
        _ACTIVE[0] = old
        for m in patched:
            del m.forward
