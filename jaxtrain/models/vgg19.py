"""VGG19 exactly as `keras.applications.VGG19` builds it, in Flax, with its weights file.

Layer names, shapes and order follow Keras (block1_conv1 ... block5_pool, flatten, fc1, fc2,
predictions), so `load_keras_weights` maps a Keras HDF5 weights file by layer name. Keras
flattens block5_pool (7, 7, 512) in HWC order, which is exactly how an NHWC array reshapes, so
fc1's kernel needs no permutation (a torchvision port would: it flattens CHW).

`output` picks the feature: "fc2" (4096-d, the usual per-frame video feature; needs 224 px
input) or a pooling layer ("block3_pool", "block5_pool", ...) averaged over a `grid` x `grid`
spatial grid, which works at any input size and keeps where things are in the frame.
Preprocessing is Keras' "caffe" mode: RGB -> BGR, minus the ImageNet BGR means, no scaling.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np

# (block, number of 3x3 convs, channels)
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
OUTPUTS = ("fc2", "fc1", *(f"block{b}_pool" for b, _, _ in BLOCKS))


def caffe_preprocess(rgb: jax.Array) -> jax.Array:
    """uint8/float RGB in [0, 255] (..., H, W, 3) -> Keras 'caffe' input (BGR minus means)."""
    return rgb.astype(jnp.float32)[..., ::-1] - CAFFE_BGR_MEAN


class VGG19(nn.Module):
    """VGG19 up to `output` (see module doc). Input: caffe-preprocessed (B, H, W, 3)."""

    output: str = "fc2"
    grid: int = 1  # for pooling outputs: average over a grid x grid layout of cells
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.output not in OUTPUTS:
            raise ValueError(f"unknown VGG19 output {self.output!r}; known: {OUTPUTS}")
        x = x.astype(self.dtype)
        for block, convs, width in BLOCKS:
            for i in range(1, convs + 1):
                x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype,
                                    name=f"block{block}_conv{i}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            if self.output == f"block{block}_pool":
                return grid_average(x, self.grid)
        x = x.reshape(x.shape[0], -1)  # HWC order, as Keras' Flatten
        x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="fc1")(x))
        if self.output == "fc1":
            return x
        return nn.relu(nn.Dense(4096, dtype=self.dtype, name="fc2")(x))


def grid_average(x: jax.Array, grid: int) -> jax.Array:
    """(B, H, W, C) -> (B, grid * grid * C): means over a grid of equal cells, HWC order."""
    b, h, w, c = x.shape
    if h % grid or w % grid:
        raise ValueError(f"feature map {h}x{w} does not split into a {grid}x{grid} grid")
    x = x.reshape(b, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4))
    return x.reshape(b, grid * grid * c)


def feature_size(output: str, grid: int = 1) -> int:
    if output in ("fc1", "fc2"):
        return 4096
    block = int(output[len("block")])
    return grid * grid * BLOCKS[block - 1][2]


def layer_names(output: str) -> list[str]:
    """The Keras layers with weights that `output` uses, in order."""
    names = []
    for block, convs, _ in BLOCKS:
        names += [f"block{block}_conv{i}" for i in range(1, convs + 1)]
        if output == f"block{block}_pool":
            return names
    return names + ["fc1"] + (["fc2"] if output == "fc2" else [])


def random_params(output: str, input_size: int, seed: int) -> dict[str, Any]:
    """He-normal weights, zero biases: a fixed random encoder (variance-preserving through
    the ReLUs, unlike Keras' Glorot default, so deep features neither vanish nor explode)."""
    model = VGG19(output=output)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, input_size, input_size, 3))))
    rng = np.random.default_rng(seed)
    params = {}
    for name, leaf in shapes["params"].items():
        k = leaf["kernel"].shape
        fan_in = int(np.prod(k[:-1]))
        params[name] = {"kernel": (rng.standard_normal(k) * np.sqrt(2.0 / fan_in)
                                   ).astype(np.float32),
                        "bias": np.zeros(leaf["bias"].shape, np.float32)}
    return params


def load_keras_weights(path: str, output: str = "fc2") -> dict[str, Any]:
    """Params from a Keras VGG19 weights file (`vgg19_weights_tf_dim_ordering_tf_kernels.h5`,
    with or without top): the legacy layout (root attribute `layer_names`, per-layer
    `weight_names`, kernel then bias) or Keras 3's `.weights.h5` (`layers/<name>/vars/0,1`).
    Keras conv kernels are already HWIO and dense kernels (in, out), as Flax wants them."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGG19 weights file not found: {path}")
    params = {}
    try:
        with h5py.File(path, "r") as f:
            for name in layer_names(output):
                kernel, bias = _keras_layer(f, name)
                params[name] = {"kernel": np.asarray(kernel, np.float32),
                                "bias": np.asarray(bias, np.float32)}
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 weights file ({e})") from None
    for block, convs, width in BLOCKS:  # shapes checked: a wrong file fails here, not later
        for i in range(1, convs + 1):
            p = params.get(f"block{block}_conv{i}")
            if p is not None and p["kernel"].shape[-1] != width:
                raise ValueError(f"{path}: block{block}_conv{i} kernel has shape "
                                 f"{p['kernel'].shape}, not a VGG19 layer")
    return params


def _keras_layer(f: h5py.File, name: str) -> tuple[np.ndarray, np.ndarray]:
    if "layer_names" in f.attrs:  # Keras 1/2 legacy HDF5 (the published weights files)
        group = f[name]
        weights = [w.decode() if isinstance(w, bytes) else str(w)
                   for w in group.attrs["weight_names"]]
        if len(weights) != 2:
            raise ValueError(f"layer {name} holds {len(weights)} weights, expected 2")
        return group[weights[0]][...], group[weights[1]][...]
    if "layers" in f and name in f["layers"]:  # Keras 3 .weights.h5
        v = f["layers"][name]["vars"]
        return v["0"][...], v["1"][...]
    raise ValueError(f"layer {name} not found (is this a Keras VGG19 weights file?)")


def file_sha1(path: str) -> str:
    """Content hash of a weights file: part of the feature cache's encoder identity."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
