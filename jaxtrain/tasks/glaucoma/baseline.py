"""The reference model: logistic regression on colour histograms and downsampled pixels.

Reported beside the CNN (results.json "baseline") so the margin is visible: a global colour
summary sees pallor and exposure but not the cup's size relative to its disc.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxtrain import losses
from jaxtrain.baselines import fit_logistic_regression
from jaxtrain.tasks.glaucoma import evaluation

BINS = 16
THUMB = 8


def features(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, 3 * BINS + 3 * THUMB**2): per-channel histograms (fractions
    of the image) and an 8x8 block-mean thumbnail scaled to [0, 1]."""
    x = np.asarray(images)
    n, s = x.shape[0], x.shape[1]
    bins = (x.astype(np.int32) * BINS) // 256  # (N, S, S, 3) in [0, BINS)
    hist = np.stack([np.stack([np.bincount(bins[i, ..., c].ravel(), minlength=BINS)
                               for c in range(3)]) for i in range(n)]).reshape(n, -1)
    b = s // THUMB
    thumb = x[:, :b * THUMB, :b * THUMB].reshape(n, THUMB, b, THUMB, b, 3).mean((2, 4))
    return np.concatenate([hist / (s * s), thumb.reshape(n, -1) / 255.0], 1).astype(np.float32)


def logistic_regression_baseline(train_source: Any, test_source: Any) -> dict[str, Any]:
    """Fits on every training image (class-balanced), scores the test images."""
    train = train_source.read_batch(np.arange(len(train_source)))
    test = test_source.read_batch(np.arange(len(test_source)))
    counts = np.bincount(train["label"], minlength=2)
    predict = fit_logistic_regression(features(train["image"]), train["label"], 2,
                                      class_weights=losses.class_weights_from_counts(counts))
    p = predict(features(test["image"]))[:, 1]
    return {"model": f"logistic regression on colour histograms ({BINS} bins per channel) "
                     f"and {THUMB}x{THUMB} downsampled pixels",
            **evaluation.screening_scores(test["label"], p)}
