"""The debris system's network: the configured SE U-Net (jaxtrain.models.se_unet)."""

from __future__ import annotations

import ml_collections

from jaxtrain.models.se_unet import SEUNet
from jaxtrain.train_step import compute_dtype


def build_model(config: ml_collections.ConfigDict) -> SEUNet:
    m = config.model
    return SEUNet(num_classes=2, base_width=m.base_width, dropout=m.dropout,
                  bottleneck_dropout=m.bottleneck_dropout, se_ratio=m.se_ratio,
                  dtype=compute_dtype(config.train.compute_dtype))
