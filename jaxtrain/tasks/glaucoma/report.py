"""Glaucoma in the run report (`jaxtrain.report` hook): class names, the model's name and the
screening targets on the model comparison. The generic report draws the rest from the saved
`probs`/`label` predictions (ROC with the operating point, threshold sweep, distribution)."""

from __future__ import annotations

from jaxtrain.run_files import RunFiles
from jaxtrain.tasks.glaucoma.airogs import CLASSES

UNIT = "images"
MODEL_NAME = "EfficientNet-B0"
# The screening targets (issue 12): AUC, AIROGS partial AUC, sensitivity at 95% specificity.
TARGETS = {"auc": 0.95, "pauc": 0.85, "sens_at_95_spec": 0.80}
CURVES = ("val/auc", "val/pauc", "val/sens_at_95_spec")


def class_names(run: RunFiles) -> list[str]:
    """AIROGS's classes in label order: no referable glaucoma, referable glaucoma."""
    return list(CLASSES)
