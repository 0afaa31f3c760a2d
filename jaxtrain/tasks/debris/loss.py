"""The training loss of the debris segmenter: Dice + focal + class-weighted cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtrain import losses


def debris_loss(logits: jax.Array, labels: jax.Array, *, class_weights: jax.Array | None,
                dice_weight: float = 0.4, focal_weight: float = 0.4, ce_weight: float = 0.2,
                focal_alpha: float | None = 0.25, focal_gamma: float = 2.0,
                dice_smooth: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The combined loss on (B, H, W, 2) logits and (B, H, W) labels (-1 = ignore).

    * Dice of the debris class over the whole batch (segmentation_models_pytorch's "binary"
      Dice, smoothing `dice_smooth`). With 2 classes softmax(l)[1] = sigmoid(l1 - l0), so the
      binary Dice of the logit difference is exactly the Dice of the softmax debris
      probability.
    * Focal: `-alpha (1 - p_y)^gamma log p_y` with one scalar alpha for both classes (the
      usual PyTorch `alpha * (1 - pt) ** gamma * ce` form a 2-class softmax head implies),
      mean over labelled pixels.
    * Cross-entropy weighted per class (PyTorch's weighted-mean convention).
    Returns (total, {"dice", "focal", "cross_entropy"}).
    """
    mask = labels >= 0
    z = logits[..., 1].astype(jnp.float32) - logits[..., 0].astype(jnp.float32)
    terms = {
        "dice": losses.binary_dice_loss(z, labels == 1, smooth=dice_smooth, mask=mask),
        "focal": losses.softmax_focal_loss(logits, labels, alpha=focal_alpha,
                                           gamma=focal_gamma, mask=mask),
        "cross_entropy": losses.softmax_cross_entropy(logits, labels,
                                                      class_weights=class_weights, mask=mask),
    }
    total = (dice_weight * terms["dice"] + focal_weight * terms["focal"]
             + ce_weight * terms["cross_entropy"])
    return total, terms
