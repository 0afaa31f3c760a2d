"""The PyTorch reference models are the same models: trainable-parameter counts at the real
sizes, the same function once weights are ported (DAS TCN), and the side-by-side benchmark
harness. Skipped without the benchmark extra (`pip install -e .[bench]`, which CI installs)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.run import reference_spec
from jaxtrain.models.fire_transformer import FireTransformer
from jaxtrain.models.se_unet import SEUNet
from jaxtrain.tasks.das import model as das
from tests.fire_test_config import ROOT, load_config

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402


def flax_count(model, *inputs) -> int:
    shapes = jax.eval_shape(lambda *x: model.init({"params": jax.random.key(0)}, *x),
                            *[jax.ShapeDtypeStruct(i.shape, i.dtype) for i in inputs])
    return sum(p.size for p in jax.tree.leaves(shapes["params"]))


def test_fire_reference_parameter_count():
    config = load_config("fire")
    channels = 6 * (1 + len(config.data.diff_lags))  # raw sensors + their change channels
    x, area = np.zeros((2, config.data.seq_len, channels), np.float32), np.zeros(2, np.int32)
    model, _, _ = ref.build(reference_spec(config), {"x": x, "area": area})
    jax_model = FireTransformer(seq_len=config.data.seq_len, num_areas=config.data.num_areas,
                                **config.model)
    assert ref.trainable_params(model) == flax_count(jax_model, x, area) == 622_852


@pytest.mark.parametrize("name", ["tcn", "bilstm", "transformer"])
def test_das_reference_parameter_count(name):
    config = load_config("das", name)
    x = np.zeros((2, config.data.num_channels, config.data.window), np.float32)
    model, _, _ = ref.build(reference_spec(config), {"x": x})
    assert ref.trainable_params(model) == flax_count(das.build_model(config), x)


@pytest.mark.parametrize("width", [16, 64])
def test_debris_reference_parameter_count(width):
    config = load_config("debris")
    config.model.base_width = width
    image = np.zeros((1, 32, 32, 11), np.float32)
    model, _, conv = ref.build(reference_spec(config), {"image": image})
    count = flax_count(SEUNet(**config.model), image)
    assert conv and ref.trainable_params(model) == count
    if width == 64:
        assert count == 31_270_750  # the seed's 31.3M


def test_das_tcn_ported_weights_give_the_same_logits():
    """Strided SAME padding, dilations, channel LayerNorm and pooling agree, not just sizes."""
    config = load_config("das", "tcn")
    config.model.update(width=16, dilations=(1, 4))
    x = np.random.default_rng(0).normal(size=(3, 8, 250)).astype(np.float32)  # odd length
    jax_model = das.build_model(config)
    params = jax_model.init({"params": jax.random.key(0)}, jnp.asarray(x))["params"]
    model, _, _ = ref.build(reference_spec(config), {"x": x})

    def conv(t, p):  # flax (k, in, out) -> torch (out, in, k)
        t.weight.data = torch.from_numpy(np.asarray(p["kernel"]).transpose(2, 1, 0).copy())
        t.bias.data = torch.from_numpy(np.array(p["bias"]))

    def norm(t, p):
        t.weight.data = torch.from_numpy(np.array(p["scale"]))
        t.bias.data = torch.from_numpy(np.array(p["bias"]))

    conv(model.stem, params["stem"])
    for i, block in enumerate(model.blocks):
        p = params[f"block_{i}"]
        norm(block.norm, p["LayerNorm_0"])
        conv(block.conv1, p["conv1"])
        conv(block.conv2, p["conv2"])
    norm(model.final_norm, params["final_norm"])
    model.head.weight.data = torch.from_numpy(np.asarray(params["head"]["kernel"]).T.copy())
    model.head.bias.data = torch.from_numpy(np.array(params["head"]["bias"]))
    expected = np.asarray(jax_model.apply({"params": params}, jnp.asarray(x)))
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_side_by_side_benchmark_harness(cache_dir):
    """benchmarks.run --reference=torch times both on the same batches (no timing asserted)."""
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--config=configs/das.py:bilstm", "--smoke",
         "--reference=torch", "--reference_compile=false", f"--config.data.cache_dir={cache_dir}",
         "--config.data.num_files=15", "--config.data.duration_s=20",
         "--config.data.num_channels=8", "--config.data.window=256", "--config.data.stride=128",
         "--config.data.min_event_overlap_s=0.5", "--config.model.hidden=16",
         "--config.train.batch_size=16"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["reference"]["trainable_params"] == result["params"]
    assert result["reference"]["samples_per_s_throughput"] > 0
    assert not result["reference"]["nonfinite_loss"]
    assert result["ratio_vs_torch"] == pytest.approx(
        result["samples_per_s_throughput"] / result["reference"]["samples_per_s_throughput"],
        rel=1e-2)
