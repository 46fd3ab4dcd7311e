"""PyTorch ↔ onnxruntime parity of an exported model, in two parts.

static graph  The model with every kNN graph turned into a graph *input*: PyTorch's own
              neighbour indices are recorded on one batch and fed to an exported copy, so the
              whole network (every conv, norm, block and head, at full depth) is compared
              number for number: max abs error and max relative error (÷ max |logit|).
labels        The real exported model (kNN inside) against PyTorch on held-out clouds at three
              point counts (≈ N/2, N, 2N, each ≥ k × largest dilation, which also proves N is
              dynamic): the share of equal per-point (segmentation) or per-shape
              (classification) labels. Deep dynamic-kNN nets are not bit-stable across
              runtimes — a last-bit difference flips a near-tie neighbour and the flip
              propagates — so raw logits may differ there while labels must agree.
graphs        Per kNN layer, on the nominal clouds: the share of the neighbours PyTorch picked
              that onnxruntime picked too (each on its own features), where flips start and
              how they spread (a report, not a gate: labels are the gate).

The label gate. Deep dynamic-kNN nets are chaotic in the last bits: PyTorch against itself
with float64 kNN scores (same weights, same clouds) moves 1–4% of a room model's labels, so
no float32 runtime can promise 99% agreement on them. A label row passes when onnxruntime
agrees on ≥ `min_agreement` of all labels, or — the model's own sensitivity, not an export
fault — on ≥ `min_agreement` of the labels PyTorch is sure of (top-1 minus top-2 softmax
probability ≥ SURE_MARGIN; at least SURE_SHARE of them) while overall it stays within
REFERENCE_SLACK of that float64 reference. Measured on the shipped synth-rooms (synthetic
blocks, N 1024–4096, two seeds): onnxruntime 98.0–99.6% overall against a float64 reference
of 98.1–100%, and 99.6–100% on the 79–98% of points with margin ≥ 0.2; an export that flips
sure labels still fails, and so does a random-weight ResGCN-28 (chaotic: 65–73% overall,
PyTorch against itself 76–85%, next to no sure labels).

Held-out clouds are the caller's (`check_data`: the user's .npy/.npz of `(B, C, N)` features,
or procedural ones of the model's kind that `pointgcn export` draws from
data/synthetic/check_clouds.py), else random ones shaped like training data: xyz uniform in
[−1, 1] (the normalised block/shape range), other channels uniform in [0, 1] (colours,
normalised room coordinates).
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..engine.device import resolve_device, to_device
from ..errors import FormatError, InputError
from ..graph import float64_scores, knn_modules, min_points
from ..nn import deq_layers, unrolled
from .runtime import INPUT_NAME, OUTPUT_NAME, OnnxPredictor, providers_for
from .tracing import trace_to_onnx

MIN_AGREEMENT = 0.99
SURE_MARGIN = 0.2       # softmax top-1 − top-2 of PyTorch's logits: a label the model is sure of
REFERENCE_SLACK = 0.02  # how far below PyTorch's own float64-kNN agreement onnxruntime may be
SURE_SHARE = 0.5        # the rule speaks only for a model sure of at least this share of labels
REL_TOL = 1e-4
CLS_BATCH = 8  # per-shape labels: enough shapes for a percentage to mean much


def random_clouds(batch: int, channels: int, points: int, seed: int = 0) -> np.ndarray:
    """`(B, C, N)` float32: xyz in [−1, 1], other channels in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, channels, points))
    x[:, :min(3, channels)] = rng.uniform(-1.0, 1.0, (batch, min(3, channels), points))
    return x.astype(np.float32)


