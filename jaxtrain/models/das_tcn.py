"""Temporal CNN for DAS windows: a strided stem, dilated residual 1-D conv blocks, pooling.

Input (B, C, T) channel-major windows (C fibre channels are the conv's input features, so the
stem sees the moveout across the fibre); output (B, num_classes) float32 logits.
A stride-`stem_stride` stem first brings 250 Hz data to ~60 Hz (the events live below 25 Hz),
which is what keeps the model cheap on a CPU; dilations 1..16 with kernel 3 then give a
receptive field of ~2 x 31 stem steps, about 4 s at the default settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtrain.models.transformer import gelu


class ResidualBlock(nn.Module):
    """Pre-LN residual block: x + Conv(GELU(Conv(LN(x)))) with one dilation."""

    width: int
    kernel_size: int = 3
    dilation: int = 1
    dropout: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        conv = dict(features=self.width, kernel_size=(self.kernel_size,),
                    kernel_dilation=(self.dilation,), padding="SAME", dtype=self.dtype,
                    param_dtype=jnp.float32)
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)(x)
        h = gelu(nn.Conv(name="conv1", **conv)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(name="conv2", **conv)(h)
        return x + h


class DASTCN(nn.Module):
    num_classes: int = 3
    width: int = 32
    stem_kernel: int = 8
    stem_stride: int = 4
    kernel_size: int = 3
    dilations: Sequence[int] = (1, 2, 4, 8, 16)
    dropout: float = 0.1
    dtype: Any = jnp.float32  # compute dtype; params are always float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        """x: (B, C, T) normalized windows -> (B, num_classes) float32 logits."""
        h = jnp.swapaxes(x, 1, 2).astype(self.dtype)  # (B, T, C): flax convs are features-last
        h = nn.Conv(self.width, (self.stem_kernel,), strides=(self.stem_stride,),
                    padding="SAME", dtype=self.dtype, param_dtype=jnp.float32, name="stem")(h)
        h = gelu(h)
        for i, d in enumerate(self.dilations):
            h = ResidualBlock(self.width, self.kernel_size, d, self.dropout, self.dtype,
                              name=f"block_{i}")(h, train=train)
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                         name="final_norm")(h)
        # Mean and max over time: the event may fill the window or only a second of it.
        pooled = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)
        pooled = nn.Dropout(self.dropout, deterministic=not train)(pooled)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                          name="head")(pooled)
        return logits.astype(jnp.float32)  # losses and softmax run in float32
