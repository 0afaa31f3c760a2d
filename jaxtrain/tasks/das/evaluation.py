"""Scoring DAS predictions per window and per recording, and the test confusion matrices.

File decision (`file_decision`): a file holds an event when some window's event probability
1 - p_noise reaches the event threshold; its class is the event class with the larger
probability summed over the file's windows; otherwise it is "noise".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtrain import metrics
from jaxtrain.task import Evaluator, Metrics, Outputs
from jaxtrain.tasks.das.schema import CLASS_NAMES, NOISE


def file_decision(probs: np.ndarray, *, event_threshold: float = 0.5) -> tuple[int, np.ndarray]:
    """One decision for a file from its windows' class probabilities (N, 3).

    Rule: the file holds an event when at least one window's event probability
    (1 - p_noise) reaches `event_threshold`; its class is then the event class with the larger
    summed probability over all windows (noise windows add little to either sum, so the
    windows that saw the event decide). Otherwise the file is "noise".
    Returns (class id, scores (3,)): scores = [sum p_eq, sum p_blast] normalised to the
    event share, and the largest window event probability's complement for noise.
    """
    probs = np.asarray(probs, np.float64).reshape(-1, len(CLASS_NAMES))
    if not len(probs):
        raise ValueError("file_decision needs at least one window")
    event = 1.0 - probs[:, NOISE]
    peak = float(event.max())
    sums = probs[:, :NOISE].sum(0)
    share = sums / max(float(sums.sum()), 1e-12)
    scores = np.array([share[0] * peak, share[1] * peak, 1.0 - peak])
    if peak < event_threshold:
        return NOISE, scores
    return int(np.argmax(sums)), scores


def aggregate_files(file_ids: np.ndarray, probs: np.ndarray, *, event_threshold: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`file_decision` for every file id present: (file ids, decisions, scores (F, 3))."""
    file_ids = np.asarray(file_ids).reshape(-1)
    ids = np.unique(file_ids)
    decisions = np.zeros(len(ids), np.int32)
    scores = np.zeros((len(ids), len(CLASS_NAMES)))
    for k, f in enumerate(ids):
        decisions[k], scores[k] = file_decision(probs[file_ids == f],
                                                event_threshold=event_threshold)
    return ids, decisions, scores


def _flat(report: dict[str, Any], prefix: str) -> Metrics:
    """accuracy, macro_f1, roc_auc_ovr and <class>_{precision,recall,f1}, each `prefix`ed."""
    auc = report.get("roc_auc", {}).get("macro")
    flat = {prefix + "accuracy": report["accuracy"], prefix + "macro_f1": report["macro_f1"],
            prefix + "roc_auc_ovr": float("nan") if auc is None else auc}
    for name in CLASS_NAMES:
        for stat in ("precision", "recall", "f1"):
            flat[f"{prefix}{name}_{stat}"] = report["per_class"][name][stat]
    return flat


def window_metrics(outputs: Outputs, tuning: Outputs | None = None
                   ) -> tuple[Metrics, dict[str, Any]]:
    """Per-window classification: flat metrics and report {"window": classification report
    (confusion matrix rows = true)}."""
    labels, probs = outputs["label"], outputs["probs"]
    report = metrics.classification_report(labels, probs.argmax(-1), len(CLASS_NAMES),
                                           class_names=CLASS_NAMES, probs=probs)
    return _flat(report, ""), {"window": report}


def file_evaluator(file_class: np.ndarray, file_names: Sequence[str],
                   event_threshold: float) -> Evaluator:
    """Per-file classification of the windows' predictions aggregated by `file_decision`.

    Reads outputs "probs" and "file_id". `file_class[f]` is file id f's true class,
    `file_names[f]` its name. Flat metrics are the window ones prefixed with ``file_``; the
    report holds {"file": classification report, "files": one row per file, "file_rule": the
    rule in words}.
    """

    def evaluate(outputs: Outputs, tuning: Outputs | None = None
                 ) -> tuple[Metrics, dict[str, Any]]:
        ids, decisions, scores = aggregate_files(outputs["file_id"], outputs["probs"],
                                                 event_threshold=event_threshold)
        truth = file_class[ids]
        report = metrics.classification_report(truth, decisions, len(CLASS_NAMES),
                                               class_names=CLASS_NAMES, probs=scores)
        rows = [{"file": file_names[f], "true": CLASS_NAMES[truth[j]],
                 "predicted": CLASS_NAMES[decisions[j]],
                 "scores": [round(float(s), 4) for s in scores[j]]} for j, f in enumerate(ids)]
        return _flat(report, "file_"), {
            "file": report, "files": rows,
            "file_rule": f"event if max window (1 - p_noise) >= {event_threshold}; "
                         "class = larger summed p_earthquake / p_quarry_blast"}

    return evaluate
