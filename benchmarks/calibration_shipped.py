"""Temperature and ECE of a shipped (or any) model on its own validation split, honestly.

  PYTHONPATH=. python benchmarks/calibration_shipped.py modelnet10 [--resamples 1000]
  PYTHONPATH=. python benchmarks/calibration_shipped.py synth-rooms data.root=… --record

The validation split is the one the model's run config (seed, val_fraction) carves out of
training, so the model never trained on it. Reports: the temperature fitted on all of it with
its in-sample ECE, and a two-fold estimate — T fitted on one half of the shapes, ECE measured
on the other half, both ways — which is what a user should expect on new data of that kind.
Also OA with its bootstrap 95% interval over shapes. Prints JSON. With `--record` (a shipped
model's name) the in-sample temperature is stored in the shipped checkpoint's meta, manifest
and card (models.weights.record_calibration; the weights are untouched).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from pointgcn.config import apply_overrides
from pointgcn.data.build import build_datasets
from pointgcn.engine.bootstrap import bootstrap_ci
from pointgcn.engine.calibration import calibration_report, fit_temperature, flatten_logits
from pointgcn.engine.evaluator import _batches, item_matrices
from pointgcn.engine.task_metrics import predict_labels
from pointgcn.export.serve import open_model
from pointgcn.models.weights import record_calibration


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("overrides", nargs="*",
                   help="key=value overrides of the run config, e.g. data.root=… where the "
                        "model's data were regenerated")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--record", action="store_true",
                   help="store the temperature in the shipped model (weights/)")
    args = p.parse_args()
    loaded = open_model(args.model)
    cfg = apply_overrides(loaded.run_config, args.overrides)
    data = build_datasets(cfg, ("val",), progress=False)
    start = time.perf_counter()
    logits, labels = [], []
    with torch.no_grad():
        for feats, y in _batches(data.val, args.batch):
            logits.append(loaded.module(torch.from_numpy(feats)).float().numpy())
            labels.append(y)
    seconds = time.perf_counter() - start
    z, y = np.concatenate(logits), np.concatenate(labels)
    task, n = loaded.module.cfg["task"], loaded.module.cfg["n_classes"]
    items = np.stack(item_matrices(predict_labels(task, z), y, n))
    t = fit_temperature(z, y)
    halves = np.random.default_rng(0).permutation(len(z)) % 2 == 0  # by shape / block
    folds = []
    for fit, test in ((halves, ~halves), (~halves, halves)):
        tf = fit_temperature(z[fit], y[fit])
        folds.append(calibration_report(z[test], y[test], tf))
    zf, yf = flatten_logits(z, y)
    out = {"model": args.model, "data": f"validation split of {cfg['data']['dataset']} "
                                        f"({cfg['data'].get('root')}), seed {cfg.get('seed', 0)}",
           "items": int(len(z)), "points": int(len(yf)),
           "in_sample": calibration_report(z, y, t),
           "two_fold": {"temperatures": [f["temperature"] for f in folds],
                        "ece_before": float(np.mean([f["ece_before"] for f in folds])),
                        "ece_after": float(np.mean([f["ece_after"] for f in folds])),
                        "folds": folds},
           "ci": bootstrap_ci(items, args.resamples, 0), "forward_seconds": round(seconds, 1),
           "threads": torch.get_num_threads()}
    print(json.dumps(out, indent=2))
    if args.record:
        two = out["two_fold"]
        kind = {"classification": "shapes", "segmentation": "blocks"}.get(task, "shapes")
        record = {**out["in_sample"],
                  "fitted_on": f"{len(z)} validation {kind} ({out['data']}; never trained on)",
                  "measured_on": f"the same {kind} (in-sample); fitted on one half and measured "
                                 f"on the other, both ways: ECE {two['ece_before']:.4f} → "
                                 f"{two['ece_after']:.4f} (benchmarks/calibration_shipped.py)",
                  "two_fold": two}
        entry = record_calibration(args.model, record)
        print(f"recorded temperature {t:.4f} in {entry['file']} (sha256 {entry['sha256']})")


if __name__ == "__main__":
    main()
