"""Tests for jaxtrain.losses: hand-computed values, optax/numpy parity, masks, dtypes, jit.

Losses are called through ``jax.jit`` (one compile per test where possible): eager JAX
compiles every primitive separately, which is far slower on CPU than one jitted program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtrain.losses import (
    binary_dice_loss,
    class_weights_from_counts,
    class_weights_from_labels,
    mse,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)

LN = math.log
# logits = log([1, 2, 5]) -> softmax = [1/8, 2/8, 5/8] exactly.
LOG125 = [LN(1.0), LN(2.0), LN(5.0)]
W5 = np.array([0.5, 1.0, 2.0, 1.0, 3.0], np.float32)  # weights from reference-facts section 4


@functools.cache
def jitted(fn: Callable[..., jax.Array], **static: Any) -> Callable[..., jax.Array]:
    """Cached ``jax.jit(partial(fn, **static))`` so identical calls share one compile."""
    return jax.jit(functools.partial(fn, **static))


def _rand(seed: int, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _labels(seed: int, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=shape).astype(np.int32)


def _mask(seed: int, shape: tuple[int, ...], keep: float = 0.6) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < keep


# ---- independent float64 numpy references


def np_ce(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    x = x.astype(np.float64)
    logp = x - x.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    loss = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    wy = np.ones_like(loss) if w is None else np.asarray(w, np.float64)[y]
    return float((wy * loss).sum() / wy.sum())


def np_sigmoid_focal(x: np.ndarray, t: np.ndarray, alpha: float | None, gamma: float) -> float:
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    a_t = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    return float(np.mean(a_t * (1 - p_t) ** gamma * ce))


def np_dice_loss(x: np.ndarray, t: np.ndarray, smooth: float = 0.0) -> float:
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    return float(1 - (2 * np.sum(p * t) + smooth) / (np.sum(p) + np.sum(t) + smooth))


# --------------------------------------------------------------------------- cross-entropy


def test_ce_hand_computed() -> None:
    logits = np.array([LOG125, [0.0, 0.0, 0.0]], np.float32)
    # sample 0: -log(5/8); sample 1: uniform over 3 classes -> log 3
    expected = (-LN(5 / 8) + LN(3)) / 2
    got = jitted(softmax_cross_entropy)(logits, np.array([2, 0]))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_ce_matches_optax() -> None:
    logits = _rand(0, (6, 7, 5))
    labels = _labels(1, (6, 7), 5)

    @jax.jit
    def both(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        ref = optax.softmax_cross_entropy_with_integer_labels(x, y).mean()
        return softmax_cross_entropy(x, y), ref

    got, ref = both(logits, labels)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_weighted_ce_torch_convention_by_hand() -> None:
    # reference-facts section 4: torch F.cross_entropy(weight=w) = sum(w_y l) / sum(w_y)
    logits = np.zeros((3, 5), np.float32)
    logits[0, 0], logits[1, 2] = 1.0, 2.0  # sample 2 stays uniform
    labels = np.array([0, 2, 4])
    # per-sample CE = -log(e^a / (e^a + 4)) = log(1 + 4 e^-a)
    losses = [LN(1 + 4 * math.exp(-1)), LN(1 + 4 * math.exp(-2)), LN(5)]
    wy = [0.5, 2.0, 3.0]  # W5[labels]
    expected = sum(a * b for a, b in zip(wy, losses, strict=True)) / sum(wy)
    naive = (
        sum(a * b for a, b in zip(wy, losses, strict=True)) / 3
    )  # mean(w_y l): the other convention
    assert abs(expected - naive) > 0.5  # the input really separates the two conventions
    got = jitted(softmax_cross_entropy)(logits, labels, class_weights=W5)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_weighted_ce_scale_invariant_and_uniform_equals_unweighted() -> None:
    logits = _rand(2, (40, 5))
    labels = _labels(3, (40,), 5)

    @jax.jit
    def run(x: jax.Array, y: jax.Array) -> list[jax.Array]:
        return [
            softmax_cross_entropy(x, y, class_weights=W5),
            softmax_cross_entropy(x, y, class_weights=10 * W5),
            softmax_cross_entropy(x, y),
            softmax_cross_entropy(x, y, class_weights=jnp.full(5, 7.0)),
        ]

    w, w10, plain, uniform = run(logits, labels)
    np.testing.assert_allclose(w, np_ce(logits, labels, W5), rtol=1e-5)
    np.testing.assert_allclose(w10, w, rtol=1e-6)
    np.testing.assert_allclose(uniform, plain, rtol=1e-6)


def test_label_smoothing_hand_and_optax() -> None:
    eps = 0.1
    x = np.concatenate([np.array([[*LOG125, 0.0, 0.0]], np.float32), _rand(4, (29, 5))])
    y = np.concatenate([[2], _labels(5, (29,), 5)])

    @jax.jit
    def run(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        targets = optax.smooth_labels(jax.nn.one_hot(y, 5), eps)
        ref = optax.softmax_cross_entropy(x, targets).mean()
        ours_first = softmax_cross_entropy(x[:1, :3], y[:1], label_smoothing=eps)
        return softmax_cross_entropy(x, y, label_smoothing=eps), ref, ours_first

    got, ref, first = run(x, y)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # hand: q = (1-eps) onehot(2) + eps/3, loss = -sum q log p with p = [1/8, 2/8, 5/8]
    q = [eps / 3, eps / 3, 1 - eps + eps / 3]
    expected = -(q[0] * LN(1 / 8) + q[1] * LN(2 / 8) + q[2] * LN(5 / 8))
    assert float(first) == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_with_weights_uses_true_class_weight() -> None:
    eps = 0.2
    logp = [LN(1 / 8), LN(2 / 8), LN(5 / 8)]

    def smoothed(y: int) -> float:
        return -sum(((1 - eps) * (c == y) + eps / 3) * logp[c] for c in range(3))

    # documented convention: each sample's smoothed loss weighted by w[y], normalised by sum w[y]
    expected = (4.0 * smoothed(2) + 1.0 * smoothed(0)) / 5.0
    got = jitted(softmax_cross_entropy, label_smoothing=eps)(
        np.array([LOG125, LOG125], np.float32), np.array([2, 0]), class_weights=[1.0, 1.0, 4.0]
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_ce_mask_excludes_padding_and_garbage_labels() -> None:
    logits = _rand(6, (4, 9, 5))
    labels = _labels(7, (4, 9), 5)
    mask = _mask(8, (4, 9))
    padded = np.where(mask, labels, -1)  # padding labels out of range on purpose
    got = jitted(softmax_cross_entropy)(logits, padded, class_weights=W5, mask=mask)
    np.testing.assert_allclose(got, np_ce(logits[mask], labels[mask], W5), rtol=1e-5)


def test_all_masked_is_zero_with_zero_grad() -> None:
    logits = _rand(9, (3, 4, 5))
    labels = _labels(10, (3, 4), 5)
    targets = (labels > 2).astype(np.float32)
    ce = functools.partial(softmax_cross_entropy, class_weights=W5, label_smoothing=0.1)
    dice_img = functools.partial(binary_dice_loss, per_image=True)
    cases = [(ce, True), (softmax_focal_loss, True)]
    cases += [(f, False) for f in (sigmoid_focal_loss, binary_dice_loss, dice_img, mse)]

    @jax.jit
    def run(x: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        out = []
        zeros = jnp.zeros((3, 4))
        for fn, multiclass in cases:
            inp, tgt = (x, labels) if multiclass else (x[..., 0], targets)
            out.append(jax.value_and_grad(lambda z, f=fn, t=tgt: f(z, t, mask=zeros))(inp))
        return out

    for val, grad in run(logits):
        assert float(val) == 0.0
        assert np.all(np.asarray(grad) == 0.0)


def test_bf16_logits_finite_and_close_to_fp32() -> None:
    logits = _rand(11, (8, 16, 5), scale=8.0)
    labels = _labels(12, (8, 16), 5)
    targets = (labels > 2).astype(np.float32)

    def losses(x: jax.Array) -> jax.Array:
        return jnp.stack(
            [
                softmax_cross_entropy(x, labels),
                softmax_focal_loss(x, labels),
                sigmoid_focal_loss(x[..., 0], targets),
                binary_dice_loss(x[..., 0], targets),
            ]
        )

    @jax.jit
    def run(x_bf16: jax.Array, x32: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return losses(x_bf16), losses(x_bf16.astype(jnp.float32)), losses(x32)

    out, out_rounded, out32 = run(jnp.asarray(logits, dtype=jnp.bfloat16), logits)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(out)))
    # computed in float32 after the cast: only the rounding of the inputs differs
    np.testing.assert_allclose(out, out_rounded, rtol=1e-6)
    np.testing.assert_allclose(out, out32, rtol=2e-2)


# --------------------------------------------------------------------------- class weights


def test_class_weights_from_counts_hand() -> None:
    counts = [10, 30, 0, 60]  # total 100, C = 4
    raw = [100 / (4 * 10), 100 / (4 * 30), 0.0, 100 / (4 * 60)]  # 2.5, .833, 0, .4167
    np.testing.assert_allclose(class_weights_from_counts(counts, normalize=False), raw, rtol=1e-6)
    # sum(count * raw) = 25 + 25 + 0 + 25 = 75 -> rescaled by 100 / 75
    w = class_weights_from_counts(counts)
    np.testing.assert_allclose(w, [r * 100 / 75 for r in raw], rtol=1e-6)
    assert float(np.sum(np.array(counts) * w)) == pytest.approx(100.0, rel=1e-6)
    assert w[2] == 0.0 and np.all(np.isfinite(w))


def test_class_weights_power_and_data_mean_one() -> None:
    counts = np.array([5, 20, 75])
    w_sqrt = class_weights_from_counts(counts, power=0.5, normalize=False)
    np.testing.assert_allclose(w_sqrt, np.sqrt(100 / (3 * counts)), rtol=1e-6)
    w = class_weights_from_counts(counts, power=0.5)
    assert float(np.sum(counts * w) / counts.sum()) == pytest.approx(1.0, rel=1e-6)
    assert w[0] > w[1] > w[2]  # rarer class -> larger weight


def test_class_weights_from_labels_ignores_unlabelled() -> None:
    labels = np.array([[0, 0, 1, -1], [2, 2, 2, 2], [0, -1, 5, 1]])  # -1 and 5 out of range
    w = class_weights_from_labels(labels, 3)
    np.testing.assert_allclose(w, class_weights_from_counts([3, 2, 4]), rtol=1e-6)


# --------------------------------------------------------------------------- sigmoid focal


def test_sigmoid_focal_hand_computed() -> None:
    logits = np.array([0.0, LN(3.0)], np.float32)
    targets = np.array([1.0, 0.0], np.float32)
    # x=0,   t=1: p=.5,  CE=ln2, (1-p_t)^2 = .25,   alpha_t = .25
    # x=ln3, t=0: p=.75, p_t=.25, CE=ln4, (1-p_t)^2 = .5625, alpha_t = .75
    expected = (0.25 * 0.25 * LN(2) + 0.75 * 0.5625 * LN(4)) / 2
    got = jitted(sigmoid_focal_loss)(logits, targets)  # defaults alpha=.25, gamma=2
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_sigmoid_focal_matches_optax_and_numpy() -> None:
    # the reference-facts parity setting: (4,1,16,16) logits*3, ~30% positives
    logits = _rand(16, (4, 1, 16, 16), scale=3.0)
    targets = (np.random.default_rng(17).random((4, 1, 16, 16)) < 0.3).astype(np.float32)
    settings = [(0.25, 2.0), (0.75, 1.5), (None, 2.0)]

    @jax.jit
    def run(x: jax.Array, t: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        ours = [sigmoid_focal_loss(x, t, alpha=a, gamma=g) for a, g in settings]
        # optax only once: its focal loss alone takes ~2 s to compile on CPU
        return ours, optax.sigmoid_focal_loss(x, t, alpha=0.75, gamma=1.5).mean()

    ours, ref = run(logits, targets)
    np.testing.assert_allclose(ours[1], ref, rtol=1e-5)
    for (alpha, gamma), got in zip(settings, ours, strict=True):
        np.testing.assert_allclose(got, np_sigmoid_focal(logits, targets, alpha, gamma), 1e-5)


def test_sigmoid_focal_alpha_convention() -> None:
    fn = jitted(sigmoid_focal_loss)
    x = np.array([0.3], np.float32)
    pos, neg = np.ones(1, np.float32), np.zeros(1, np.float32)
    # alpha weights positives: 0.25 *down*-weights a positive example (3x less than 0.75) ...
    lo, hi = float(fn(x, pos, alpha=0.25)), float(fn(x, pos, alpha=0.75))
    assert lo < hi and hi == pytest.approx(3 * lo, rel=1e-6)
    # ... and weights negatives by 1 - alpha
    assert float(fn(x, neg, alpha=0.25)) > float(fn(x, neg, alpha=0.75))


def test_sigmoid_focal_mask_and_saturation() -> None:
    logits = _rand(18, (5, 7))
    targets = (np.random.default_rng(19).random((5, 7)) < 0.5).astype(np.float32)
    mask = _mask(20, (5, 7), keep=0.5)
    row = np.array([1, 0, 1, 0, 0], bool)
    # wrong and right confident predictions (p_t rounds to 0 or to exactly 1)
    x_sat = np.array([100.0, -100.0, 200.0, -200.0], np.float32)
    t_sat = np.array([0.0, 1.0, 1.0, 0.0], np.float32)

    @jax.jit
    def run(x: jax.Array) -> tuple[jax.Array, ...]:
        sat = jax.value_and_grad(lambda z: sigmoid_focal_loss(z, t_sat, gamma=1.5))(x_sat)
        return (
            sigmoid_focal_loss(x, targets, mask=mask),
            sigmoid_focal_loss(x, targets, mask=row[:, None]),  # (5, 1) broadcasts
            *sat,
        )

    masked, by_row, sat_val, sat_grad = run(logits)
    np.testing.assert_allclose(
        masked, np_sigmoid_focal(logits[mask], targets[mask], 0.25, 2.0), rtol=1e-5
    )
    np.testing.assert_allclose(
        by_row, np_sigmoid_focal(logits[row], targets[row], 0.25, 2.0), rtol=1e-5
    )
    # wrong ones cost ~|x| times alpha_t, right ones 0; all gradients finite
    assert float(sat_val) == pytest.approx((0.75 * 100 + 0.25 * 100) / 4, rel=1e-4)
    assert np.all(np.isfinite(np.asarray(sat_grad)))


# --------------------------------------------------------------------------- softmax focal


def test_softmax_focal_hand_computed() -> None:
    logits = np.array([LOG125, LOG125], np.float32)
    labels = np.array([2, 0])
    # p_t = 5/8 and 1/8
    f2 = -((3 / 8) ** 2) * LN(5 / 8)
    f0 = -((7 / 8) ** 2) * LN(1 / 8)
    fn = jitted(softmax_focal_loss)
    assert float(fn(logits, labels, alpha=1.0)) == pytest.approx((f2 + f0) / 2, rel=1e-6)
    # Keras convention: a scalar alpha multiplies every class -> plain mean(alpha * ...)
    assert float(fn(logits, labels, alpha=0.25)) == pytest.approx(0.25 * (f2 + f0) / 2, rel=1e-6)
    # per-class alpha vector picks alpha_y; still a plain mean over samples
    alpha = np.array([0.1, 0.3, 0.6], np.float32)
    expected = (-0.6 * (3 / 8) * LN(5 / 8) - 0.1 * (7 / 8) * LN(1 / 8)) / 2
    got = fn(logits, labels, alpha=alpha, gamma=1.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_softmax_focal_vs_ce_mask_and_focus() -> None:
    logits = _rand(21, (50, 5))
    labels = _labels(22, (50,), 5)
    mask = np.arange(50) % 3 != 0
    easy = np.array([[4.0, 0.0, 0.0]], np.float32)  # p_t ~ 0.96
    hard = np.array([[0.0, 1.0, 1.0]], np.float32)  # p_t ~ 0.16
    y0 = np.array([0])

    @jax.jit
    def run(x: jax.Array) -> tuple[jax.Array, ...]:
        def ratio(z: jax.Array) -> jax.Array:
            return softmax_focal_loss(z, y0) / softmax_cross_entropy(z, y0)

        return (
            softmax_focal_loss(x, labels, gamma=0.0),
            softmax_cross_entropy(x, labels),
            softmax_focal_loss(x, labels, mask=mask),
            ratio(easy),
            ratio(hard),
        )

    focal0, ce, masked, r_easy, r_hard = run(logits)
    np.testing.assert_allclose(focal0, ce, rtol=1e-6)  # gamma=0, alpha=None is CE
    # masked mean equals the numpy focal loss on the kept rows
    x = logits[mask].astype(np.float64)
    p = np.exp(x - x.max(1, keepdims=True))
    p_t = (p / p.sum(1, keepdims=True))[np.arange(len(x)), labels[mask]]
    np.testing.assert_allclose(masked, np.mean(-((1 - p_t) ** 2) * np.log(p_t)), rtol=1e-5)
    # focusing: easy examples are down-weighted far more than hard ones
    assert float(r_easy) < 0.01 and float(r_hard) > 0.5


def test_softmax_focal_saturated_grad_finite() -> None:
    x = np.array([[200.0, 0.0, 0.0], [0.0, 200.0, 0.0]], np.float32)
    y = np.array([0, 0])
    grad = jax.jit(jax.grad(lambda z, g: softmax_focal_loss(z, y, gamma=g)))
    for gamma in (0.0, 0.5, 2.0):
        assert np.all(np.isfinite(np.asarray(grad(x, gamma))))


# --------------------------------------------------------------------------- dice


def test_binary_dice_hand_computed() -> None:
    logits = np.array([[0.0, LN(3.0)], [LN(3.0), -LN(3.0)]], np.float32)  # p: [.5,.75], [.75,.25]
    targets = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    # image 0: I = .5,         P+T = 1.25 + 1 = 2.25 -> dice 1/2.25
    # image 1: I = .75+.25 = 1, P+T = 1 + 2 = 3     -> dice 2/3
    # batch:   I = 1.5,        P+T = 5.25          -> dice 3/5.25
    batch = jitted(binary_dice_loss)
    assert float(batch(logits, targets)) == pytest.approx(1 - 3 / 5.25, rel=1e-6)
    per_image = jitted(binary_dice_loss, per_image=True)(logits, targets)
    assert float(per_image) == pytest.approx((1 - 1 / 2.25 + 1 - 2 / 3) / 2, rel=1e-6)
    # smooth s: (2I + s) / (P + T + s)
    assert float(batch(logits, targets, smooth=1.0)) == pytest.approx(1 - 4 / 6.25, rel=1e-6)
    # a confident perfect prediction has ~0 loss
    perfect = batch(np.where(targets > 0, 30.0, -30.0).astype(np.float32), targets)
    assert float(perfect) == pytest.approx(0.0, abs=1e-6)


def test_binary_dice_per_image_and_batch() -> None:
    logits = _rand(23, (4, 16, 16), scale=3.0)
    targets = (np.random.default_rng(24).random((4, 16, 16)) < 0.3).astype(np.float32)

    @jax.jit
    def run(x: jax.Array, t: jax.Array) -> tuple[jax.Array, ...]:
        return (
            binary_dice_loss(x, t, per_image=True, smooth=2.0),
            optax.losses.binary_dice_loss(x, t, smooth=1.0).mean(),
            binary_dice_loss(x, t, per_image=True),
            binary_dice_loss(x, t),
        )

    ours_s2, ref_s1, per_image, batch = run(logits, targets)
    # optax (per image) with smooth s means (2I + 2s) / (P + T + 2s), i.e. our smooth = 2 s
    np.testing.assert_allclose(ours_s2, ref_s1, rtol=1e-5)
    # smooth 0: mean of per-image Dice losses (= optax smooth=0, monai default)
    per = [np_dice_loss(logits[i], targets[i]) for i in range(4)]
    np.testing.assert_allclose(per_image, np.mean(per), rtol=1e-5)
    # batch Dice is a single ratio over all images and pixels (smp default)
    np.testing.assert_allclose(batch, np_dice_loss(logits, targets), rtol=1e-5)
    assert abs(float(batch) - float(per_image)) > 1e-4  # the two reductions really differ


def test_binary_dice_mask() -> None:
    logits = _rand(25, (3, 8, 8))
    targets = (np.random.default_rng(26).random((3, 8, 8)) < 0.4).astype(np.float32)
    mask = _mask(27, (3, 8, 8), keep=0.7)
    mask[2] = False  # a fully padded image is left out of the per-image mean
    logits_nan = np.where(mask, logits, np.nan)  # garbage in the padding must not leak

    @jax.jit
    def run(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return (
            binary_dice_loss(x, targets, mask=mask),
            binary_dice_loss(x, targets, mask=mask, per_image=True),
        )

    batch, per_image = run(logits_nan)
    np.testing.assert_allclose(batch, np_dice_loss(logits[mask], targets[mask]), rtol=1e-5)
    per = [np_dice_loss(logits[i][mask[i]], targets[i][mask[i]]) for i in (0, 1)]
    np.testing.assert_allclose(per_image, np.mean(per), rtol=1e-5)


# --------------------------------------------------------------------------- mse


def test_mse_hand_and_mask() -> None:
    pred = np.array([1.0, 2.0, 4.0], np.float32)
    target = np.array([0.0, 2.0, 1.0], np.float32)
    fn = jitted(mse)
    assert float(fn(pred, target)) == pytest.approx((1 + 0 + 9) / 3)
    assert float(fn(pred, target, mask=np.array([1, 1, 0]))) == pytest.approx((1 + 0) / 2)
