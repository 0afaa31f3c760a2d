"""The fire-detection transformer (the reference design's `OptimizedFireTransformer`), in Flax.

Input projection + area embedding + learned positional encoding, a post-LN encoder
(3 layers, d_model 128, 4 heads, ff 512, GELU, dropout 0.1), mean pooling, then two heads:
class logits (normal / warning / fire) and a fire-risk score in [0, 1].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtrain.models.transformer import Encoder, gelu


class FireTransformer(nn.Module):
    seq_len: int = 60
    num_areas: int = 5
    num_classes: int = 3
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.1
    dtype: Any = jnp.float32  # compute dtype; params are always float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, area: jnp.ndarray, *, train: bool = False
                 ) -> dict[str, jnp.ndarray]:
        """x: (B, T, C) normalised readings; area: (B,) int. Returns logits (B, K), risk (B,)."""
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32)
        h = nn.Dense(self.d_model, name="input_proj", **dense)(x.astype(self.dtype))
        area_emb = nn.Embed(self.num_areas, self.d_model, name="area_embedding", **dense)
        h = h + area_emb(area)[:, None]
        pos = self.param("pos_encoding", nn.initializers.normal(1.0), (self.seq_len, self.d_model))
        h = h + pos[: x.shape[1]].astype(self.dtype)
        h = Encoder(self.num_layers, self.d_model, self.num_heads, self.d_ff, self.dropout,
                    self.dtype, name="encoder")(h, train=train)
        pooled = h.mean(axis=1)

        norm = dict(epsilon=1e-5, **dense)
        c = nn.LayerNorm(name="cls_norm", **norm)(pooled)
        c = nn.Dropout(self.dropout, deterministic=not train)(c)
        c = gelu(nn.Dense(self.d_model // 2, name="cls_hidden", **dense)(c))
        logits = nn.Dense(self.num_classes, name="cls_out", **dense)(c)

        r = nn.LayerNorm(name="risk_norm", **norm)(pooled)
        r = nn.relu(nn.Dense(64, name="risk_hidden", **dense)(r))
        risk_logit = nn.Dense(1, name="risk_out", **dense)(r)[:, 0]
        # Logits in float32: losses and softmax are computed in fp32 whatever the compute dtype.
        return {"logits": logits.astype(jnp.float32), "risk_logit": risk_logit.astype(jnp.float32)}
