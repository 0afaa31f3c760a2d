"""EfficientNet-B0 with the reference recipe's screening head, and its trainable sets.

Head (the reference `model_improved.py`): global average pool -> Dropout 0.3 -> Dense 256
relu (L2 5e-4, added to the loss) -> BatchNorm -> Dropout 0.3 -> Dense 128 relu ->
BatchNorm -> Dropout 0.2 -> Dense 1 (the referable-glaucoma logit).

Trainable sets (`trainable_mask`): "all" (training from scratch), "head" (frozen backbone:
phase 1 over pretrained weights), or the head plus the parameters of Keras's last
`unfreeze_layers` layers (phase 2; 50 -> `block6b_project_bn` .. `top_bn`, 2,305,680
backbone parameters, `unfrozen_prefixes(50)`).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxtrain.models.efficientnet import (
    BN_EPSILON,
    BN_MOMENTUM,
    GRAD_CUTS,
    EfficientNetB0,
    keras_layer_names,
    param_path,
)
from jaxtrain.tasks.glaucoma import augment
from jaxtrain.train_step import compute_dtype

BACKBONE = "backbone"


class GlaucomaNet(nn.Module):
    """(N, S, S, 3) pixels in 0..255 -> (N,) referable-glaucoma logits."""

    dropout: tuple[float, float, float] = (0.3, 0.3, 0.2)
    hidden: tuple[int, int] = (256, 128)
    drop_connect_rate: float = 0.2
    imagenet_input_fix: bool = False
    bn_momentum: float = BN_MOMENTUM
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, backbone_train: bool | None = None,
                 grad_from: str | None = None, frozen_backbone: bool = False) -> jax.Array:
        """`backbone_train`: BatchNorm batch statistics in the backbone (default: `train`);
        `frozen_backbone`: no gradient into the backbone at all; `grad_from`: the first Keras
        layer differentiated."""
        bt = train if backbone_train is None else backbone_train
        f = EfficientNetB0(drop_connect_rate=self.drop_connect_rate,
                           imagenet_input_fix=self.imagenet_input_fix,
                           bn_momentum=self.bn_momentum, dtype=self.dtype,
                           name=BACKBONE)(x, train=bt, grad_from=grad_from)
        if frozen_backbone:
            f = jax.lax.stop_gradient(f)
        d1, d2, d3 = self.dropout
        h = nn.Dropout(d1, deterministic=not train)(f)
        h = nn.relu(nn.Dense(self.hidden[0], dtype=self.dtype, name="dense1")(h))
        h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=BN_EPSILON, dtype=self.dtype, name="bn1")(h)
        h = nn.Dropout(d2, deterministic=not train)(h)
        h = nn.relu(nn.Dense(self.hidden[1], dtype=self.dtype, name="dense2")(h))
        h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=BN_EPSILON, dtype=self.dtype, name="bn2")(h)
        h = nn.Dropout(d3, deterministic=not train)(h)
        return nn.Dense(1, dtype=jnp.float32, name="logit")(h)[:, 0]


def unfrozen_layers(n: int) -> list[str]:
    """Keras's last `n` layers of EfficientNetB0(include_top=False, pooling="avg")."""
    names = keras_layer_names()
    if not 0 <= n <= len(names):
        raise ValueError(f"unfreeze_layers={n}: EfficientNetB0 has {len(names)} layers")
    return names[len(names) - n:] if n else []


def unfrozen_prefixes(n: int) -> list[str]:
    """The parameter-path prefixes (below params/backbone) of Keras's last `n` layers, whole
    blocks folded into one ("block6c"): what `config.finetune.unfreeze` lists."""
    paths = [_path(x) for x in unfrozen_layers(n) if _has_params(x)]
    out: list[str] = []
    for p in paths:
        block = p.split("/")[0]
        if "/" in p and all(_path(x) in paths for x in keras_layer_names()
                            if x.startswith(block + "_") and _has_params(x)):
            p = block
        if p not in out:
            out.append(p)
    return out


def _has_params(keras_name: str) -> bool:
    return keras_name in GRAD_CUTS or keras_name.endswith(("se_reduce", "se_expand"))


def _path(keras_name: str) -> str:
    return "/".join(param_path(keras_name))


def trainable_mask(params: Any, which: str, prefixes: tuple[str, ...] = ()) -> Any:
    """Bool pytree like `params`: "all"; "head" (backbone frozen); or "top": the head and
    the backbone parameters under `prefixes` ("block6c", "block6b/project_bn", "top_bn")."""
    if which not in ("all", "head", "top"):
        raise ValueError(f"trainable set must be all, head or top, got {which!r}")
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    split = [tuple(p.split("/")) for p in (prefixes if which == "top" else ())]

    def on(path: tuple[str, ...]) -> bool:
        if which == "all" or path[0] != BACKBONE:
            return True
        return any(path[1:1 + len(p)] == p for p in split)

    return flax.traverse_util.unflatten_dict({k: on(k) for k in flat})


def build_model(config: ml_collections.ConfigDict) -> GlaucomaNet:
    m = config.model
    return GlaucomaNet(dropout=tuple(m.dropout), hidden=tuple(m.hidden),
                       drop_connect_rate=m.drop_connect_rate, bn_momentum=m.bn_momentum,
                       imagenet_input_fix=bool(m.weights) and m.imagenet_input_fix,
                       dtype=compute_dtype(config.train.compute_dtype))


def referable_probability(model: nn.Module, variables: dict[str, Any], images: jax.Array,
                          passes: int) -> jax.Array:
    """P(referable) of float images, averaged over the first `passes` test-time views
    (`augment.tta_views`): the one inference of the test pass, predict and export."""
    views = augment.tta_views(images)[:passes]
    return jnp.mean(jnp.stack([jax.nn.sigmoid(model.apply(variables, view, train=False))
                               for view in views]), 0)