def load_check_data(path: str | Path, in_channels: int) -> np.ndarray:
    """User clouds for the parity check: `.npy`/`.npz` with `(B, C, N)` or `(C, N)` features."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"check data not found: {path}")
    if path.suffix not in (".npy", ".npz"):
        raise InputError(f"{path}: check data must be .npy or .npz features (B, C, N)")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            key = next((k for k in ("features", "data", "x") if k in data.files), data.files[0])
            data = data[key]
    except (ValueError, OSError, IndexError) as e:
        raise FormatError(f"{path}: not a readable numpy array file ({e})") from e
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != in_channels:
        raise InputError(f"{path}: check data must be features (B, {in_channels}, N), "
                         f"got shape {tuple(np.shape(data))}")
    if not np.isfinite(x).all():
        raise InputError(f"{path}: check data contains NaN or inf")
    return x


def parity_sizes(points: int, least: int) -> list[int]:
    """Three distinct point counts around `points` (≈ N/2, N, 2N), none below `least`."""
    n = max(points, least)
    sizes = sorted({max(least, n // 2), n, 2 * n})
    if len(sizes) < 3:
        sizes = sorted({sizes[0], (sizes[0] + sizes[-1]) // 2, sizes[-1]})
    return sizes


def check_inputs(points: int, least: int, in_channels: int, batch: int, seed: int = 0,
                 check_data: np.ndarray | None = None) -> list[np.ndarray]:
    """Held-out feature batches at three point counts (subsets of the user's clouds if given)."""
    if check_data is None:
        return [random_clouds(batch, in_channels, n, seed + i)
                for i, n in enumerate(parity_sizes(points, least))]
    have = check_data.shape[2]
    if have < least:
        raise InputError(f"check data has {have} points per cloud; the model needs ≥ {least}")
    rng = np.random.default_rng(seed)
    sizes = [n for n in parity_sizes(points, least) if n <= have]
    if len(sizes) < 3 and have not in sizes:  # clouds smaller than 2N: use all their points
        sizes.append(have)
    while len(sizes) < 3 and sizes[0] // 2 >= least:  # and halve below for the third size
        sizes.insert(0, sizes[0] // 2)
    return [check_data[:, :, np.sort(rng.choice(have, n, replace=False))] for n in sizes]


class GivenGraphs(nn.Module):
    """A copy of `model` whose kNN modules return graphs passed in as extra inputs, in call
    order — the network without its data-dependent neighbour search."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self._queue: list[torch.Tensor] = []
        for module in knn_modules(self.model):
            module.forward = self._next_graph  # instance attribute shadows the class method

    def _next_graph(self, x: torch.Tensor) -> torch.Tensor:
        if not self._queue:
            raise InputError("the model built more kNN graphs than were recorded")
        return self._queue.pop(0)

    def forward(self, x: torch.Tensor, *graphs: torch.Tensor) -> torch.Tensor:
        self._queue = list(graphs)
        return self.model(x)


def record_graphs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """PyTorch's output on `x` and every kNN graph it built, in call order."""
    graphs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: graphs.append(out))
             for m in knn_modules(model)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, graphs


def _graph_io(logits: torch.Tensor, graphs: list) -> tuple[list[str], dict]:
    """Names of the recorded graphs as ONNX inputs/outputs, and every tensor's dynamic axes."""
    names = [f"graph_{i}" for i in range(len(graphs))]
    axes = {INPUT_NAME: {0: "batch", 2: "points"}, OUTPUT_NAME: _output_axes(logits)}
    axes.update({n: {0: "batch", 1: "points"} for n in names})
    return names, axes


def static_graph_parity(model: nn.Module, x: np.ndarray, *, opset: int = 17,
                        exporter: str = "legacy", threads: int | None = None,
                        workdir: str | Path | None = None) -> dict:
    """Export the given-graph copy, feed it PyTorch's graphs, compare logits elementwise."""
    xt = torch.from_numpy(x)
    ref, graphs = record_graphs(model, xt)
    names, axes = _graph_io(ref, graphs)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "static_graph.onnx"
        trace_to_onnx(GivenGraphs(model), (xt, *graphs), path, input_names=[INPUT_NAME, *names],
                      output_names=[OUTPUT_NAME], dynamic_axes=axes, opset=opset,
                      exporter=exporter)
        sess = OnnxPredictor(path, threads=threads, providers=["CPUExecutionProvider"]).session
        feeds = {INPUT_NAME: x, **{n: g.numpy() for n, g in zip(names, graphs)}}
        got = sess.run([OUTPUT_NAME], feeds)[0]
    ref = ref.numpy()
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    return {"points": int(x.shape[2]), "batch": int(x.shape[0]), "graphs": len(graphs),
            "max_abs": err, "max_rel": err / max(scale, 1e-12), "max_logit": scale}


class GraphsOut(nn.Module):
    """A copy of `model` that returns its logits and every kNN graph it built, in call order:
    exported, it shows which neighbours onnxruntime picked at each layer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, graphs = record_graphs(self.model, x)
        return (out, *graphs)


def neighbour_agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Two `(B, N, k)` graphs: the share of equal (point, rank) entries and of shared
    neighbours (|A_i ∩ B_i| / k, averaged over points)."""
    shared = (a.unsqueeze(-1) == b.unsqueeze(-2)).any(-1).float().mean()
    return {"positions": float((a == b).float().mean()), "sets": float(shared)}


def graph_agreement(model: nn.Module, x: np.ndarray, *, opset: int = 17,
                    exporter: str = "legacy", threads: int | None = None,
                    workdir: str | Path | None = None) -> list[dict]:
    """Per kNN layer, the neighbours PyTorch and onnxruntime picked on `x`, each runtime on its
    own features (so a flip's effect on later layers shows): see `neighbour_agreement`."""
    xt = torch.from_numpy(x)
    out, ref = record_graphs(model, xt)
    names, axes = _graph_io(out, ref)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "graphs_out.onnx"
        trace_to_onnx(GraphsOut(model), (xt,), path, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME, *names], dynamic_axes=axes, opset=opset,
                      exporter=exporter)
        sess = OnnxPredictor(path, threads=threads, providers=["CPUExecutionProvider"]).session
        got = sess.run(names, {INPUT_NAME: x})
    mods = knn_modules(model)
    rows = []
    for i, (r, g) in enumerate(zip(ref, got)):
        row = {"layer": i, **neighbour_agreement(r, torch.from_numpy(g))}
        if len(mods) == len(ref):  # each module builds one graph (DeepGCN, NAS cells)
            row.update(k=mods[i].k, dilation=mods[i].dilation)
        rows.append(row)
    return rows


