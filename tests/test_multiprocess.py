"""Two JAX processes x 4 CPU devices on localhost == one process x 8 devices; resume 2 <-> 1.

The processes form one global mesh through `jax.distributed.initialize` (gloo collectives),
exactly as on a multi-host cluster.
"""

import csv
import os
import socket
import subprocess
import sys

import pytest

from tests.fire_test_config import ROOT

TINY = ["--config=configs/fire.py", "--config.ensemble.enabled=False",
        "--config.train.report=False", "--config.data.samples_per_area=4000",
        "--config.data.blocks_per_area=8", "--config.data.train_stride=8",
        "--config.data.eval_stride=8", "--config.model.num_layers=1", "--config.model.d_model=32",
        "--config.model.d_ff=64", "--config.model.num_heads=2", "--config.train.batch_size=32",
        "--config.train.log_every_s=1000", "--config.optim.learning_rate=3e-3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _launch(workdir, cache_dir, processes, devices, *extra):
    args = [sys.executable, "-m", "jaxtrain.main", *TINY, f"--workdir={workdir}",
            f"--config.data.cache_dir={cache_dir}", *extra]
    if processes == 1:
        procs = [subprocess.Popen(args, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)]
    else:
        port = _free_port()
        dist = ["--config.distributed.enabled=True",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                f"--config.distributed.num_processes={processes}"]
        procs = [subprocess.Popen([*args, *dist, f"--config.distributed.process_id={i}"],
                                  cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for i in range(processes)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=400)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outs


def _history(workdir):
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_two_processes_match_one_and_resume_across_process_counts(tmp_path, cache_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    _launch(one, cache_dir, 1, 8, "--config.train.epochs=1")
    outs = _launch(two, cache_dir, 2, 4, "--config.train.epochs=1")
    assert any("process 1 of 2" in o for o in outs)
    h1, h2 = _history(one), _history(two)
    for key in ("train/loss", "val/accuracy", "val/macro_f1"):
        assert float(h2[0][key]) == pytest.approx(float(h1[0][key]), rel=2e-3, abs=2e-3), key

    # The 2-process checkpoint (epoch 1) resumes in one process to finish epoch 2.
    os.remove(two / "results.json")
    outs = _launch(two, cache_dir, 1, 8, "--config.train.epochs=2")
    assert "resumed from step" in outs[0]
    h2 = _history(two)
    assert len(h2) == 2
    # epoch 2 differs from the straight run only by the epoch-1 cosine schedule; it must train
    assert float(h2[1]["train/loss"]) < float(h2[0]["train/loss"])

    # And the other way round: the 1-process checkpoint resumes in two processes, and its
    # epoch 2 matches the 2 -> 1 run's (same data order, near-equal epoch-1 states).
    os.remove(one / "results.json")
    outs = _launch(one, cache_dir, 2, 4, "--config.train.epochs=2")
    assert all("resumed from step" in o for o in outs)
    h1 = _history(one)
    assert len(h1) == 2
    for key in ("train/loss", "val/accuracy", "val/macro_f1"):
        assert float(h1[1][key]) == pytest.approx(float(h2[1][key]), rel=5e-3, abs=5e-3), key
