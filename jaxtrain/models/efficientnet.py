"""EfficientNet-B0 in Flax linen, layer for layer Keras's `keras.applications.EfficientNetB0`.

Every module carries its Keras layer's name (`stem_conv`, `block6b_project_bn`, `top_bn`, ...),
so a Keras weights file maps onto the parameters by name (`keras_port.py` of the glaucoma
system) and "the last N Keras layers" map onto parameter paths (`keras_layer_names`).
What makes it numerically Keras's (checked against Keras in tests/test_glaucoma_keras.py):

* input in 0..255: Rescaling(1/255) then Normalization((x - mean) / max(sqrt(var), 1e-7)),
  whose mean/variance are model state (`input_norm`; identity until ImageNet weights are
  loaded); ImageNet weights also bring Keras's extra division by sqrt(std)
  (`imagenet_input_fix`, keras-team/keras#49930);
* stride-2 convolutions zero-pad with `correct_pad` ((0, 1) on even sizes for k=3) and run
  VALID; stride-1 ones use SAME;
* BatchNorm epsilon 1e-3, momentum 0.99; swish; squeeze-excite on `filters_in * 0.25`
  channels with biased 1x1 convs; drop-connect `0.2 * b / 16` for the b-th block (a
  per-sample Dropout with inverse scaling, Keras's noise_shape (None, 1, 1, 1)).

`grad_from` cuts the backward pass: the backbone's output depends on parameters before that
Keras layer only through `stop_gradient`, so XLA drops their backward computation entirely
(frozen layers cost a forward pass only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# (kernel, repeats, filters_in, filters_out, expand_ratio, strides): Keras DEFAULT_BLOCKS_ARGS
BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
SE_RATIO = 0.25
TOP_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras's EfficientNet initializers (variance scaling, fan_out, truncated/untruncated normal).
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
DENSE_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def correct_pad(size: Sequence[int], kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's `imagenet_utils.correct_pad`: zero padding before a stride-2 VALID conv."""
    adjust = (1 - size[0] % 2, 1 - size[1] % 2)
    c = kernel // 2
    return (c - adjust[0], c), (c - adjust[1], c)


def block_names() -> list[str]:
    """Keras's block prefixes in order: block1a, block2a, block2b, ..., block7a."""
    return [f"block{i + 1}{chr(97 + j)}" for i, b in enumerate(BLOCKS) for j in range(b[1])]


def _block_configs() -> list[tuple[str, int, int, int, int, int]]:
    """(name, kernel, filters_in, filters_out, expand, strides) of each of the 16 blocks."""
    out, names = [], iter(block_names())
    for kernel, repeats, f_in, f_out, expand, strides in BLOCKS:
        for j in range(repeats):
            out.append((next(names), kernel, f_out if j else f_in, f_out, expand,
                        1 if j else strides))
    return out


def keras_layer_names(pooling: bool = True) -> list[str]:
    """Every layer of Keras's EfficientNetB0(include_top=False, pooling="avg"), in Keras's
    order (238 with the pooling layer); the parameterized ones are this module's submodules
    (`param_path`)."""
    names = ["input_layer", "rescaling", "normalization", "stem_conv_pad", "stem_conv",
             "stem_bn", "stem_activation"]
    for name, _, f_in, f_out, expand, strides in _block_configs():
        p = name + "_"
        if expand != 1:
            names += [p + "expand_conv", p + "expand_bn", p + "expand_activation"]
        if strides == 2:
            names.append(p + "dwconv_pad")
        names += [p + "dwconv", p + "bn", p + "activation", p + "se_squeeze", p + "se_reshape",
                  p + "se_reduce", p + "se_expand", p + "se_excite", p + "project_conv",
                  p + "project_bn"]
        if strides == 1 and f_in == f_out:  # residual; drop-connect > 0 on every such block
            names += [p + "drop", p + "add"]
    names += ["top_conv", "top_bn", "top_activation"]
    return names + (["avg_pool"] if pooling else [])


def param_path(keras_name: str) -> tuple[str, ...]:
    """Where a Keras layer's weights live in this module: `block6b_project_bn` ->
    ("block6b", "project_bn"); `stem_conv` -> ("stem_conv",)."""
    if keras_name.startswith("block"):
        return keras_name[:7], keras_name[8:]
    return (keras_name,)