def label_agreement(model: nn.Module, predictor, inputs: list[np.ndarray],
                    device: torch.device = torch.device("cpu")) -> list[dict]:
    """Per point count: share of equal argmax labels and max |logit difference| (PyTorch on
    `device`, where `model` is), and PyTorch's own label agreement with float64 neighbour
    scores: how far labels move when only the last bits of the kNN scores do, which bounds
    what any other float32 runtime can reach on a deep dynamic-graph model."""
    rows = []
    for x in inputs:
        xt = to_device(torch.from_numpy(x), device)
        with torch.no_grad():
            ref = model(xt).float().cpu().numpy()
            with float64_scores():
                precise = model(xt).float().cpu().numpy()
        got = predictor(x)
        same = ref.argmax(1) == got.argmax(1)
        self_same = ref.argmax(1) == precise.argmax(1)
        sure = softmax_margin(ref) >= SURE_MARGIN
        rows.append({"points": int(x.shape[2]), "batch": int(x.shape[0]),
                     "labels": int(same.size), "agreement": float(same.mean()),
                     "max_abs": float(np.abs(ref - got).max()),
                     "float64_knn_agreement": float(self_same.mean()),
                     "sure_share": float(sure.mean()),
                     "sure_agreement": float(same[sure].mean()) if sure.any() else None})
    return rows


