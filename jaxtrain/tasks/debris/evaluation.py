"""Scores of the debris class, from per-patch probability histograms (`task.predict_fn`).

Pixels are pooled over a split: precision, recall, F1 and IoU at threshold 0.5 (`debris_*`),
at the split's own best-F1 threshold (`best_*`), and the max predicted probability. Scoring
test with the validation predictions as `tuning` adds the scores at the threshold with the
best validation F1 (`tuned_*`); results.json then holds both operating points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxtrain import metrics

Outputs = dict[str, np.ndarray]


def _scores_at(sweep: dict[str, np.ndarray], threshold_index: int) -> dict[str, float]:
    return {k: float(sweep[k][threshold_index]) for k in ("precision", "recall", "f1", "iou")}


def _score_split(outputs: Outputs, threshold_index: int | None = None
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    """Flat metrics and report of one split; `tuned_*` at `threshold_index` when given."""
    pos = outputs["pos_hist"].sum(0).astype(np.int64)
    neg = outputs["neg_hist"].sum(0).astype(np.int64)
    k = pos.shape[0]
    sweep = metrics.threshold_sweep(pos, neg)
    best = metrics.best_threshold(sweep, "f1")
    flat = {f"debris_{m}": v for m, v in _scores_at(sweep, k // 2).items()}
    flat |= {f"best_{m}": v for m, v in _scores_at(sweep, best).items()}
    flat["best_threshold"] = best / k
    flat["max_prob"] = float(outputs["max_prob"].max()) if len(outputs["max_prob"]) else 0.0
    if threshold_index is not None:
        flat |= {f"tuned_{m}": v for m, v in _scores_at(sweep, threshold_index).items()}
        flat["tuned_threshold"] = threshold_index / k
    report = {"pixels": {"debris": int(pos.sum()), "not_debris": int(neg.sum())},
              "patches": len(outputs["max_prob"]),
              "sweep": {m: np.asarray(sweep[m]).tolist()
                        for m in ("thresholds", "precision", "recall", "f1", "iou")}}
    return flat, report


def score(outputs: Outputs, tuning: Outputs | None = None
          ) -> tuple[dict[str, float], dict[str, Any]]:
    """The task's evaluator (`jaxtrain.task.Evaluator`): the split's scores and, with the
    validation predictions as `tuning`, the scores at the validation-best-F1 threshold."""
    if tuning is None:
        return _score_split(outputs)
    val_flat, _ = _score_split(tuning)
    k = tuning["pos_hist"].shape[-1]
    chosen = round(val_flat["best_threshold"] * k)
    flat, report = _score_split(outputs, chosen)
    report["threshold"] = {"chosen": chosen / k, "chosen_on": "validation best F1",
                           "val_f1_at_chosen": val_flat["best_f1"],
                           "val_f1_at_0.5": val_flat["debris_f1"]}
    return flat, report
