"""Reliability diagram PNG: accuracy against confidence per bin, before and after the
temperature (a calibrated model's bars sit on the diagonal)."""
from __future__ import annotations

from pathlib import Path

from .plots import _figure, _save


def reliability_png(calibration: dict, out_png, title: str = "") -> Path:
    """`calibration`: the evaluator's record (`reliability_before`, `reliability` rows of
    low/high/points/accuracy/confidence, `ece_before`, `ece_after`, `temperature`)."""
    fig = _figure((900, 450))
    panels = (("reliability_before", "ece_before", "raw logits (T = 1)"),
              ("reliability", "ece_after", f"calibrated (T = {calibration['temperature']:.3g})"))
    for i, (rows_key, ece_key, name) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        rows = calibration[rows_key]
        ax.bar([r["low"] for r in rows], [r["accuracy"] for r in rows],
               width=[r["high"] - r["low"] for r in rows], align="edge", color="#4c72b0",
               edgecolor="white", label="accuracy")
        # each bin's mean confidence at its centre: calibrated where it meets the bar's top
        ax.plot([(r["low"] + r["high"]) / 2 for r in rows], [r["confidence"] for r in rows],
                "_", color="#c44e52", markersize=14, markeredgewidth=2, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE {calibration[ece_key]:.4f}", fontsize=10)
        if i == 0:
            ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out_png)
