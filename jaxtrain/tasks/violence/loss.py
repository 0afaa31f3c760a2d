"""The seed's loss: focal loss (alpha 0.25, gamma 2) on labels smoothed by 0.1, with class
weights, which the seed computed but never passed to training.

Per clip, as Keras' `CategoricalFocalCrossentropy` computes it on soft targets:
``sum_c alpha * (1 - p_c)^gamma * (-y_c log p_c)`` with ``y = onehot * (1 - s) + s / C``
(0.05 / 0.95 for s = 0.1 and two classes), then ``mean_i(w[label_i] * loss_i)``: Keras'
class_weight becomes a sample weight and the batch loss is the sum over the batch size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def focal_loss_per_clip(logits: jax.Array, labels: jax.Array, *, alpha: float = 0.25,
                        gamma: float = 2.0, label_smoothing: float = 0.1) -> jax.Array:
    """(B, C) logits, (B,) int labels -> (B,) focal loss on smoothed one-hot targets."""
    logits = logits.astype(jnp.float32)
    c = logits.shape[-1]
    y = jax.nn.one_hot(labels, c) * (1.0 - label_smoothing) + label_smoothing / c
    log_p = jax.nn.log_softmax(logits, axis=-1)
    # (1 - p)^gamma from log p without cancellation: -expm1(log p) = 1 - p.
    modulating = (-jnp.expm1(log_p)) ** gamma
    return jnp.sum(alpha * modulating * -y * log_p, axis=-1)


def violence_loss(logits: jax.Array, labels: jax.Array, class_weights: jax.Array, *,
                  alpha: float, gamma: float, label_smoothing: float,
                  mask: jax.Array | None = None) -> jax.Array:
    """Class-weighted mean of `focal_loss_per_clip` (masked clips count for nothing)."""
    per_clip = focal_loss_per_clip(logits, labels, alpha=alpha, gamma=gamma,
                                   label_smoothing=label_smoothing)
    w = jnp.asarray(class_weights, jnp.float32)[labels]
    if mask is None:
        return jnp.mean(w * per_clip)
    m = mask.astype(jnp.float32)
    return jnp.sum(m * w * per_clip) / jnp.maximum(jnp.sum(m), 1.0)


def balanced_class_weights(labels: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """sklearn's 'balanced' weights n / (C * count_c), as the seed computed them (a class
    absent from training gets 0)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)
