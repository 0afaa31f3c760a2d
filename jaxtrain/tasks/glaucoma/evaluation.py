"""Screening scores of referable glaucoma, as the AIROGS challenge computes them.

* `auc`: ROC AUC.
* `pauc`: the challenge's alpha, `sklearn.metrics.roc_auc_score(y, p, max_fpr=0.1)`: the
  McClish-standardized partial AUC over specificity 0.9-1 (0.5 = chance, 1 = perfect; a
  constant score gives exactly 0.5). Not the raw area (0.045) nor area / 0.1 (0.45).
* `sens_at_95_spec`: the challenge's beta: on `roc_curve(..., drop_intermediate=False)`, the
  highest TPR among the points with specificity >= 0.95. No interpolation.
* With the validation predictions as `tuning`: the threshold where validation reaches 95%
  specificity (`threshold_at_specificity`), and test sensitivity / specificity at it
  (`tuned_*`), the operating point a screening deployment would use.
All are computed here in numpy (float64) and tested against scikit-learn.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from jaxtrain import metrics

Outputs = dict[str, np.ndarray]
TARGET_SPECIFICITY = 0.95
MAX_FPR = 0.1


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) over every distinct score, highest first, with the (0, 0)
    point first (threshold +inf): sklearn's `roc_curve(drop_intermediate=False)`."""
    y = np.asarray(y).reshape(-1) > 0
    s = np.asarray(score, np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each tie group
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s[last]]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thresholds


def partial_auc(y: np.ndarray, score: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """McClish-standardized partial AUC over FPR <= max_fpr (sklearn's `max_fpr`)."""
    fpr, tpr, _ = roc_curve(y, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    stop = np.searchsorted(fpr, max_fpr, "right")
    # One point at FPR = max_fpr, interpolated between its neighbours, ends the curve.
    x_interp, y_interp = [fpr[stop - 1], fpr[stop]], [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    area = float(np.trapezoid(tpr, fpr))
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1 + (area - min_area) / (max_area - min_area))


def sensitivity_at_specificity(y: np.ndarray, score: np.ndarray,
                               specificity: float = TARGET_SPECIFICITY) -> float:
    """The highest TPR among ROC points with specificity >= `specificity` (AIROGS beta)."""
    fpr, tpr, _ = roc_curve(y, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    ok = (1 - fpr) >= specificity - sys.float_info.epsilon
    return float(tpr[ok][-1])


def threshold_at_specificity(y: np.ndarray, score: np.ndarray,
                             specificity: float = TARGET_SPECIFICITY) -> float:
    """The lowest threshold (refer if score >= it) whose specificity on (y, score) is still
    >= `specificity`: the operating point of `sensitivity_at_specificity`."""
    fpr, _, thresholds = roc_curve(y, score)
    if np.isnan(fpr).any():
        return float("nan")
    ok = (1 - fpr) >= specificity - sys.float_info.epsilon
    t = float(thresholds[ok][-1])
    # Only the (0, 0) point qualifies (threshold +inf, refer nobody): the smallest finite
    # threshold above every score says the same and stays valid JSON.
    return t if np.isfinite(t) else float(np.nextafter(np.max(score), np.inf))


def rates_at(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity and specificity when referring score >= threshold."""
    y = np.asarray(y).reshape(-1) > 0
    refer = np.asarray(score).reshape(-1) >= threshold
    pos, neg = y.sum(), (~y).sum()
    return {"sensitivity": float((refer & y).sum() / pos) if pos else float("nan"),
            "specificity": float((~refer & ~y).sum() / neg) if neg else float("nan")}


def screening_scores(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC, pAUC (McClish, FPR <= 0.1) and sensitivity at 95% specificity."""
    return {"auc": float(metrics.roc_auc(np.asarray(y) > 0, np.asarray(score, np.float64))),
            "pauc": partial_auc(y, score), "sens_at_95_spec": sensitivity_at_specificity(y, score)}


def score(outputs: Outputs, tuning: Outputs | None = None) -> tuple[dict[str, float], dict]:
    """The task's evaluator (`jaxtrain.task.Evaluator`) over `probs` (N, 2) and `label`."""
    y, p = outputs["label"], outputs["probs"][:, 1]
    flat = screening_scores(y, p)
    report: dict[str, Any] = {"images": len(y), "referable": int((y == 1).sum())}
    if tuning is not None:
        t = threshold_at_specificity(tuning["label"], tuning["probs"][:, 1])
        at = rates_at(y, p, t)
        flat |= {"tuned_threshold": t, "tuned_sensitivity": at["sensitivity"],
                 "tuned_specificity": at["specificity"]}
        report["threshold"] = {"chosen": t, "chosen_on": "validation, 95% specificity",
                               "val": rates_at(tuning["label"], tuning["probs"][:, 1], t)}
    return flat, report
