"""How violence predictions are scored (`task.Evaluator`), and the per-clip table.

Outputs of `predict_fn`: "probs" (N, 2), "label" (N,), "attention" (N, T), "index" (N,) (row
of the clip in the task's name list). Scores: accuracy, precision/recall/F1 of the violent
class, ROC-AUC, the confusion matrix, and the loss the model trains on ("loss"), so early
stopping can watch validation loss as the seed did.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxtrain import files, metrics
from jaxtrain.evaluate import load_predictions
from jaxtrain.run_files import PREDICTIONS_DIR
from jaxtrain.task import Evaluator, Metrics, Outputs
from jaxtrain.tasks.violence.clips import CLASS_NAMES
from jaxtrain.tasks.violence.loss import violence_loss


def classification(class_weights: np.ndarray, alpha: float, gamma: float,
                   label_smoothing: float) -> Evaluator:
    """accuracy, violent_{precision,recall,f1}, roc_auc, loss; report with the confusion
    matrix (rows = true nonviolent/violent)."""

    def evaluate(outputs: Outputs, tuning: Outputs | None = None
                 ) -> tuple[Metrics, dict[str, Any]]:
        probs, labels = outputs["probs"], outputs["label"].astype(np.int32)
        report = metrics.classification_report(labels, probs.argmax(-1), 2,
                                               class_names=CLASS_NAMES, probs=probs)
        logits = np.log(np.clip(probs, 1e-12, 1.0))  # log-probs: softmax gives probs back
        loss = float(violence_loss(jnp.asarray(logits), jnp.asarray(labels),
                                   jnp.asarray(class_weights), alpha=alpha, gamma=gamma,
                                   label_smoothing=label_smoothing))
        v = report["per_class"]["violent"]
        flat = {"accuracy": report["accuracy"], "violent_precision": v["precision"],
                "violent_recall": v["recall"], "violent_f1": v["f1"],
                "macro_f1": report["macro_f1"], "loss": loss}
        if report.get("roc_auc") is not None:
            flat["roc_auc"] = report["roc_auc"]
        report["loss"] = loss
        return flat, report

    return evaluate


def write_clip_table(path: str, names: Sequence[str], outputs: Outputs, top: int = 3) -> str:
    """CSV, one row per clip: name, label, violence probability, decision, correct, the
    `top` frames with the most attention (sampled-frame indices) and all attention weights."""
    with files.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        t = outputs["attention"].shape[1]
        w.writerow(["clip", "label", "prob_violent", "decision", "correct", "top_frames",
                    *[f"attention_{k}" for k in range(t)]])
        for i, idx in enumerate(outputs["index"]):
            p = float(outputs["probs"][i, 1])
            att = outputs["attention"][i]
            label, decision = CLASS_NAMES[int(outputs["label"][i])], CLASS_NAMES[int(p >= 0.5)]
            w.writerow([names[int(idx)], label, f"{p:.4f}", decision, label == decision,
                        " ".join(map(str, np.argsort(-att)[:top])),
                        *[f"{a:.4f}" for a in att]])
    return path


def clip_table_stage(names: Sequence[str]):
    """`Task.after_training`: the test split's per-clip CSV (predictions/test_clips.csv),
    from the saved predictions; results.json "test_clips" is its path."""

    def write(workdir: str, variables: dict[str, Any]) -> dict[str, str]:
        del variables  # the table reads the saved predictions only
        outputs = load_predictions(workdir, "test")
        return {"test_clips": write_clip_table(
            os.path.join(workdir, PREDICTIONS_DIR, "test_clips.csv"), names, outputs)}

    return write