class EfficientNetB0(nn.Module):
    """Keras EfficientNetB0 without top: (N, H, W, 3) in 0..255 -> (N, 1280) pooled features
    (or the (N, h, w, 1280) map with `pool=False`). BatchNorm statistics live in
    "batch_stats", the input normalization's mean/variance in "input_norm"."""

    drop_connect_rate: float = 0.2
    imagenet_input_fix: bool = False  # Keras applies it when built with weights="imagenet"
    depthwise: str = "auto"  # DepthwiseConv.impl; auto: "taps" on CPU, "conv" elsewhere
    bn_momentum: float = BN_MOMENTUM  # Keras's 0.99; short runs from scratch want less
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, grad_from: str | None = None,
                 pool: bool = True) -> jax.Array:
        """`grad_from`: the first Keras layer that is differentiated (see `GRAD_CUTS`);
        None differentiates everything."""
        if grad_from is not None and grad_from not in GRAD_CUTS:
            raise ValueError(f"grad_from={grad_from!r}: not a main-path conv/BN layer")
        mean = self.variable("input_norm", "mean", lambda: jnp.zeros((3,), jnp.float32))
        var = self.variable("input_norm", "variance", lambda: jnp.ones((3,), jnp.float32))
        x = x.astype(jnp.float32) / 255.0
        x = (x - mean.value) / jnp.maximum(jnp.sqrt(var.value), 1e-7)
        if self.imagenet_input_fix:
            x = x / jnp.sqrt(jnp.asarray(IMAGENET_STD, jnp.float32))
        x = x.astype(self.dtype)
        cut = _GradCut(grad_from)
        depthwise = self.depthwise
        if depthwise == "auto":
            depthwise = "taps" if jax.default_backend() == "cpu" else "conv"
        pad = correct_pad(x.shape[1:3], 3)
        x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
        x = nn.Conv(32, (3, 3), strides=2, padding="VALID", use_bias=False,
                    kernel_init=CONV_INIT, dtype=self.dtype, name="stem_conv")(
            cut(x, "stem_conv"))
        x = nn.swish(_bn(x, train, "stem_bn", self.dtype, cut, self.bn_momentum))
        total = len(block_names())
        for b, (name, kernel, f_in, f_out, expand, strides) in enumerate(_block_configs()):
            x = _MBConv(f_in, f_out, kernel, strides, expand, self.drop_connect_rate * b / total,
                        depthwise, self.bn_momentum, self.dtype, name=name)(x, train, cut)
        x = nn.Conv(TOP_FILTERS, (1, 1), padding="SAME", use_bias=False, kernel_init=CONV_INIT,
                    dtype=self.dtype, name="top_conv")(cut(x, "top_conv"))
        x = nn.swish(_bn(x, train, "top_bn", self.dtype, cut, self.bn_momentum))
        return jnp.mean(x, axis=(1, 2)) if pool else x


class _GradCut:
    """Where the backward pass stops: the input of the Keras layer `start` is detached
    (stop_gradient), and so is the residual input of the block `start` lies in, so no
    gradient reaches any parameter before `start`. None: no cut."""

    def __init__(self, start: str | None):
        self.start, self.reached = start, start is None

    def __call__(self, x: jax.Array, name: str) -> jax.Array:
        if not self.reached and name == self.start:
            self.reached = True
            return jax.lax.stop_gradient(x)
        return x


def _bn(x: jax.Array, train: bool, name: str, dtype: Any, cut: Any, momentum: float
        ) -> jax.Array:
    return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                        epsilon=BN_EPSILON, dtype=dtype, name=name)(cut(x, name))