def softmax_margin(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 softmax probability over the class axis (1) of (B, C[, N]) logits."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2]


def label_verdict(row: dict, min_agreement: float) -> str | None:
    """Why one label row fails the gate (module doc), or None when it passes."""
    if row["agreement"] >= min_agreement:
        return None
    sure, floor = row.get("sure_agreement"), row["float64_knn_agreement"] - REFERENCE_SLACK
    if (sure is not None and sure >= min_agreement and row["agreement"] >= floor
            and row["sure_share"] >= SURE_SHARE):
        return None
    why = (f"label agreement {100 * row['agreement']:.2f}% < {100 * min_agreement:.2f}% at "
           f"N={row['points']}")
    if sure is None or row["sure_share"] < SURE_SHARE:
        return why + (f" (and PyTorch is sure of only {100 * row['sure_share']:.1f}% of the "
                      f"labels: softmax margin ≥ {SURE_MARGIN})")
    return why + (f" (labels PyTorch is sure of: {100 * sure:.2f}%; PyTorch itself with "
                  f"float64 kNN scores: {100 * row['float64_knn_agreement']:.2f}%)")


def check_batch(task: str, batch: int) -> int:
    """Clouds per parity batch: per-shape labels need enough shapes for a percentage."""
    return max(batch, CLS_BATCH) if task == "classification" else batch


def check_parity(model: nn.Module, onnx_path: str | Path, *, points: int, batch: int = 2,
                 check_data: np.ndarray | None = None, data_name: str | None = None,
                 seed: int = 0,
                 min_agreement: float = MIN_AGREEMENT, rel_tol: float = REL_TOL,
                 opset: int = 17, exporter: str = "legacy", threads: int | None = None,
                 device: str | None = "cpu", provider: str | None = None) -> dict:
    """Both parity parts for an exported model; `passed` False lists why in `failures`.
    The static graph is compared exactly on the CPU (the exporter's correctness); labels as
    deployed: PyTorch on `device` against onnxruntime on `provider` (default: following
    `device`)."""
    model = model.eval()
    least = min_points(model)
    batch = check_batch(model.cfg.get("task"), batch)
    inputs = check_inputs(points, least, model.cfg["in_channels"], batch, seed, check_data)
    nominal = min(inputs, key=lambda x: abs(x.shape[2] - points))
    static = static_graph_parity(model, nominal, opset=opset, exporter=exporter,
                                 threads=threads, workdir=Path(onnx_path).parent)
    graphs = graph_agreement(model, nominal, opset=opset, exporter=exporter, threads=threads,
                             workdir=Path(onnx_path).parent)
    place = resolve_device(device)
    session = OnnxPredictor(onnx_path, threads=threads, providers=providers_for(provider, device),
                            calibrated=False)  # the graph's own logits, as the module's
    try:
        labels = label_agreement(model.to(place), session, inputs, place)
    finally:
        model.cpu()
    failures = []
    if not static["max_rel"] <= rel_tol:
        failures.append(f"static-graph relative error {static['max_rel']:.2e} > {rel_tol:.0e} "
                        f"at N={static['points']}")
    failures += [why for why in (label_verdict(row, min_agreement) for row in labels) if why]
    return {"static_graph": static, "labels": labels, "graphs": graphs, "device": str(place),
            "provider": session.providers[0], "min_agreement": min_agreement,
            "rel_tol": rel_tol,
            "data": data_name or ("given" if check_data is not None else "random"),
            "passed": not failures, "failures": failures}


def unroll_gap(model: nn.Module, inputs: list[np.ndarray]) -> dict:
    """How far the exported (unrolled) equilibrium layers are from the solved ones: on each
    check batch, the model with its solver vs with `export_iters` Picard steps (CPU)."""
    rows = []
    layers = deq_layers(model)
    for x in inputs:
        xt = torch.from_numpy(x)
        with torch.no_grad():
            with unrolled(model, False):
                solved = model(xt).numpy()
            stats = [dict(m.stats.get("forward", {})) for m in layers]
            with unrolled(model):
                steps = model(xt).numpy()
        err = float(np.abs(solved - steps).max())
        rows.append({"points": int(x.shape[2]), "solver": stats,
                     "label_agreement": float((solved.argmax(1) == steps.argmax(1)).mean()),
                     "max_abs": err, "max_rel": err / max(float(np.abs(solved).max()), 1e-12)})
    return {"export_iters": [m.options["export_iters"] for m in layers],
            "unrolled": "the ONNX file runs export_iters damped Picard steps from zero instead "
                        "of the Anderson solve; parity above compares it with PyTorch running "
                        "the same steps", "vs_solved": rows}


def format_parity(parity: dict) -> str:
    s = parity["static_graph"]
    lines = [f"static graph  N={s['points']}: max abs {s['max_abs']:.2e}, "
             f"max rel {s['max_rel']:.2e} (tolerance {parity['rel_tol']:.0e}, "
             f"{s['graphs']} graphs given)"]
    for row in parity["labels"]:
        lines.append(f"labels        N={row['points']}: {100 * row['agreement']:.2f}% of "
                     f"{row['labels']} agree (max |Δlogit| {row['max_abs']:.2e}; PyTorch "
                     f"with float64 kNN scores: {100 * row['float64_knn_agreement']:.2f}%)")
        if row.get("sure_agreement") is not None and row["agreement"] < parity["min_agreement"]:
            lines.append(f"              {100 * row['sure_agreement']:.2f}% of the "
                         f"{100 * row['sure_share']:.0f}% PyTorch is sure of (softmax margin "
                         f"≥ {SURE_MARGIN})")
    if parity.get("graphs"):
        g = parity["graphs"]
        worst = min(g, key=lambda r: r["sets"])
        lines.append(f"neighbours    N={s['points']}: {len(g)} graphs, onnxruntime picks "
                     f"PyTorch's neighbours for {100 * np.mean([r['sets'] for r in g]):.2f}% "
                     f"(least {100 * worst['sets']:.2f}% at layer {worst['layer']})")
    if parity.get("deq"):
        d = parity["deq"]
        worst = min(d["vs_solved"], key=lambda r: r["label_agreement"])
        solver = worst["solver"][0] if worst["solver"] else {}
        lines.append(f"deq           exported as {d['export_iters'][0]} Picard steps (PyTorch "
                     f"solves: {solver.get('iterations')} iterations, residual "
                     f"{solver.get('residual', float('nan')):.1e}); unrolled vs solved labels "
                     f"{100 * worst['label_agreement']:.2f}% equal at N={worst['points']}, "
                     f"max rel Δ {max(r['max_rel'] for r in d['vs_solved']):.1e}")
    by_sure = any(r["agreement"] < parity["min_agreement"] for r in parity["labels"])
    lines.append("parity        " + (("passed" + (" (labels by the sure-label rule: within "
                                                  "the model's own float64 sensitivity)"
                                                  if by_sure else ""))
                                     if parity["passed"]
                                     else "FAILED: " + "; ".join(parity["failures"])))
    return "\n".join(lines)


def _output_axes(out: torch.Tensor) -> dict:
    return {0: "batch", 2: "points"} if out.dim() == 3 else {0: "batch"}
