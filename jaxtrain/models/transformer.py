"""Transformer encoder building blocks (post-LN, exact GELU: the PyTorch defaults).

Kept identical to `torch.nn.TransformerEncoderLayer(norm_first=False, activation="gelu")` so
weights and results port between the two (LayerNorm eps 1e-5, exact erf GELU).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


def gelu(x: jnp.ndarray) -> jnp.ndarray:
    # jax.nn.gelu defaults to the tanh approximation; torch's default is the exact erf form.
    return nn.gelu(x, approximate=False)


class EncoderLayer(nn.Module):
    """One post-LN encoder layer: x = LN(x + MHA(x)); x = LN(x + FF(x))."""

    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32)
        norm = dict(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
        attn = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dropout_rate=self.dropout, deterministic=not train,
            **dense, name="attention",
        )(x, x)
        attn = nn.Dropout(self.dropout, deterministic=not train)(attn)
        x = nn.LayerNorm(name="norm1", **norm)(x + attn)
        h = nn.Dense(self.d_ff, name="linear1", **dense)(x)
        h = nn.Dropout(self.dropout, deterministic=not train)(gelu(h))
        h = nn.Dense(self.d_model, name="linear2", **dense)(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.LayerNorm(name="norm2", **norm)(x + h)


class Encoder(nn.Module):
    """A stack of `num_layers` encoder layers."""

    num_layers: int
    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        for i in range(self.num_layers):
            x = EncoderLayer(self.d_model, self.num_heads, self.d_ff, self.dropout, self.dtype,
                             name=f"layer_{i}")(x, train=train)
        return x