class _MBConv(nn.Module):
    """Keras's `block`: expand 1x1, depthwise kxk, squeeze-excite, project 1x1, residual.
    Its layers are named like Keras's without the block prefix (the module's own name)."""

    filters_in: int
    filters_out: int
    kernel: int
    strides: int
    expand: int
    drop_rate: float
    depthwise: str
    bn_momentum: float
    dtype: Any

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool, cut: _GradCut) -> jax.Array:
        dt, p = self.dtype, self.name + "_"
        entered_before_cut = not cut.reached
        filters = self.filters_in * self.expand
        x = inputs
        if self.expand != 1:
            x = nn.Conv(filters, (1, 1), padding="SAME", use_bias=False, kernel_init=CONV_INIT,
                        dtype=dt, name="expand_conv")(cut(x, p + "expand_conv"))
            x = nn.swish(_bn(x, train, "expand_bn", dt, _Local(cut, p), self.bn_momentum))
        if self.strides == 2:
            pad = correct_pad(x.shape[1:3], self.kernel)
            x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
        else:  # SAME for an odd kernel at stride 1
            x = jnp.pad(x, ((0, 0), (self.kernel // 2,) * 2, (self.kernel // 2,) * 2, (0, 0)))
        x = DepthwiseConv(self.kernel, self.strides, self.depthwise, dt, name="dwconv")(
            cut(x, p + "dwconv"))
        x = nn.swish(_bn(x, train, "bn", dt, _Local(cut, p), self.bn_momentum))
        se = jnp.mean(x, axis=(1, 2), keepdims=True)
        se = nn.swish(nn.Conv(max(1, int(self.filters_in * SE_RATIO)), (1, 1),
                              kernel_init=CONV_INIT, dtype=dt, name="se_reduce")(se))
        se = nn.sigmoid(nn.Conv(filters, (1, 1), kernel_init=CONV_INIT, dtype=dt,
                                name="se_expand")(se))
        x = nn.Conv(self.filters_out, (1, 1), padding="SAME", use_bias=False,
                    kernel_init=CONV_INIT, dtype=dt, name="project_conv")(
            cut(x * se, p + "project_conv"))
        x = _bn(x, train, "project_bn", dt, _Local(cut, p), self.bn_momentum)
        if self.strides == 1 and self.filters_in == self.filters_out:
            if train and self.drop_rate > 0:
                keep = 1.0 - self.drop_rate
                mask = jax.random.bernoulli(self.make_rng("dropout"), keep,
                                            (x.shape[0], 1, 1, 1))
                x = jnp.where(mask, x / keep, 0).astype(x.dtype)
            # The residual bypasses the cut when the cut lies inside this block.
            x = x + (jax.lax.stop_gradient(inputs) if entered_before_cut else inputs)
        return x


class DepthwiseConv(nn.Module):
    """A VALID depthwise convolution (no bias) with Keras's semantics; kernel (k, k, 1, C),
    the layout of `nn.Conv(feature_group_count=C)`.

    impl "conv" is XLA's grouped convolution (cuDNN on GPU); "taps" sums k*k shifted,
    strided slices times per-channel weights. On XLA:CPU the grouped convolution's backward
    pass is 7-17x slower than the taps (measured on the 2-core dev machine, BUILD_NOTES).
    """

    kernel: int
    strides: int = 1
    impl: str = "conv"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, k, s = x.shape[-1], self.kernel, self.strides
        w = self.param("kernel", CONV_INIT, (k, k, 1, c), jnp.float32).astype(self.dtype)
        x = x.astype(self.dtype)
        if self.impl == "conv":
            return jax.lax.conv_general_dilated(x, w, (s, s), "VALID",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=c)
        if self.impl != "taps":
            raise ValueError(f"depthwise impl must be conv or taps, got {self.impl!r}")
        ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
        out = None
        for i in range(k):
            for j in range(k):
                tap = x[:, i:i + (ho - 1) * s + 1:s, j:j + (wo - 1) * s + 1:s, :] * w[i, j, 0]
                out = tap if out is None else out + tap
        return out


class _Local:
    """`cut` seen from inside a block: local layer names get the block prefix."""

    def __init__(self, cut: _GradCut, prefix: str):
        self.cut, self.prefix = cut, prefix

    def __call__(self, x: jax.Array, name: str) -> jax.Array:
        return self.cut(x, self.prefix + name)


# Layers where a backward pass may start: main-path convolutions and BatchNorms (an SE conv
# would leave the main path differentiable around it).
GRAD_CUTS: frozenset[str] = frozenset(
    n for n in keras_layer_names() if n.endswith(("_conv", "_bn", "dwconv"))
    and "_se_" not in n)


def param_count(variables: Any) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(variables))
