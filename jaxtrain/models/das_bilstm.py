"""Bidirectional LSTM for DAS windows: a strided conv stem, scanned BiLSTM layers, a head.

Input (B, C, T), output (B, num_classes) float32 logits. The stem (two strided convs, x8 in
total by default) shortens 1024 samples to 128 steps before the recurrence: an LSTM step is
sequential, so its length, not its width, sets the cost (and 250 Hz oversamples the < 25 Hz
events). `nn.RNN` scans the `OptimizedLSTMCell` over time (one compiled step, not T copies).
The head reads the final hidden state of each direction (the reference design's "hidden
state") together with the mean of the outputs over time.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtrain.models.transformer import gelu


class DASBiLSTM(nn.Module):
    num_classes: int = 3
    hidden: int = 32  # per direction
    num_layers: int = 1
    stem_width: int = 32
    stem_strides: tuple[int, int] = (4, 2)
    dropout: float = 0.1
    dtype: Any = jnp.float32  # compute dtype; params are always float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        """x: (B, C, T) normalized windows -> (B, num_classes) float32 logits."""
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32)
        h = jnp.swapaxes(x, 1, 2).astype(self.dtype)  # (B, T, C)
        for i, s in enumerate(self.stem_strides):
            h = gelu(nn.Conv(self.stem_width, (2 * s,), strides=(s,), padding="SAME",
                             name=f"stem_{i}", **dense)(h))
        finals = None
        for i in range(self.num_layers):
            if i:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            rnn = nn.Bidirectional(
                nn.RNN(nn.OptimizedLSTMCell(self.hidden, **dense), name=f"forward_{i}"),
                nn.RNN(nn.OptimizedLSTMCell(self.hidden, **dense), name=f"backward_{i}"),
                return_carry=True, name=f"bilstm_{i}")
            (fwd_carry, bwd_carry), h = rnn(h)
            finals = (fwd_carry[1], bwd_carry[1])  # LSTM carry = (c, h)
        feats = jnp.concatenate([*finals, h.mean(axis=1)], axis=-1)
        feats = nn.LayerNorm(epsilon=1e-5, name="norm", **dense)(feats)
        feats = nn.Dropout(self.dropout, deterministic=not train)(feats)
        logits = nn.Dense(self.num_classes, name="head", **dense)(feats)
        return logits.astype(jnp.float32)  # losses and softmax run in float32
