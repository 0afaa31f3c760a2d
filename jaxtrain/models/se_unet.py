"""The marine-debris U-Net with squeeze-and-excitation blocks, in Flax (NHWC).

Encoder of 4 levels (w, 2w, 4w, 8w channels; w = `base_width`, 64 in the reference design) and a 16w
bottleneck, each a double 3x3 conv + BatchNorm + ReLU block followed by an SE block, 2x2 max
pooling between levels. Decoder: 2x2 stride-2 transposed conv up-sampling, concatenation with
the encoder skip, a double conv block (SE on the deepest decoder level only, as the reference
diagram shows). Spatial dropout (a whole channel at a time, PyTorch's Dropout2d) closes every
block. Head: an extra 3x3 conv (w/2) + BN + ReLU, then a 1x1 conv to the class logits.

At w=64 this has 31,270,750 parameters (`param_count` below gives PyTorch's count of the same
layers; tests check both agree). Why transposed convs: the reference's "31.3M" only fits 2x2
transposed convs (upsample + 3x3 conv would be ~34.8M, upsample + 1x1 ~29M).
Input height/width must be multiples of 16 (4 poolings).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class SEBlock(nn.Module):
    """Squeeze (global average pool) and excite (FC-ReLU-FC-sigmoid), then rescale channels."""

    ratio: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2))
        s = nn.relu(nn.Dense(max(c // self.ratio, 1), dtype=self.dtype, name="fc1")(s))
        s = nn.sigmoid(nn.Dense(c, dtype=self.dtype, name="fc2")(s))
        return x * s[:, None, None, :]


class ConvBlock(nn.Module):
    """(3x3 conv -> BN -> ReLU) x 2, optional SE, channel dropout."""

    features: int
    dropout: float = 0.2
    se_ratio: int = 0  # 0 = no SE block
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        for i in range(2):
            # No conv bias: the BatchNorm that follows has its own shift.
            x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                        name=f"conv{i + 1}")(x)
            # PyTorch BatchNorm2d defaults (eps 1e-5, running-stat momentum 0.1).
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype, name=f"bn{i + 1}")(x)
            x = nn.relu(x)
        if self.se_ratio:
            x = SEBlock(self.se_ratio, self.dtype, name="se")(x)
        # broadcast over H, W: one Bernoulli per (sample, channel), also far cheaper on CPU.
        return nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(x)


class SEUNet(nn.Module):
    num_classes: int = 2
    base_width: int = 64
    dropout: float = 0.2
    bottleneck_dropout: float = 0.2
    se_ratio: int = 16
    dtype: Any = jnp.float32  # compute dtype; params stay float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        """x: (B, H, W, bands) normalised reflectance -> float32 logits (B, H, W, classes)."""
        if x.shape[1] % 16 or x.shape[2] % 16:
            raise ValueError(f"SEUNet needs H and W divisible by 16, got {x.shape[1:3]}")
        w = self.base_width
        block = dict(se_ratio=self.se_ratio, dtype=self.dtype)
        h = x.astype(self.dtype)
        skips = []
        for level, mult in enumerate((1, 2, 4, 8)):
            h = ConvBlock(w * mult, self.dropout, name=f"enc{level + 1}", **block)(h, train)
            skips.append(h)
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = ConvBlock(w * 16, self.bottleneck_dropout, name="bottleneck", **block)(h, train)
        for level, mult in zip((4, 3, 2, 1), (8, 4, 2, 1), strict=True):
            h = nn.ConvTranspose(w * mult, (2, 2), strides=(2, 2), padding="VALID",
                                 dtype=self.dtype, name=f"up{level}")(h)
            h = jnp.concatenate([h, skips[level - 1]], axis=-1)
            h = ConvBlock(w * mult, self.dropout, name=f"dec{level}",
                          se_ratio=self.se_ratio if level == 4 else 0, dtype=self.dtype)(h, train)
        h = nn.Conv(max(w // 2, 1), (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                    name="head_conv")(h)
        h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, name="head_bn")(h))
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="out")(h)
        return logits.astype(jnp.float32)  # losses and softmax in fp32 whatever the compute


def init_variables(model: nn.Module, rng: jax.Array, input_shape: tuple[int, ...]
                   ) -> dict[str, Any]:
    """{"params", "batch_stats"} for inputs of `input_shape`, cheap to compile.

    Why: jitted threefry for the ~100 initialisers compiled for minutes on a 2-core CPU;
    XLA's RngBitGenerator, seeded from `rng` (so still deterministic), took a quarter of
    that, and lazy_init skips the forward pass.
    """
    key = jax.random.key(jax.random.bits(rng, (), jnp.uint32), impl="unsafe_rbg")
    return model.lazy_init({"params": key}, jax.ShapeDtypeStruct(input_shape, jnp.float32))


def param_count(in_channels: int = 11, num_classes: int = 2, base_width: int = 64,
                se_ratio: int = 16) -> int:
    """Trainable parameters of the same network in PyTorch terms, from layer formulas.

    Conv2d(i, o, k, bias=False): i*o*k*k; BatchNorm2d(c): 2c (weight, bias; running stats
    are buffers, like Flax's batch_stats); Linear(i, o): i*o + o; ConvTranspose2d(i, o, 2):
    4*i*o + o. An independent check of the Flax module's count.
    """
    def conv(i: int, o: int, k: int = 3) -> int:
        return i * o * k * k

    def block(i: int, o: int, se: bool) -> int:
        n = conv(i, o) + 2 * o + conv(o, o) + 2 * o
        if se:
            hid = max(o // se_ratio, 1)
            n += o * hid + hid + hid * o + o
        return n

    w = base_width
    n, prev = 0, in_channels
    for mult in (1, 2, 4, 8, 16):
        n += block(prev, w * mult, se=True)
        prev = w * mult
    for mult in (8, 4, 2, 1):
        n += 4 * prev * w * mult + w * mult  # ConvTranspose2d
        n += block(2 * w * mult, w * mult, se=mult == 8)
        prev = w * mult
    head = max(w // 2, 1)
    return n + conv(w, head) + 2 * head + head * num_classes + num_classes
