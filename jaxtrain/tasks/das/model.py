"""The DAS window classifiers, (batch, channels, time) -> class logits, chosen by name.

"tcn" (dilated residual temporal CNN), "bilstm" (conv stem + scanned BiLSTM) and
"transformer" (time patches + CLS token); `configs/das.py` holds their hyper-parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections

from jaxtrain.models.das_bilstm import DASBiLSTM
from jaxtrain.models.das_tcn import DASTCN
from jaxtrain.models.das_transformer import DASTransformer
from jaxtrain.tasks.das.schema import CLASS_NAMES
from jaxtrain.train_step import compute_dtype

MODELS = {"tcn": DASTCN, "bilstm": DASBiLSTM, "transformer": DASTransformer}


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The configured classifier; `config.model` holds its name and hyper-parameters."""
    m = dict(config.model)
    name = m.pop("name")
    if name not in MODELS:
        raise ValueError(f"unknown DAS model {name!r} (config.model.name); known: "
                         f"{tuple(MODELS)}")
    for key in ("dilations", "stem_strides"):  # tuples in the config, lists after a JSON trip
        if key in m:
            m[key] = tuple(int(v) for v in m[key])
    return MODELS[name](num_classes=len(CLASS_NAMES),
                        dtype=compute_dtype(config.train.compute_dtype), **m)


def class_probabilities(model: nn.Module, params: Any, windows: jax.Array) -> jax.Array:
    """Softmax class probabilities of normalized windows: the one inference of the test pass,
    predict and export."""
    return jax.nn.softmax(model.apply({"params": params}, windows, train=False))
