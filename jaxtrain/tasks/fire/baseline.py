"""The reference model: logistic regression on per-window summary statistics.

Reported next to the transformer (results.json "baseline") so its margin over a cheap model
is visible. The summary features deliberately carry no slope or trend: telling a smoulder
from a nuisance plateau by its sustained rise is what the deep model is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtrain import metrics
from jaxtrain.baselines import fit_logistic_regression
from jaxtrain.tasks.fire.layout import CHANNEL_NAMES

SUMMARY_STATS: tuple[str, ...] = ("mean", "std", "min", "max", "last")


def logistic_regression_baseline(train_source: Any, test_source: Any, class_names: Sequence[str],
                                 class_weights: np.ndarray) -> dict[str, Any]:
    """Fits on every training window, scores every test window (results.json "baseline")."""
    train = train_source.read_batch(np.arange(len(train_source)))
    test = test_source.read_batch(np.arange(len(test_source)))
    predict = fit_logistic_regression(summary_features(train["x"]), train["label"],
                                      len(class_names), class_weights=class_weights)
    preds = predict(summary_features(test["x"])).argmax(-1)
    report = metrics.classification_report(test["label"], preds, len(class_names),
                                           class_names=list(class_names))
    return {"model": "logistic regression on per-window summary features "
                     "(mean, std, min, max, last per channel)",
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "report": report}


def summary_features(windows: np.ndarray) -> np.ndarray:
    """Per-window, per-channel mean, std, min, max and last value: (N, T, C) -> (N, 5 * C).

    Columns are stat-major (all channels' means first), see summary_feature_names.
    """
    w = np.asarray(windows)
    if w.ndim != 3 or w.shape[1] == 0:
        raise ValueError(f"windows must be (N, T, C) with T >= 1, got shape {w.shape}")
    # No up-front cast: windows is often a strided view, and a copy would be T times the data.
    stats = [w.mean(1), w.std(1), w.min(1), w.max(1), w[:, -1]]
    return np.concatenate([s.astype(np.float32) for s in stats], axis=1)


def summary_feature_names(channel_names: Sequence[str] = CHANNEL_NAMES) -> list[str]:
    """Column names of summary_features, e.g. ``"smoke_max"``."""
    return [f"{c}_{s}" for s in SUMMARY_STATS for c in channel_names]
