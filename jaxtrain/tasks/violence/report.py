"""Violence in the run report (`jaxtrain.report` hook): class names, the model's name and the
accuracy target on the model comparison. The generic report draws the rest from the saved
predictions (confusion matrices, ROC/PR, threshold sweep, attention over frames)."""

from __future__ import annotations

from jaxtrain.run_files import RunFiles
from jaxtrain.tasks.violence.clips import CLASS_NAMES

UNIT = "clips"
MODEL_NAME = "LSTM-attention"
TARGETS = {"accuracy": 0.90}  # issue 13's test accuracy
CURVES = ("val/accuracy", "val/violent_f1", "val/roc_auc")


def class_names(run: RunFiles) -> list[str]:
    return list(CLASS_NAMES)
