"""The fire system's network: the configured `FireTransformer` (jaxtrain.models)."""

from __future__ import annotations

import ml_collections

from jaxtrain.models.fire_transformer import FireTransformer
from jaxtrain.train_step import compute_dtype


def build_model(config: ml_collections.ConfigDict, num_areas: int, num_classes: int
                ) -> FireTransformer:
    """The configured transformer for `num_areas` areas and `num_classes` classes."""
    m = config.model
    return FireTransformer(seq_len=config.data.seq_len, num_areas=num_areas,
                           num_classes=num_classes, d_model=m.d_model, num_heads=m.num_heads,
                           num_layers=m.num_layers, d_ff=m.d_ff, dropout=m.dropout,
                           dtype=compute_dtype(config.train.compute_dtype))
