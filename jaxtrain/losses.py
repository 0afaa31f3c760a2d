"""Pure, jittable loss functions (classification, focal, Dice, MSE).

Conventions shared by every loss here:

* Inputs may be any float dtype; all arithmetic is done in float32 (logits are cast with
  ``.astype(jnp.float32)`` first, because bf16 log-softmax / log-sigmoid is unstable).
* Every loss returns a float32 scalar.
* ``mask`` (0/1, bool or float) has the shape of the per-element loss (labels for the softmax
  losses, logits for the sigmoid losses) or broadcasts to it. Masked-out elements contribute
  nothing to numerator or denominator; their labels may hold anything (e.g. ``-1`` padding).
  A fully masked batch yields 0.0 (never NaN) with zero gradient.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = Any  # jax.Array | np.ndarray | python scalars

__all__ = [
    "binary_dice_loss",
    "class_weights_from_counts",
    "class_weights_from_labels",
    "mse",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
]


def _safe_div(num: Array, den: Array) -> Array:
    """``num / den`` where ``den > 0``, else 0 (double-where keeps gradients NaN-free)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _mask_weights(mask: ArrayLike | None, shape: tuple[int, ...]) -> Array:
    """Float32 0/1 weights of ``shape`` (all ones when ``mask`` is None)."""
    if mask is None:
        return jnp.ones(shape, jnp.float32)
    return jnp.broadcast_to(jnp.asarray(mask).astype(jnp.float32), shape)


def _weighted_mean(values: Array, weights: Array) -> Array:
    """sum(weights * values) / sum(weights); 0 when the weights sum to 0."""
    # where() rather than multiply so NaN/inf in masked-out values cannot leak into the sum.
    num = jnp.sum(jnp.where(weights > 0, weights * values, 0.0))
    return _safe_div(num, jnp.sum(weights))


def _gather_class(x: Array, labels: Array) -> Array:
    """x[..., labels] along the last axis (labels must already be in range)."""
    return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _prepare_labels(labels: ArrayLike, num_classes: int) -> Array:
    """int32 labels clipped into range, so padding values (e.g. -1) gather safely.

    Only masked-out entries may be out of range; their weight is 0, so clipping is harmless.
    """
    return jnp.clip(jnp.asarray(labels).astype(jnp.int32), 0, num_classes - 1)


def _log_softmax_labels_weights(logits: ArrayLike, labels: ArrayLike, mask: ArrayLike | None
                                ) -> tuple[Array, Array, Array]:
    """fp32 log-probabilities, checked integer labels and the mask's weights: what every
    softmax loss starts from."""
    logits = jnp.asarray(logits).astype(jnp.float32)
    weights = _mask_weights(mask, logits.shape[:-1])
    labels = _prepare_labels(labels, logits.shape[-1])
    return jax.nn.log_softmax(logits, axis=-1), labels, weights


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
) -> Array:
    """Mean softmax cross-entropy with integer labels.

    Args:
      logits: ``(..., C)`` unnormalised scores.
      labels: ``(...)`` integer class ids in ``[0, C)`` (any value where ``mask`` is 0).
      class_weights: optional ``(C,)`` per-class weights. PyTorch ``F.cross_entropy(weight=w)``
        convention: ``sum_i w[y_i] * l_i / sum_i w[y_i]`` (a weighted mean, *not*
        ``mean(w[y] * l)``).
      label_smoothing: ``eps`` (may be traced); targets become ``(1 - eps) * onehot + eps / C``
        as in torch.
        With class weights the per-element smoothed loss is weighted by the *true* class weight
        ``w[y_i]`` (same normaliser ``sum w[y_i]``). This differs from torch, which weights
        each smoothing term by its own class weight ``w[c]``; without weights (or without
        smoothing) the two agree.
      mask: ``(...)`` 0/1; masked elements are excluded from both sums.

    Returns:
      float32 scalar; 0.0 when every element is masked out.
    """
    log_probs, labels, weights = _log_softmax_labels_weights(logits, labels, mask)
    nll = -_gather_class(log_probs, labels)
    if not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0):
        # -(sum_c q_c log p_c) with q = (1-eps) onehot + eps/C.
        smooth = -jnp.mean(log_probs, axis=-1)
        nll = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    if class_weights is not None:
        w = jnp.asarray(class_weights).astype(jnp.float32)
        weights = weights * w[labels]
    return _weighted_mean(nll, weights)


