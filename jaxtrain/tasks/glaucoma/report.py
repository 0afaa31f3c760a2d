"""Glaucoma in the run report (`jaxtrain.report` hook): class names, the model's name and the
screening targets on the model comparison. The generic report draws the rest from the saved
`probs`/`label` predictions (ROC with the operating point, threshold sweep, distribution)."""

from __future__ import annotations

from jaxtrain.task import ReportHook
from jaxtrain.tasks.glaucoma.airogs import CLASSES

REPORT = ReportHook(
    unit="images", model_name="EfficientNet-B0",
    # The screening targets (issue 12): AUC, AIROGS partial AUC, sensitivity at 95% specificity.
    targets={"auc": 0.95, "pauc": 0.85, "sens_at_95_spec": 0.80},
    curves=("val/auc", "val/pauc", "val/sens_at_95_spec"),
    class_names=lambda run: list(CLASSES))  # no referable glaucoma, referable glaucoma
