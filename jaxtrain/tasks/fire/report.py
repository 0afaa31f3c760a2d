"""Fire's pictures in the run report (`jaxtrain.report` hook): the ensemble's confusion
matrix and feature importance (when the run trained the ensemble, tasks/fire/ensemble.py),
and the risk score against the labelled risk.

The generic report already draws the class distribution, the transformer's and baseline's
confusion matrices, ROC/PR curves, per-area bars and the model comparison (with the
ensemble's members and votes from `models`) against `TARGETS`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxtrain import plots
from jaxtrain.report import Figure, Out
from jaxtrain.report import plots as rp
from jaxtrain.run_files import RunFiles
from jaxtrain.task import ReportHook
from jaxtrain.tasks.fire.layout import CLASS_NAMES

IMPORTANCE_PNG = os.path.join("ensemble", "importance.png")  # written by ensemble.importance


def class_names(run: RunFiles) -> list[str]:
    """From results.json (runs since class names were recorded), else the layout's."""
    names = (run.results or {}).get("data", {}).get("class_names")
    return list(names) if names else list(CLASS_NAMES)


def models(run: RunFiles) -> dict[str, dict[str, float]]:
    """The ensemble's members and votes (test metrics) for the model comparison."""
    ensemble = (run.results or {}).get("ensemble") or {}
    chosen = ensemble.get("chosen")
    return {f"ensemble {name}" + (" (chosen)" if name == chosen else ""): dict(values)
            for name, values in ensemble.get("summary", {}).items()
            if name != "transformer"}  # the run's own model, already a bar


def figures(run: RunFiles, out: Out) -> list[Figure]:
    figs = []
    ensemble: dict[str, Any] = (run.results or {}).get("ensemble") or {}
    chosen = ensemble.get("chosen")
    cm = ensemble.get("models", {}).get(chosen, {}).get("test_report", {}).get(
        "confusion_matrix")
    if cm is not None:
        path = plots.confusion_matrix_png(out.path("confusion_ensemble.png"), np.asarray(cm),
                                          class_names(run),
                                          f"{run.name}: test confusion (ensemble: {chosen})")
        figs.append(out.figure(f"Confusion matrix, test (ensemble: {chosen})", "Fire", path,
                               "The ensemble candidate chosen on validation macro F1."))
    importance = os.path.join(run.workdir, IMPORTANCE_PNG)
    if os.path.exists(importance):
        figs.append(out.figure("Feature importance", "Fire", importance,
                               "Permutation importance on validation (drop in macro F1) "
                               "for the transformer's channels and the tree members' "
                               "features; written by the ensemble stage."))
    test = run.predictions("test")
    if test is not None and "risk" in test and "risk_target" in test:
        figs.append(out.figure("Risk score", "Fire", _risk_png(run, test, out),
                               "Predicted risk against the labelled risk, per test window."))
    return figs


def _risk_png(run: RunFiles, test: dict[str, np.ndarray], out: Out) -> str:
    names = class_names(run)
    fig = rp.new_figure(6, 5)
    ax = fig.add_subplot()
    for c, name in enumerate(names):
        keep = test["label"] == c
        ax.scatter(test["risk_target"][keep], test["risk"][keep], s=6, alpha=0.5,
                   color=rp.COLORS[c % len(rp.COLORS)], label=f"{name} (n={int(keep.sum())})")
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect")
    mae = float(np.abs(test["risk"] - test["risk_target"]).mean())
    ax.set(xlabel="labelled risk (0-1)", ylabel="predicted risk (0-1)",
           title=f"{run.name}: risk score, test (MAE {mae:.3f})", xlim=(-0.02, 1.02),
           ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, markerscale=2)
    return rp.save(fig, out.path("risk.png"))


REPORT = ReportHook(
    unit="windows", model_name="transformer",
    # The reference plan's acceptable accuracy (94-96 %), drawn on the model comparison.
    targets={"accuracy": 0.94},
    curves=("val/accuracy", "val/macro_f1", "val/fire_recall", "val/warning_recall"),
    class_names=class_names, models=models, figures=figures)
