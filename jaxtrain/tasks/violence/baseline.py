"""The reference model: logistic regression on the mean frame-difference energy of a clip
(how much the picture changes between sampled frames). Fights move a lot, but so do runners,
dancers and a shaking camera: the margin of the LSTM over this says how much more than
"amount of motion" it learned."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxtrain import metrics
from jaxtrain.baselines import fit_logistic_regression
from jaxtrain.tasks.violence.clips import CLASS_NAMES


def energy_feature(motion: np.ndarray) -> np.ndarray:
    """(N, T-1) per-step energies -> (N, 1) log mean energy."""
    return np.log1p(np.asarray(motion, np.float64).mean(axis=1, keepdims=True))


def motion_baseline(train_motion: np.ndarray, train_labels: np.ndarray,
                    test_motion: np.ndarray, test_labels: np.ndarray,
                    class_weights: np.ndarray) -> dict[str, Any]:
    """Fits on the training clips, scores the test clips (results.json "baseline")."""
    predict = fit_logistic_regression(energy_feature(train_motion), train_labels, 2,
                                      class_weights=class_weights)
    probs = predict(energy_feature(test_motion))
    report = metrics.classification_report(test_labels, probs.argmax(-1), 2,
                                           class_names=CLASS_NAMES, probs=probs)
    return {"model": "logistic regression on log mean frame-difference energy",
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "roc_auc": report.get("roc_auc"), "report": report}
