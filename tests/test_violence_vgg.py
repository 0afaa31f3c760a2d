"""VGG19 in Flax against Keras' own (`keras.applications.VGG19(weights=None)`, JAX backend):
random Keras weights written as a legacy Keras HDF5 weights file, loaded by our loader, the
same image through both; the fc2 features must agree. Skipped where keras is absent (it is a
dev extra)."""

import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")


def test_vgg19_fc2_matches_keras(tmp_path):
    import jax

    from jaxtrain.models import vgg19

    if keras.backend.backend() != "jax":
        pytest.skip("keras was imported with another backend")
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG19(weights=None)
    assert model.count_params() == 143_667_240
    # The published file's layout: root `layer_names`, per-layer `weight_names`.
    path = str(tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5")
    names = vgg19.layer_names("fc2")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            g = f.create_group(name)
            kernel, bias = model.get_layer(name).get_weights()
            g.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(),
                                                f"{name}_b_1:0".encode()])
            g[f"{name}_W_1:0"], g[f"{name}_b_1:0"] = kernel, bias
    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3)).astype(np.float32)
    fc2 = keras.Model(model.input, model.get_layer("fc2").output)
    expected = np.asarray(fc2(keras.applications.vgg19.preprocess_input(image.copy())))
    params = vgg19.load_keras_weights(path, "fc2")
    got = np.asarray(jax.jit(lambda p, x: vgg19.VGG19(output="fc2").apply(
        {"params": p}, vgg19.caffe_preprocess(x)))(params, image))
    assert got.shape == (1, 4096) and (expected > 0).mean() > 0.05  # not a dead network
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
