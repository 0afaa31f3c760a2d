"""How fire predictions are scored: classes, areas and the risk score (`task.Evaluator`s).

Each evaluator reads one split's `predict_fn` outputs ("probs", "label", "area", "risk",
"risk_target") and returns flat scalars (logs, history, early stopping) and its part of
the results.json report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtrain import metrics
from jaxtrain.task import Evaluator, Metrics, Outputs


def classification(class_names: Sequence[str]) -> Evaluator:
    """accuracy, macro_f1, <class>_{precision,recall,f1}, roc_auc_ovr; the full
    classification report (per class, confusion matrix, ROC AUC)."""
    names = list(class_names)

    def evaluate(outputs: Outputs, tuning: Outputs | None = None
                 ) -> tuple[Metrics, dict[str, Any]]:
        probs = outputs["probs"]
        report = metrics.classification_report(outputs["label"], probs.argmax(-1), len(names),
                                               class_names=names, probs=probs)
        flat = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        for name in names:
            for stat in ("precision", "recall", "f1"):
                flat[f"{name}_{stat}"] = report["per_class"][name][stat]
        if isinstance(report.get("roc_auc"), dict):  # one-vs-rest: three or more classes
            flat["roc_auc_ovr"] = report["roc_auc"]["macro"]
        return flat, report

    return evaluate


def per_area(area_names: Sequence[str], num_classes: int) -> Evaluator:
    """area_accuracy/<area>; report "per_area": {area: {accuracy, macro_f1, count}}."""
    names = list(area_names)

    def evaluate(outputs: Outputs, tuning: Outputs | None = None
                 ) -> tuple[Metrics, dict[str, Any]]:
        report = metrics.per_group_report(outputs["label"], outputs["probs"].argmax(-1),
                                          outputs["area"], len(names), num_classes,
                                          group_names=names)
        return ({f"area_accuracy/{name}": report[name]["accuracy"] for name in names},
                {"per_area": report})

    return evaluate


def risk_mae(outputs: Outputs, tuning: Outputs | None = None) -> tuple[Metrics, dict[str, Any]]:
    """Mean absolute error of the risk score against the labelled risk ("risk_mae")."""
    mae = float(np.abs(outputs["risk"] - outputs["risk_target"]).mean())
    return {"risk_mae": mae}, {"risk_mae": mae}
