"""The seed's classifier over cached frame features: 3 x [LSTM(128) -> BatchNorm -> Dropout]
-> attention pooling over time -> Dense 256/128/64 -> 2 logits (2,503,874 parameters in Keras
for 4096-d features, 1,536 of them BatchNorm statistics; the same here).

The LSTM keeps Keras' layout (kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H), gates
i, f, c, o; sigmoid gates, tanh cell; forget bias initialised to 1), so Keras weights port
one to one. The input projection of all time steps is one matmul outside the scan, which
leaves only the (B, H) x (H, 4H) recurrence sequential.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxtrain.train_step import compute_dtype


class LSTM(nn.Module):
    """Keras `LSTM(units, return_sequences=True)`: (B, T, D) -> (B, T, units)."""

    units: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.units
        kernel = self.param("kernel", nn.initializers.glorot_uniform(), (x.shape[-1], 4 * h))
        recurrent = self.param("recurrent_kernel", nn.initializers.orthogonal(), (h, 4 * h))
        bias = self.param("bias", lambda _, s: jnp.zeros(s).at[h:2 * h].set(1.0), (4 * h,))
        kernel, recurrent = kernel.astype(self.dtype), recurrent.astype(self.dtype)
        z = jnp.einsum("btd,dg->btg", x.astype(self.dtype), kernel) + bias.astype(self.dtype)

        def cell(carry, z_t):
            h_prev, c_prev = carry
            g = z_t + h_prev.astype(self.dtype) @ recurrent
            i, f, cc, o = jnp.split(g.astype(jnp.float32), 4, axis=-1)
            c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(cc)
            h_t = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h_t, c), h_t

        b = x.shape[0]
        init = (jnp.zeros((b, h), jnp.float32), jnp.zeros((b, h), jnp.float32))
        _, hs = jax.lax.scan(cell, init, jnp.swapaxes(z, 0, 1))
        return jnp.swapaxes(hs, 0, 1).astype(self.dtype)


class LSTMAttention(nn.Module):
    """Returns {"logits": (B, 2), "attention": (B, T)} (attention sums to 1 over time)."""

    lstm_units: int = 128
    lstm_layers: int = 3
    dense: tuple[int, ...] = (256, 128, 64)
    dense_batchnorm: int = 2  # the first n dense layers are followed by BatchNorm
    dropout: float = 0.5
    # Keras' 0.99 needs hundreds of steps before the running statistics forget their
    # initial values; a CPU-sized run with a dozen steps per epoch evaluates with garbage.
    bn_momentum: float = 0.99
    num_classes: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        def bn(y):  # Keras' epsilon
            return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                epsilon=1e-3,
                                dtype=self.dtype)(y)

        for _ in range(self.lstm_layers):
            x = LSTM(self.lstm_units, dtype=self.dtype)(x)
            x = nn.Dropout(self.dropout, deterministic=not train)(bn(x))
        scores = nn.Dense(1, use_bias=False, dtype=self.dtype, name="attention")(x)[..., 0]
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
        x = jnp.einsum("bt,btd->bd", weights.astype(self.dtype), x)
        for k, width in enumerate(self.dense):
            x = nn.Dense(width, dtype=self.dtype)(x)
            if k < self.dense_batchnorm:
                x = bn(x)
            x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return {"logits": logits.astype(jnp.float32), "attention": weights}


def count_parameters(variables: dict[str, Any]) -> tuple[int, int]:
    """(total, trainable) as Keras counts them: BatchNorm statistics count, untrainable."""
    trainable = sum(int(v.size) for v in jax.tree.leaves(variables["params"]))
    stats = sum(int(v.size) for v in jax.tree.leaves(variables.get("batch_stats", {})))
    return trainable + stats, trainable


def build_model(config: ml_collections.ConfigDict) -> LSTMAttention:
    m = config.model
    return LSTMAttention(lstm_units=m.lstm_units, lstm_layers=m.lstm_layers,
                         dense=tuple(m.dense), dense_batchnorm=m.dense_batchnorm,
                         dropout=m.dropout, bn_momentum=m.bn_momentum,
                         dtype=compute_dtype(config.train.compute_dtype))
