"""Keras EfficientNetB0 weights (an ``efficientnetb0_notop.h5`` the user has) -> our variables.

Two HDF5 layouts are read:
* legacy Keras weights (`save_weights("x.h5")` in Keras 2, the files keras-applications
  publishes, and `model.save("x.h5")`, whose weights sit under ``/model_weights``): one group
  per layer, named like the layer, with a ``weight_names`` attribute (``stem_bn/gamma:0``);
  mapped by layer name, then by weight name;
* Keras 3 ``.weights.h5``: ``/layers/<class>_<k>/vars/<i>``, layers named by class and
  creation order (``conv2d_5``); mapped through Keras's layer order (`keras_layer_names`).

Kernels are HWIO in both frameworks; depthwise kernels (k, k, C, 1) become (k, k, 1, C). BN
gamma/beta/moving_mean/moving_variance -> scale/bias (params) and mean/var (batch_stats); the
input Normalization's mean/variance -> "input_norm". Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Any

import flax
import h5py
import numpy as np

from jaxtrain.data.hdf5 import open_hdf5, str_list
from jaxtrain.models.efficientnet import keras_layer_names, param_path

# Keras class (as snake-case name prefix in .weights.h5) of each parameterized layer.
_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def _kind(name: str) -> str | None:
    if name == "normalization":
        return "normalization"
    if name.endswith("dwconv"):
        return "depthwise_conv2d"
    if name.endswith("_bn"):
        return "batch_normalization"
    if name.endswith(("_conv", "se_reduce", "se_expand")):
        return "conv2d"
    return None


def _short(weight_name: str) -> str:
    """'block1a_dwconv/depthwise_kernel:0' -> 'depthwise_kernel'."""
    return weight_name.split("/")[-1].split(":")[0]


def _legacy_layers(f: h5py.File) -> dict[str, list[np.ndarray]] | None:
    g = f.get("model_weights", f)
    if "layer_names" not in g.attrs:
        return None
    out = {}
    for layer in str_list(g.attrs["layer_names"]):
        names = str_list(g[layer].attrs.get("weight_names", []))
        weights = {_short(n): np.asarray(g[layer][n]) for n in names}
        kind = _kind(layer)
        if kind == "batch_normalization":
            out[layer] = [weights[k] for k in _BN_WEIGHTS]
        elif kind == "normalization":
            out[layer] = [weights["mean"], weights["variance"]]
        elif kind is not None:
            kernel = weights.get("kernel", weights.get("depthwise_kernel"))
            out[layer] = [kernel] + ([weights["bias"]] if "bias" in weights else [])
    return out


def _keras3_layers(f: h5py.File) -> dict[str, list[np.ndarray]] | None:
    if "layers" not in f:
        return None
    counters: dict[str, int] = {}
    out = {}
    for layer in keras_layer_names():
        kind = _kind(layer)
        if kind is None:
            continue
        k = counters.get(kind, 0)
        counters[kind] = k + 1
        group = f"layers/{kind}" + (f"_{k}" if k else "") + "/vars"
        if group not in f:
            raise ValueError(f"{f.filename}: no {group} (layer {layer}); not a Keras 3 "
                             "EfficientNetB0 .weights.h5")
        v = f[group]
        out[layer] = [np.asarray(v[str(i)]) for i in range(len(v))]
    return out


def read_keras_efficientnet(path: str) -> dict[str, Any]:
    """{"params", "batch_stats", "input_norm"} of the backbone (`EfficientNetB0` variables)."""
    path = os.path.abspath(os.path.expanduser(path))
    with open_hdf5(path, "Keras weights") as f:
        layers = _legacy_layers(f) or _keras3_layers(f)
    if layers is None:
        raise ValueError(f"{path}: neither a legacy Keras weights file (layer_names) nor a "
                         "Keras 3 .weights.h5 (/layers)")
    params: dict[tuple[str, ...], np.ndarray] = {}
    stats: dict[tuple[str, ...], np.ndarray] = {}
    norm = {"mean": np.zeros(3, np.float32), "variance": np.ones(3, np.float32)}
    expected = [n for n in keras_layer_names() if _kind(n)]
    absent = [n for n in expected if n not in layers]
    if absent:
        raise ValueError(f"{path}: {len(absent)} EfficientNetB0 layer(s) missing "
                         f"({', '.join(absent[:4])} ...); include_top=False B0 weights needed")
    for name in expected:
        w = [np.asarray(x, np.float32) for x in layers[name]]
        p = param_path(name)
        kind = _kind(name)
        if kind == "normalization":
            norm = {"mean": w[0].reshape(-1), "variance": w[1].reshape(-1)}
        elif kind == "batch_normalization":
            params[(*p, "scale")], params[(*p, "bias")] = w[0], w[1]
            stats[(*p, "mean")], stats[(*p, "var")] = w[2], w[3]
        else:
            kernel = w[0]
            if kind == "depthwise_conv2d":  # (k, k, C, 1) -> (k, k, 1, C)
                kernel = kernel.transpose(0, 1, 3, 2)
            params[(*p, "kernel")] = kernel
            if len(w) > 1:
                params[(*p, "bias")] = w[1]
    unflat = flax.traverse_util.unflatten_dict
    return {"params": unflat(params), "batch_stats": unflat(stats), "input_norm": norm}


def load_into(variables: dict[str, Any], backbone: dict[str, Any], key: str = "backbone"
              ) -> dict[str, Any]:
    """`variables` (of a model with the backbone at `key`) with the ported backbone; shapes
    are checked leaf by leaf (one line naming the first mismatch)."""
    out = dict(variables)
    for col in ("params", "batch_stats", "input_norm"):
        target = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables[col][key]))
        source = flax.traverse_util.flatten_dict(backbone[col])
        if set(target) != set(source):
            diff = sorted(set(target) ^ set(source))[:3]
            raise ValueError(f"Keras weights do not match the model ({col}): {diff}")
        for k, v in source.items():
            if tuple(target[k].shape) != v.shape:
                raise ValueError(f"Keras weights: {col}/{'/'.join(k)} has shape {v.shape}, "
                                 f"the model expects {tuple(target[k].shape)}")
        out[col] = {**variables[col], key: flax.traverse_util.unflatten_dict(source)}
    return out
