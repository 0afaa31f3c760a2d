"""The benchmark harness runs end to end on a tiny fire config (no timing assertions)."""

import json
import subprocess
import sys

from tests.fire_test_config import ROOT

TINY_FIRE = ["--config=configs/fire.py", "--config.data.samples_per_area=3000",
             "--config.data.blocks_per_area=6", "--config.model.num_layers=1",
             "--config.model.d_model=32", "--config.model.d_ff=64", "--config.train.batch_size=32"]


def test_benchmark_smoke(cache_dir):
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", *TINY_FIRE,
         f"--config.data.cache_dir={cache_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("compile_s", "step_ms_p50", "samples_per_s_throughput", "xla_flops_per_sample",
                "mfu_vs_matmul_peak", "input_samples_per_s", "input_wait_fraction",
                "infer_ms_one_record_per_device", "input_samples_per_core_s",
                "input_host_ms_per_step", "host_cores_to_feed_step"):
        assert result[key] is not None and result[key] >= 0, key
    assert result["train_read"] == "device"  # the tiny log fits: positions are all it reads
    assert result["xla_flops_per_sample"] > 0
    assert 0 <= result["input_wait_fraction"] <= 1


def test_input_only_benchmark(cache_dir):
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--input_only", "--steps=5", *TINY_FIRE,
         f"--config.data.cache_dir={cache_dir}", "--config.data.normalize_in=step"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["input_only"] and result["batch_size"] == 32
    assert result["input_samples_per_s"] > 0 and result["input_samples_per_core_s"] > 0


def test_reference_batches_are_model_inputs_when_jaxtrain_normalizes_in_its_step(cache_dir):
    """On a GPU fire normalizes inside the step, so its host batches hold raw readings; the
    PyTorch twin must get model inputs (readings + change channels), or it is built with
    fewer input channels than the Flax model (a GPU run failed on that)."""
    from benchmarks import run
    from configs import fire
    from jaxtrain import sharding, train_setup

    config = fire.get_config()
    config.data.update(samples_per_area=3000, blocks_per_area=6, cache_dir=cache_dir,
                       normalize_in="step", on_device="never")
    config.model.update(num_layers=1, d_model=32, d_ff=64)
    config.train.batch_size = 32
    task = run.build_task(config)
    mesh = sharding.make_mesh(1)
    raw = [next(run.train_iterator(train_setup.make_input(task, mesh), config, mesh))]
    channels = raw[0]["x"].shape[-1]
    model_channels = channels * (1 + len(config.data.diff_lags))
    assert run.reference_batches(config, raw)[0]["x"].shape[-1] == model_channels
    # On the device path the host batches are positions: the twin gets model inputs too.
    config.data.on_device = "always"
    assert run.reference_batches(config, None)[0]["x"].shape[-1] == model_channels
    config.data.update(normalize_in="host", on_device="never")
    assert run.reference_batches(config, raw) is raw


def test_results_table_reads_the_committed_results():
    """RESULTS.md's table is made from benchmarks/results.jsonl, which also holds other
    benchmarks' lines (violence_encoder): every train-step line becomes a row."""
    from benchmarks import report

    with open(f"{ROOT}/benchmarks/results.jsonl") as f:
        lines = [json.loads(x) for x in f if x.strip()]
    rows = [r for r in lines if "system" in r]
    assert len(rows) < len(lines)  # the encoder line is there and must not break the table
    text = report.table(lines)
    assert text.count("\n| ") >= len(rows)
