"""Transformer for DAS windows: time patches as tokens, a CLS token, the shared encoder.

Input (B, C, T): T is cut into T // patch_size patches and each token is one patch of all C
channels (C * patch_size values, linearly projected), so a token carries the moveout across
the fibre over `patch_size` samples. A learned CLS token and learned positions are added, the
post-LN encoder of models/transformer.py runs, and the CLS output feeds the head. Samples past
the last whole patch are dropped (none for the default 1024 / 32).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtrain.models.transformer import Encoder


def patchify(x: jnp.ndarray, patch_size: int) -> jnp.ndarray:
    """(B, C, T) -> (B, T // patch_size, C * patch_size) tokens, one per time patch."""
    b, c, t = x.shape
    n = t // patch_size
    if n == 0:
        raise ValueError(f"window of {t} samples is shorter than patch_size={patch_size}")
    x = x[:, :, : n * patch_size].reshape(b, c, n, patch_size)
    return x.transpose(0, 2, 1, 3).reshape(b, n, c * patch_size)


class DASTransformer(nn.Module):
    num_classes: int = 3
    patch_size: int = 32
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    dtype: Any = jnp.float32  # compute dtype; params are always float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        """x: (B, C, T) normalized windows -> (B, num_classes) float32 logits."""
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32)
        tokens = patchify(x.astype(self.dtype), self.patch_size)
        h = nn.Dense(self.d_model, name="patch_proj", **dense)(tokens)
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, self.d_model))
        h = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (h.shape[0], 1,
                                                                       self.d_model)), h], 1)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                         (h.shape[1], self.d_model))
        h = h + pos.astype(self.dtype)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Encoder(self.num_layers, self.d_model, self.num_heads, self.d_ff, self.dropout,
                    self.dtype, name="encoder")(h, train=train)
        c = nn.LayerNorm(epsilon=1e-5, name="cls_norm", **dense)(h[:, 0])
        logits = nn.Dense(self.num_classes, name="head", **dense)(c)
        return logits.astype(jnp.float32)  # losses and softmax run in float32
