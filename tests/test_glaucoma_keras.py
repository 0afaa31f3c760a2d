"""Keras EfficientNetB0 parity: random weights saved by Keras (legacy .h5 and Keras 3
.weights.h5), ported, and the pooled features compared to 1e-4. Skipped without keras
(`pip install keras`, the dev extra)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported
keras = pytest.importorskip("keras")

from jaxtrain.models.efficientnet import EfficientNetB0  # noqa: E402
from jaxtrain.tasks.glaucoma import keras_port  # noqa: E402
from tests.test_glaucoma import quick_compiles  # noqa: E402, F401  (a fixture)

SIZE = 40  # 40 -> 20 -> 10 -> 5 -> 3: an odd size reaches a stride-2, kernel-5 block


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """A Keras EfficientNetB0 (no top, avg pool) with random weights (Keras's own random
    kernels; BatchNorm, biases and the input Normalization randomized too), its features on
    random images, and the model saved in both formats."""
    d = tmp_path_factory.mktemp("keras")
    model = keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg",
                                              input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        w = layer.get_weights()
        if layer.name == "normalization":  # ImageNet-like statistics instead of 0/1
            layer.set_weights([np.array([0.485, 0.456, 0.406], np.float32),
                               np.array([0.052, 0.05, 0.051], np.float32), w[2]])
            layer.finalize_state()  # set_weights alone leaves call() on the old values
        elif isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, mean, var
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if k in (0, 3)
                               else (rng.normal(size=v.shape) * 0.2).astype(np.float32)
                               for k, v in enumerate(w)])
        elif len(w) == 2:  # squeeze-excite convs: random biases
            layer.set_weights([w[0], (rng.normal(size=w[1].shape) * 0.2).astype(np.float32)])
    x = rng.uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    features = np.asarray(model.predict(x, verbose=0))
    legacy, new = str(d / "b0_notop.h5"), str(d / "b0.weights.h5")
    model.save(legacy)
    model.save_weights(new)
    return x, features, legacy, new


@pytest.mark.parametrize("which", ["legacy", "keras3"])
def test_ported_keras_weights_give_keras_features(keras_files, which):
    x, expected, legacy, new = keras_files
    variables = keras_port.read_keras_efficientnet(legacy if which == "legacy" else new)
    model = EfficientNetB0()
    got = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(x))
    assert float(np.abs(expected).max()) > 1e-2  # features are not trivially zero
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def _latest_state(workdir: str) -> dict:
    import orbax.checkpoint as ocp

    ckpt = os.path.join(workdir, "checkpoints")
    step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    return ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(step), "state"))


def _interrupted_then_resumed(config, workdir: str, stop_step: int) -> dict:
    """Runs until SIGTERM after `stop_step`, returns that checkpoint's state, then resumes."""
    import signal

    from jaxtrain import main
    from jaxtrain.train import Interrupted

    def stop_at(step):
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted):
        main.run(config, workdir, on_step=stop_at)
    state = _latest_state(workdir)
    main.run(config, workdir)
    return state


@pytest.mark.slow  # ~20 min on 2 loaded cores: 3 runs of EfficientNet-B0 in two phases
@pytest.mark.usefixtures("quick_compiles")
def test_two_phases_over_keras_weights_freeze_unfreeze_and_resume_exactly(
        keras_files, cache_dir, tmp_path):
    """Phase 1 (epoch 0) trains the head only; from epoch 1 Keras's last 50 layers train
    too; every other backbone weight and every backbone BN statistic stays the ported one;
    a run interrupted in either phase resumes to the same weights as a straight run."""
    import flax

    from configs.glaucoma import LAST_50_KERAS_LAYERS
    from jaxtrain import main
    from tests.test_glaucoma import tiny_config

    _, _, legacy, _ = keras_files
    c = tiny_config(cache_dir)
    c.data.synthetic.update(num_images=80, size=64, rg_fraction=0.25)
    c.model.weights = legacy
    c.finetune.enabled = True
    c.finetune.unfreeze_epoch = 1
    c.train.epochs = 3
    ported = keras_port.read_keras_efficientnet(legacy)
    straight = str(tmp_path / "straight")
    results = main.run(c, straight)
    steps = results["final_step"] // 3  # per epoch
    final = _latest_state(straight)
    flat = flax.traverse_util.flatten_dict
    before = flat(ported["params"])
    after = flat(final["params"]["backbone"])
    unfrozen = [tuple(p.split("/")) for p in LAST_50_KERAS_LAYERS]

    def is_unfrozen(k):
        return any(k[:len(p)] == p for p in unfrozen)

    for k, v in before.items():
        if is_unfrozen(k):
            assert not np.array_equal(after[k], v), k
        else:
            np.testing.assert_array_equal(after[k], v, err_msg=str(k))
    for k, v in flat(ported["batch_stats"]).items():  # BatchNorm in inference mode
        np.testing.assert_array_equal(flat(final["model_state"]["batch_stats"]["backbone"])[k],
                                      v)
    # Interrupted in phase 1: the backbone is still exactly the Keras one, the head moved.
    mid1 = _interrupted_then_resumed(c, str(tmp_path / "phase1"), steps - 1)
    for k, v in before.items():
        np.testing.assert_array_equal(flat(mid1["params"]["backbone"])[k], v)
    mid2 = _interrupted_then_resumed(c, str(tmp_path / "phase2"), steps + 2)
    assert not np.array_equal(flat(mid2["params"]["backbone"])[("top_conv", "kernel")],
                              before[("top_conv", "kernel")])
    for run in ("phase1", "phase2"):
        for a, b in zip(jax.tree.leaves(_latest_state(str(tmp_path / run))["params"]),
                        jax.tree.leaves(final["params"]), strict=True):
            np.testing.assert_array_equal(a, b)
