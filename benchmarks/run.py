"""Throughput benchmark: one system's real train step and input pipeline on this device.

    python -m benchmarks.run --config=configs/fire.py [--steps=50] [--config.train.batch_size=..]
    python -m benchmarks.run --config=configs/fire.py --smoke     # a few steps, harness check
    python -m benchmarks.run --config=configs/das.py:tcn --reference=torch --record
    python -m benchmarks.run --config=configs/fire.py --input_only --steps=20  # pipeline alone

Reports (one JSON line, appended to benchmarks/results.jsonl with --record): device, versions,
compile time, train-step time (median/p10/p90 of steps after warm-up, `block_until_ready`,
inputs rotated over distinct device batches), samples/s in latency and throughput mode,
XLA model FLOPs per sample and MFU against a bf16 matmul peak measured in the same run,
peak device memory, the HDF5->grain input pipeline's samples/s, and the fraction of step time
spent waiting for input in a real loop (BatchFeeder, as training uses it).
With --reference=torch, the same model in PyTorch (benchmarks/torch_reference.py) is timed on
the same batches in a subprocess of the same run, and the jaxtrain / PyTorch ratio recorded.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxtrain import optim, train_setup
from jaxtrain import sharding as shd
from jaxtrain.data import pipeline
from jaxtrain.task import load_system
from jaxtrain.train_step import TrainState, make_eval_step, make_train_step, runs_in_step


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


def inference_latency_ms(task, inputs: train_setup.Input, mesh, state: TrainState,
                         shardings: TrainState, repeats: int) -> float:
    """Median latency of the jitted predict step on one validation record per device (the
    seeds' "ms per tile"): whole eval records, e.g. a 256 x 256 debris patch, not crops."""
    it = iter(pipeline.eval_dataset(inputs.sources["val"], global_batch_size=jax.device_count(),
                                    mesh=mesh, transform=inputs.transform,
                                    batch_transform=inputs.batch_transform))
    batch = shd.make_global_batch(next(it), mesh)
    predict = inputs.bind(make_eval_step(task.predict_fn, mesh, shardings, inputs.gather))
    jax.block_until_ready(predict(state, batch))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(predict(state, batch))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def build_task(config):
    workdir = tempfile.mkdtemp(prefix="jaxtrain-bench-")
    return load_system(config.task).build(config, workdir)


def train_iterator(inputs: train_setup.Input, config, mesh):
    """The training input pipeline exactly as training builds it (workers, threads)."""
    return train_setup.train_batches(inputs, config, mesh, num_epochs=1000)


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and its live children (grain workers)."""
    total = time.process_time()
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    for pid in (p for p in os.listdir("/proc") if p.isdigit()) if sys.platform == "linux" else ():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def time_input(it, batches: int, batch_size: int) -> dict:
    """Wall and CPU time of `batches` host batches: the input's rate, and its rate per host
    core (samples per CPU-second: the cores a device's step rate needs follow from it)."""
    next(it)  # start-up (workers, first reads) is not the steady rate
    t, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    n = batches * batch_size
    return {"input_samples_per_s": round(n / wall, 1),
            "input_samples_per_core_s": round(n / max(cpu, 1e-9), 1),
            "input_host_ms_per_step": round(1e3 * cpu / batches, 4)}


def input_benchmark(config, batches: int) -> dict:
    """The input pipeline alone, no model: what this host can feed a device."""
    task, mesh = build_task(config), shd.make_mesh(config.mesh.fsdp)
    inputs = train_setup.make_input(task, mesh)
    rates = time_input(train_iterator(inputs, config, mesh), batches, config.train.batch_size)
    return {"system": config.task, "model": config.model.get("name", config.task),
            "input_only": True, "batch_size": config.train.batch_size,
            "train_read": inputs.mode,
            "worker_count": 0 if inputs.mode == "device" else config.data.worker_count,
            "read_threads": config.data.read_threads, "cpu_count": os.cpu_count(), **rates,
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}


def step_flops(lowered: jax.stages.Lowered, compiled: jax.stages.Compiled) -> float:
    """FLOPs of one step, counted on the lowered (unoptimized) HLO: on a GPU the compiled
    module's convolutions and matmuls are cuDNN/cuBLAS custom calls that XLA's cost analysis
    leaves out (the SE U-Net counted 1.6 of its 291 GFLOP per sample). The compiled count is
    the fallback where the lowered one is unavailable."""
    for stage in (lowered, compiled):
        try:
            cost = stage.cost_analysis()
        except Exception:  # not every backend or stage implements it
            continue
        cost = cost[0] if isinstance(cost, list) else cost
        if cost and cost.get("flops", 0.0) > 0:
            return float(cost["flops"])
    return 0.0


def benchmark(config, steps: int, warmup: int) -> dict:
    task = build_task(config)
    mesh = shd.make_mesh(config.mesh.fsdp)
    batch_size = config.train.batch_size
    tx, schedule = optim.make_optimizer(config.optim, 100, 10_000)
    state, shardings = train_setup.make_state(task, config, mesh, tx)  # as training builds it
    inputs = train_setup.make_input(task, mesh)
    jitted = make_train_step(task.loss_fn, tx, mesh, shardings, learning_rate_fn=schedule,
                             gather=inputs.gather)
    step = inputs.bind(jitted)

    # Distinct device batches, rotated, so no cached identical input flatters the step.
    it = train_iterator(inputs, config, mesh)
    host_batches = [next(it) for _ in range(4)]
    batches = [shd.make_global_batch(b, mesh) for b in host_batches]

    t0 = time.perf_counter()
    lowered = jitted.lower(state, batches[0], *([inputs.data] if inputs.data else []))
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    flops_per_step = step_flops(lowered, compiled)

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

    # Input pipeline alone: HDF5 -> grain -> host batches (positions on the device path).
    n_in = max(steps, 10)
    rates = time_input(it, n_in, batch_size)

    # Real loop: time blocked waiting for input, as a fraction of the step.
    feeder = pipeline.BatchFeeder(it, mesh)
    state, m = step(state, next(feeder))  # the feeder's first fill is start-up, not steady state
    wait = 0.0
    t_loop = time.perf_counter()
    for _ in range(n_in):
        t = time.perf_counter()
        b = next(feeder)
        wait += time.perf_counter() - t
        state, m = step(state, b)
    jax.block_until_ready(m["loss"])
    loop_s = time.perf_counter() - t_loop

    infer_ms = inference_latency_ms(task, inputs, mesh, state, shardings,
                                    repeats=max(steps, 5))
    peak = matmul_peak_flops()
    median = statistics.median(times)
    q = np.percentile(times, [10, 90])
    mem = jax.local_devices()[0].memory_stats() or {}
    return {
        "system": config.task, "model": config.model.get("name", config.task),
        "params": sum(x.size for x in jax.tree.leaves(state.params)),
        "device": jax.devices()[0].device_kind,
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
        "train_read": inputs.mode, "device_data_mib": round(inputs.nbytes / 2**20, 1),
        **rates,
        # Host cores the input needs to keep up with the step (throughput mode).
        "host_cores_to_feed_step": round(
            batch_size / throughput_step / rates["input_samples_per_core_s"], 3),
        "input_wait_fraction": round(wait / loop_s, 4),
        "infer_ms_one_record_per_device": round(infer_ms, 2),
        "command": " ".join(sys.argv),
    }, host_batches if inputs.data is None else None


def reference_spec(config) -> dict:
    """What torch_reference.py needs to build the same model, loss and optimizer."""
    spec = {"task": config.task, "model": config.model.to_dict(),
            "optim": config.optim.to_dict()}
    if config.task == "fire":
        spec.update(num_areas=config.data.num_areas, risk_weight=config.train.risk_weight)
    if config.task in ("debris", "violence", "glaucoma"):
        spec["loss"] = config.loss.to_dict()
    return json.loads(json.dumps(spec, default=list))  # tuples -> lists


def reference_batches(config, host_batches: list[dict] | None) -> list[dict]:
    """The batches the PyTorch twin trains on: the model's inputs. Where jaxtrain gathers
    records on the device (`data.on_device`) or normalizes inside its step (fire's
    `data.normalize_in`, resolved to step on a GPU) the host batches hold positions or raw
    readings (DAS streamed by blocks: int16 counts), so the twin gets the same kind of
    records read and normalized on the host instead (its step then does a little less work
    than ours: the ratio errs on PyTorch's side)."""
    in_step = runs_in_step(config.data.get("normalize_in", "host"), "data.normalize_in")
    streamed = config.data.get("stream", "windows") != "windows"  # DAS blocks: raw int16
    if host_batches is not None and not in_step and not streamed:
        return host_batches
    host_config = config.copy_and_resolve_references()
    host_config.data.on_device = "never"
    if "normalize_in" in host_config.data:
        host_config.data.normalize_in = "host"
    if "stream" in host_config.data:
        host_config.data.stream = "windows"
    task, mesh = build_task(host_config), shd.make_mesh(host_config.mesh.fsdp)
    it = train_iterator(train_setup.make_input(task, mesh), host_config, mesh)
    return [next(it) for _ in range(4)]


def run_reference(config, host_batches: list[dict], steps: int, warmup: int,
                  compile_model: bool, timeout_s: float | None = None) -> dict:
    """Times the PyTorch twin in a subprocess (its own allocator and threads), same batches.
    Raises RuntimeError when it fails and subprocess.TimeoutExpired past `timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="jaxtrain-ref-") as tmp:
        spec_path, batch_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "b.npz")
        with open(spec_path, "w") as f:
            json.dump(reference_spec(config), f)
        np.savez(batch_path, **{f"{k}_{i}": np.asarray(v) for i, b in enumerate(host_batches)
                                for k, v in b.items()})
        cmd = [sys.executable, "-m", "benchmarks.torch_reference", f"--spec={spec_path}",
               f"--batches={batch_path}", f"--steps={steps}", f"--warmup={warmup}"]
        if not compile_model:
            cmd.append("--no_compile")
        # A fresh inductor cache: torch.compile pays its full compile, as XLA does here.
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor")}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if r.returncode != 0:
        raise RuntimeError(f"PyTorch reference failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def define_flags() -> None:
    """Command-line flags; defined by the script alone, so tests can import this module."""
    config_flags.DEFINE_config_file("config", None, "System config.", lock_config=True)
    flags.DEFINE_integer("steps", 50, "Timed steps.")
    flags.DEFINE_integer("warmup", 3, "Untimed steps after compile.")
    flags.DEFINE_bool("smoke", False, "Tiny run to check the harness (few steps).")
    flags.DEFINE_bool("record", False, "Append the result to benchmarks/results.jsonl.")
    flags.DEFINE_enum("reference", "", ["", "torch"],
                      "Also time the PyTorch reference of the model, same batches.")
    flags.DEFINE_bool("reference_compile", True, "torch.compile the reference (False: eager).")
    flags.DEFINE_integer("reference_timeout", 0,
                         "Seconds the reference may take (0: no limit). Past it, or when the "
                         "reference fails, the jaxtrain figures are kept with reference_error.")
    flags.DEFINE_bool("input_only", False, "Time the input pipeline alone (--steps batches).")
    flags.mark_flag_as_required("config")


def main(argv: list[str]) -> None:
    f = flags.FLAGS
    config = f.config
    steps, warmup = (f.steps, f.warmup) if not f.smoke else (3, 1)
    if f.input_only:
        return _emit(input_benchmark(config, steps), f.record)
    if f.reference:
        # JAX would otherwise take 75% of GPU memory up front and starve the reference.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    result, host_batches = benchmark(config, steps, warmup)
    if f.reference:
        try:
            ref = run_reference(config, reference_batches(config, host_batches), steps, warmup,
                                f.reference_compile,
                                f.reference_timeout or None)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            if not f.reference_timeout:
                raise
            # A bounded run (a lent GPU's minutes) keeps the jaxtrain figures, says why no ratio.
            result["reference_error"] = str(e)[-1000:]
            return _emit(result, f.record)
        result["reference"] = ref
        # Three significant figures: a ratio far below 1 keeps its precision.
        result["ratio_vs_torch"] = float(
            f'{result["samples_per_s_throughput"] / ref["samples_per_s_throughput"]:.3g}')
        if ref["trainable_params"] != result["params"]:
            raise RuntimeError(f"PyTorch reference has {ref['trainable_params']:,} trainable "
                               f"params, jaxtrain {result['params']:,}: not the same model")
    _emit(result, f.record)


def _emit(result: dict, record: bool) -> None:
    line = json.dumps(result)
    print(line)
    if record:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl")
        with open(path, "a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    define_flags()
    app.run(main)
