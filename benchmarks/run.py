"""Throughput benchmark: one system's real train step and input pipeline on this device.

    python -m benchmarks.run --config=configs/fire.py [--steps=50] [--config.train.batch_size=..]
    python -m benchmarks.run --config=configs/fire.py --smoke     # a few steps, harness check

Reports (one JSON line, appended to benchmarks/results.jsonl with --record): device, versions,
compile time, train-step time (median/p10/p90 of steps after warm-up, `block_until_ready`,
inputs rotated over distinct device batches), samples/s in latency and throughput mode,
XLA model FLOPs per sample and MFU against a bf16 matmul peak measured in the same run,
peak device memory, the HDF5->grain input pipeline's samples/s, and the fraction of step time
spent waiting for input in a real loop (BatchFeeder, as training uses it).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxtrain import data as data_lib
from jaxtrain import optim
from jaxtrain import sharding as shd
from jaxtrain.train_step import TrainState, create_sharded_state, make_train_step

_CONFIG = config_flags.DEFINE_config_file("config", None, "System config.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compile.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run to check the harness (few steps).")
_RECORD = flags.DEFINE_bool("record", False, "Append the result to benchmarks/results.jsonl.")
flags.mark_flag_as_required("config")


def matmul_peak_flops(n: int = 4096, repeats: int = 10) -> float:
    """Achieved FLOP/s of a large bf16 matmul: the denominator of MFU on this device."""
    if jax.default_backend() == "cpu":
        n, repeats = 1024, 3
    a = jnp.ones((n, n), jnp.bfloat16)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def benchmark(config, steps: int, warmup: int) -> dict:
    workdir = tempfile.mkdtemp(prefix="jaxtrain-bench-")
    task = importlib.import_module(f"jaxtrain.tasks.{config.task}").build(config, workdir)
    mesh = shd.make_mesh(config.mesh.fsdp)
    batch_size = config.train.batch_size
    tx, schedule = optim.make_optimizer(config.optim, 100, 10_000)

    def init_state() -> TrainState:
        params, model_state = task.init_fn(jax.random.key(0))
        return TrainState.create(params, tx, rng=jax.random.key(1), model_state=model_state)

    state, shardings = create_sharded_state(init_state, mesh)
    step = make_train_step(task.loss_fn, tx, mesh, shardings, learning_rate_fn=schedule)

    # Distinct device batches, rotated, so no cached identical input flatters the step.
    it = iter(data_lib.train_dataset(task.train_source, global_batch_size=batch_size,
                                     mesh=mesh, seed=0, num_epochs=1000,
                                     transform=task.transform,
                                     random_transform=task.random_transform))
    batches = [shd.make_global_batch(next(it), mesh) for _ in range(4)]

    t0 = time.perf_counter()
    lowered = step.lower(state, batches[0])
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops_per_step = float(cost.get("flops", 0.0)) if cost else 0.0

    for i in range(warmup):
        state, m = step(state, batches[i % 4])
    jax.block_until_ready(m)
    times = []
    for i in range(steps):  # latency mode
        t = time.perf_counter()
        state, m = step(state, batches[i % 4])
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(steps):  # throughput mode: dispatch ahead, block once
        state, m = step(state, batches[i % 4])
    jax.block_until_ready(m["loss"])
    throughput_step = (time.perf_counter() - t) / steps

    # Input pipeline alone: HDF5 -> grain -> host batches.
    n_in = max(steps // 2, 3)
    t = time.perf_counter()
    for _ in range(n_in):
        next(it)
    input_sps = n_in * batch_size / (time.perf_counter() - t)

    # Real loop: time blocked waiting for input, as a fraction of the step.
    feeder = data_lib.BatchFeeder(it, mesh)
    wait = 0.0
    t_loop = time.perf_counter()
    for _ in range(n_in):
        t = time.perf_counter()
        b = next(feeder)
        wait += time.perf_counter() - t
        state, m = step(state, b)
    jax.block_until_ready(m["loss"])
    loop_s = time.perf_counter() - t_loop

    peak = matmul_peak_flops()
    median = statistics.median(times)
    q = np.percentile(times, [10, 90])
    mem = jax.local_devices()[0].memory_stats() or {}
    return {
        "system": config.task, "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(), "backend": jax.default_backend(),
        "jax": jax.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"), "batch_size": batch_size,
        "compute_dtype": config.train.compute_dtype, "compile_s": round(compile_s, 2),
        "step_ms_p50": round(median * 1e3, 2), "step_ms_p10": round(q[0] * 1e3, 2),
        "step_ms_p90": round(q[1] * 1e3, 2),
        "samples_per_s_latency": round(batch_size / median, 1),
        "samples_per_s_throughput": round(batch_size / throughput_step, 1),
        "xla_flops_per_sample": flops_per_step / batch_size,
        "matmul_peak_tflops": round(peak / 1e12, 3),
        "mfu_vs_matmul_peak": round(flops_per_step / throughput_step / peak, 4),
        "peak_device_memory_mb": round(mem.get("peak_bytes_in_use", 0) / 2**20, 1) or None,
        "input_samples_per_s": round(input_sps, 1),
        "input_wait_fraction": round(wait / loop_s, 4),
        "command": " ".join(sys.argv),
    }


def main(argv: list[str]) -> None:
    config = _CONFIG.value
    steps, warmup = (_STEPS.value, _WARMUP.value) if not _SMOKE.value else (3, 1)
    result = benchmark(config, steps, warmup)
    line = json.dumps(result)
    print(line)
    if _RECORD.value:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl")
        with open(path, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    app.run(main)
