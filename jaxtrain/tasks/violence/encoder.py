"""The frozen frame encoder: VGG19 (models/vgg19.py) jitted and sharded over the local
devices, with an identity that names everything its features depend on.

`encoder.weights` is a Keras `vgg19_weights_tf_dim_ordering_tf_kernels.h5` (ImageNet, the
seed's encoder) or empty: fixed random He-normal weights from `encoder.seed`, for machines
without the file (the CPU default; BUILD_NOTES explains the sizes chosen).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtrain.data.padding import pad_rows
from jaxtrain.models import vgg19
from jaxtrain.train_step import compute_dtype


def identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a cached feature depends on: a change to any of it invalidates the cache."""
    e, d = config.encoder, config.data
    weights = (f"sha1:{vgg19.file_sha1(os.path.expanduser(e.weights))}" if e.weights
               else f"random-he-normal-seed{e.seed}")
    return {"arch": "vgg19-keras", "output": e.output, "grid": e.grid if e.output.startswith(
        "block") else 1, "input_size": e.input_size, "weights": weights,
            "preprocess": "caffe", "num_frames": d.num_frames, "sampling": "linspace",
            "resize": "swscale-bilinear", "dtype": "float16"}


def identity_json(ident: dict[str, Any]) -> str:
    return json.dumps(ident, sort_keys=True)


def feature_dim(config: ml_collections.ConfigDict) -> int:
    return vgg19.feature_size(config.encoder.output, config.encoder.grid)


def load_params(config: ml_collections.ConfigDict) -> dict[str, Any]:
    e = config.encoder
    if e.output in ("fc1", "fc2") and e.input_size != 224:
        raise ValueError(f"encoder.output={e.output!r} needs encoder.input_size=224 (fc1 "
                         f"takes the 7x7x512 map), got {e.input_size}; use a pooling output "
                         "such as 'block5_pool' for other sizes")
    if e.weights:
        return vgg19.load_keras_weights(os.path.expanduser(e.weights), e.output)
    return vgg19.random_params(e.output, e.input_size, e.seed)


def make_encoder(config: ml_collections.ConfigDict
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """`encode(frames uint8 (N, S, S, 3)) -> float16 (N, D)`, N padded internally to whole
    batches of `encoder.batch_frames` (one compile), sharded over the local devices,
    in bfloat16 on GPU/TPU (`train.compute_dtype`)."""
    e = config.encoder
    devices = jax.local_devices()
    mesh = Mesh(np.asarray(devices), ("data",))
    per_call = -(-e.batch_frames // len(devices)) * len(devices)
    model = vgg19.VGG19(output=e.output, grid=e.grid,
                        dtype=compute_dtype(config.train.compute_dtype))
    params = jax.device_put(load_params(config), NamedSharding(mesh, P()))
    apply = jax.jit(lambda p, x: model.apply({"params": p}, vgg19.caffe_preprocess(x)
                                             ).astype(jnp.float16),
                    in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))),
                    out_shardings=NamedSharding(mesh, P("data")))

    def encode(frames: np.ndarray) -> np.ndarray:
        n = len(frames)
        out = []
        for start in range(0, n, per_call):
            chunk = frames[start:start + per_call]
            out.append(np.asarray(apply(params, pad_rows(chunk, per_call)))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, feature_dim(config)), np.float16)

    return encode
