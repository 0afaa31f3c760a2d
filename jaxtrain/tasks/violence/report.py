"""Violence in the run report (`jaxtrain.report` hook): class names, the model's name and the
accuracy target on the model comparison. The generic report draws the rest from the saved
predictions (confusion matrices, ROC/PR, threshold sweep, attention over frames)."""

from __future__ import annotations

from jaxtrain.task import ReportHook
from jaxtrain.tasks.violence.clips import CLASS_NAMES

REPORT = ReportHook(unit="clips", model_name="LSTM-attention",
                    targets={"accuracy": 0.90},  # issue 13's test accuracy
                    curves=("val/accuracy", "val/violent_f1", "val/roc_auc"),
                    class_names=lambda run: list(CLASS_NAMES))