def class_weights_from_counts(
    counts: ArrayLike, *, power: float = 1.0, normalize: bool = True
) -> np.ndarray:
    """Inverse-frequency class weights ``(total / (C * count_c)) ** power`` (float32 numpy).

    Classes with zero count get weight 0 (they never appear as a target, and ``inf`` would
    poison a weighted loss). ``power=0.5`` gives the softer inverse-sqrt weighting.

    If ``normalize``, the weights are rescaled so their mean over the *data* is 1,
    i.e. ``sum_c count_c * w_c == total``; then the weighted loss keeps the scale of the
    unweighted one. (For ``power=1`` and no empty class this already holds.)
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-D, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("counts must be non-negative")
    total = counts.sum()
    num_classes = counts.shape[0]
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = (total / (num_classes * counts[present])) ** power
    if normalize and total > 0:
        weights *= total / np.sum(counts * weights)
    return weights.astype(np.float32)


def class_weights_from_labels(
    labels: ArrayLike, num_classes: int, *, power: float = 1.0, normalize: bool = True
) -> np.ndarray:
    """:func:`class_weights_from_counts` on the class histogram of integer ``labels``.

    Labels outside ``[0, num_classes)`` (e.g. ``-1`` = unlabelled) are ignored.
    """
    labels = np.asarray(labels).reshape(-1)
    labels = labels[(labels >= 0) & (labels < num_classes)].astype(np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    return class_weights_from_counts(counts, power=power, normalize=normalize)


def sigmoid_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    mask: ArrayLike | None = None,
) -> Array:
    """Mean binary focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` on sigmoid probabilities.

    torchvision / optax / smp convention: ``alpha_t = alpha`` for positives and ``1 - alpha``
    for negatives, so the default ``alpha=0.25`` *down-weights the positive class* (use
    ``alpha=0.75`` to up-weight rare positives). ``alpha=None`` disables the weighting.
    Matches ``optax.sigmoid_focal_loss(...).mean()`` and torchvision's ``reduction="mean"``.

    Args:
      logits: any shape.
      targets: same shape, in ``[0, 1]`` (soft targets allowed).
      mask: broadcastable to ``logits``; mean over unmasked elements.
    """
    x = jnp.asarray(logits).astype(jnp.float32)
    t = jnp.broadcast_to(jnp.asarray(targets).astype(jnp.float32), x.shape)
    log_p = jax.nn.log_sigmoid(x)
    log_q = jax.nn.log_sigmoid(-x)
    ce = -(t * log_p + (1.0 - t) * log_q)
    # log(1 - p_t) = log((1-t) p + t (1-p)) in log space: finite (with finite gradients) even
    # when p_t rounds to 1, unlike (1 - p_t) ** gamma for gamma < 1. log(0) = -inf is fine here.
    log_one_minus_pt = jnp.logaddexp(jnp.log1p(-t) + log_p, jnp.log(t) + log_q)
    loss = ce * jnp.exp(gamma * log_one_minus_pt)
    if alpha is not None:
        loss = (alpha * t + (1.0 - alpha) * (1.0 - t)) * loss
    return _weighted_mean(loss, _mask_weights(mask, x.shape))


def softmax_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float | ArrayLike | None = None,
    gamma: float = 2.0,
    mask: ArrayLike | None = None,
) -> Array:
    """Mean multi-class focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` over samples.

    Keras ``CategoricalFocalCrossentropy`` convention: a scalar ``alpha`` applies to every
    class (it only rescales the loss); a ``(C,)`` vector gives per-class ``alpha_y``;
    ``None`` means 1. The reduction is a plain mean over (unmasked) samples,
    ``mean(alpha_y * ...)``, not normalised by ``sum(alpha_y)`` like weighted CE.
    (kornia's multi-class ``focal_loss`` differs: class 0 gets ``1 - alpha``.)

    Args:
      logits: ``(..., C)``.
      labels: ``(...)`` integer class ids.
      mask: ``(...)`` 0/1.
    """
    log_probs, labels, weights = _log_softmax_labels_weights(logits, labels, mask)
    num_classes = log_probs.shape[-1]
    log_pt = _gather_class(log_probs, labels)
    loss = -log_pt
    # gamma == 0 is plain CE; skipping the modulating factor also skips its graph.
    if not (isinstance(gamma, (int, float)) and gamma == 0):
        # log(1 - p_t) as logsumexp over the other classes: unlike log(-expm1(log_pt)) it stays
        # finite (with finite gradients) when p_t rounds to 1.
        is_true = jax.nn.one_hot(labels, num_classes, dtype=bool)
        log_rest = jax.nn.logsumexp(jnp.where(is_true, -jnp.inf, log_probs), axis=-1)
        loss = loss * jnp.exp(gamma * log_rest)
    if alpha is not None:
        a = jnp.asarray(alpha, dtype=jnp.float32)
        loss = loss * (a[labels] if a.ndim == 1 else a)
    return _weighted_mean(loss, weights)


def binary_dice_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: float = 0.0,
    eps: float = 1e-7,
    per_image: bool = False,
    mask: ArrayLike | None = None,
) -> Array:
    """``1 - Dice`` on sigmoid probabilities, smp formula.

    ``dice = (2 * sum(p t) + smooth) / max(sum(p) + sum(t) + smooth, eps)``.

    * ``per_image=False`` (default, smp ``DiceLoss("binary")`` / monai ``batch=True``): the
      sums run over the whole batch and all pixels -> one Dice.
    * ``per_image=True`` (monai default; ``optax.binary_dice_loss(smooth=0).mean()``): one Dice
      per leading-axis item, then the mean over items that have any unmasked pixel.

    Notes: ``smooth`` here is optax's ``smooth`` times 2 (optax uses ``(2I+2s)/(P+T+2s)``).
    With ``smooth=0`` a group without positive targets has Dice 0 (loss 1, zero gradient);
    smp instead reports 0 loss for a batch without positives. Fully masked -> 0.

    Args:
      logits: ``(B, ...)``.
      targets: same shape, 0/1 (floats allowed).
      mask: broadcastable to ``logits``; masked pixels are dropped from every sum.
    """
    x = jnp.asarray(logits).astype(jnp.float32)
    t = jnp.broadcast_to(jnp.asarray(targets).astype(jnp.float32), x.shape)
    w = _mask_weights(mask, x.shape)
    # where() rather than multiply so garbage (NaN) in padded pixels cannot leak into sums.
    p = jnp.where(w > 0, jax.nn.sigmoid(x), 0.0) * w
    t = jnp.where(w > 0, t, 0.0) * w
    axes = tuple(range(1, x.ndim)) if per_image else None
    inter = jnp.sum(p * t, axis=axes)
    card = jnp.sum(p + t, axis=axes)
    count = jnp.sum(w, axis=axes)
    dice = (2.0 * inter + smooth) / jnp.maximum(card + smooth, eps)
    has_pixels = (count > 0).astype(jnp.float32)
    return _weighted_mean(1.0 - dice, has_pixels)


def mse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Mean squared error over unmasked elements (float32 scalar; 0 if all masked)."""
    pred = jnp.asarray(pred).astype(jnp.float32)
    target = jnp.asarray(target).astype(jnp.float32)
    err = jnp.square(pred - target)
    return _weighted_mean(err, _mask_weights(mask, err.shape))
