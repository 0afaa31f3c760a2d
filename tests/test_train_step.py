"""The core step: sharded == single device, FSDP == replicated, the README embedding example."""

import ast
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtrain import sharding, train_step
from jaxtrain.models.fire_transformer import FireTransformer
from tests.fire_test_config import ROOT


def _fire_setup(mesh, dtype=jnp.float32, rng_impl="threefry2x32", ema_decay=0.0):
    # One layer: the sharding is what is tested, and every test here compiles its steps.
    model = FireTransformer(d_model=32, d_ff=64, num_heads=2, num_layers=1, dropout=0.1,
                            dtype=dtype)
    # SGD, not Adam: Adam turns float noise in exactly-zero gradients (attention key biases)
    # into full-size updates, which would compare rounding, not sharding.
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.05, momentum=0.9))

    def loss_fn(params, model_state, batch, rng):
        out = model.apply({"params": params}, batch["x"], batch["area"], train=True,
                          rngs={"dropout": rng})
        loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"],
                                                               batch["label"]).mean()
        return loss, ({}, model_state)

    def init():
        x = jnp.zeros((1, 60, 6))
        params = model.init(jax.random.key(0), x, jnp.zeros((1,), jnp.int32))["params"]
        return train_step.TrainState.create(params, tx, rng=jax.random.key(1, impl=rng_impl),
                                            ema_decay=ema_decay)

    state, shardings = train_step.create_sharded_state(init, mesh, fsdp_min_size=1024)
    return state, train_step.make_train_step(loss_fn, tx, mesh, shardings)


def _batches(n, batch=32):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(batch, 60, 6)).astype(np.float32),
             "area": rng.integers(0, 5, batch).astype(np.int32),
             "label": rng.integers(0, 3, batch).astype(np.int32)} for _ in range(n)]


def _train(mesh, batches, dtype=jnp.float32, rng_impl="threefry2x32"):
    state, step = _fire_setup(mesh, dtype, rng_impl)
    losses = []
    for b in batches:
        state, m = step(state, sharding.make_global_batch(b, mesh))
        losses.append(float(m["loss"]))
    # the trained kernel's devices: where the step really ran
    devices = state.params["input_proj"]["kernel"].sharding.device_set
    return np.array(losses), jax.device_get(state.params), devices


@pytest.mark.parametrize("dtype,tol,rng_impl", [(jnp.float32, 1e-5, "rbg"),
                                                (jnp.float32, 1e-5, "threefry2x32"),
                                                (jnp.bfloat16, 1e-2, "rbg")])
def test_sharded_step_matches_single_device(dtype, tol, rng_impl):
    """Dropout masks too: the same key gives the same masks whatever the device count."""
    assert jax.device_count() == 8
    batches = _batches(3)
    one = sharding.make_mesh(devices=jax.devices()[:1])
    eight = sharding.make_mesh()
    l1, p1, _ = _train(one, batches, dtype, rng_impl)
    l8, p8, devices = _train(eight, batches, dtype, rng_impl)
    np.testing.assert_allclose(l8, l1, rtol=tol, atol=tol)
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert len(devices) == 8  # the step really ran on all 8 devices


def test_fsdp_matches_data_parallel_and_shards_params():
    batches = _batches(2)
    l_dp, p_dp, _ = _train(sharding.make_mesh(fsdp=1), batches)
    l_fs, p_fs, _ = _train(sharding.make_mesh(fsdp=4), batches)
    np.testing.assert_allclose(l_fs, l_dp, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(p_fs), jax.tree.leaves(p_dp), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    state, _ = _fire_setup(sharding.make_mesh(fsdp=4))
    kernel = state.params["encoder"]["layer_0"]["linear1"]["kernel"]  # (32, 64) >= 1024
    assert "fsdp" in str(kernel.sharding.spec)


def test_batch_size_must_divide_devices():
    with pytest.raises(ValueError, match="divisible"):
        sharding.process_batch_size(30, sharding.make_mesh())


def test_readme_embedding_example_runs(tmp_path):
    """The README's 'use the train step in your own code' block, executed as written."""
    with open(f"{ROOT}/README.md") as f:
        readme = f.read()
    block = re.search(r"<!-- embed-example -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README lost its embedding example"
    # A fresh interpreter with this machine's real devices, as a user would run it. (Not 8
    # fake CPU devices: 300 undrained async steps of 8-way all-reduces can starve XLA:CPU's
    # rendezvous on 2 loaded cores; sharding itself is tested above.)
    script = tmp_path / "readme_example.py"
    script.write_text(block.group(1))
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] > 0.9  # the example learns its toy task


def test_train_state_is_float32_under_bf16_compute():
    state, step = _fire_setup(sharding.make_mesh(), jnp.bfloat16)
    state, m = step(state, sharding.make_global_batch(_batches(1)[0], sharding.make_mesh()))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert np.isfinite(float(m["loss"])) and float(m["grad_norm"]) > 0



def test_moving_average_of_the_weights_is_what_evaluation_reads():
    mesh = sharding.make_mesh(devices=jax.devices()[:1])  # the arithmetic; sharding: above
    state, step = _fire_setup(mesh, ema_decay=0.9)
    expected = jax.device_get(state.params)
    for i, b in enumerate(_batches(4)):
        state, _ = step(state, sharding.make_global_batch(b, mesh))
        d = min(0.9, (1 + i) / (10 + i))  # the warm-up: 0.1, 0.18, 0.25, 0.31
        expected = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, expected,
                                jax.device_get(state.params))
    for a, b in zip(jax.tree.leaves(state.ema["params"]), jax.tree.leaves(expected),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    bias = "input_proj", "bias"
    average, trained = (np.asarray(t[bias[0]][bias[1]]) for t in (state.ema["params"],
                                                                  state.params))
    assert np.abs(average - trained).max() > 1e-4  # the average is not the last step's

    def predict_fn(params, model_state, batch):
        return {"bias_sum": jnp.zeros(batch["x"].shape[0]) + params["input_proj"]["bias"].sum()}

    shardings = jax.tree.map(lambda x: x.sharding, state)
    eval_step = train_step.make_eval_step(predict_fn, mesh, shardings)
    out = eval_step(state, sharding.make_global_batch(_batches(1)[0], mesh))
    np.testing.assert_allclose(np.asarray(out["bias_sum"]), average.sum(), rtol=1e-6)


def test_steps_queue_two_deep_where_xla_cpu_collectives_can_deadlock():
    """XLA:CPU with several devices deadlocks on a long queue of collective steps (an
    all-reduce waits for a device that never arrives): the loop bounds the queue there only."""
    from jaxtrain import sharding

    assert sharding.queued_steps_can_deadlock(sharding.make_mesh())  # 8 CPU devices here
    assert not sharding.queued_steps_can_deadlock(
        sharding.make_mesh(devices=jax.devices()[:1]))
