"""Command line: `python -m jaxtrain.main --config=configs/fire.py --workdir=/tmp/fire`.

Config overrides: `--config.train.batch_size=512`. Rerunning with the same workdir resumes
(or reports that the run has finished). Errors in the user's input end with one line on
stderr and exit status 2; SIGTERM/SIGINT save a checkpoint and exit with 128 + signal.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxtrain.cli import USER_ERRORS, fail, quiet_library_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file "
                                          "(configs/<task>.py[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.mark_flags_as_required(["config", "workdir"])

def check_workdir(workdir: str) -> str:
    """Creates the workdir and proves it is writable before any work is done."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
    return workdir


def run(config, workdir: str, on_step=None) -> dict:
    """Everything after flag parsing; importable so tests and notebooks can call it."""
    import jax

    from jaxtrain import sharding, train, writers

    workdir = check_workdir(workdir)
    d = config.distributed
    sharding.maybe_initialize_distributed(d.coordinator_address, d.num_processes,
                                          d.process_id, d.enabled)
    if jax.process_index() == 0:
        writers.write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())
    try:
        task_module = importlib.import_module(f"jaxtrain.tasks.{config.task}")
    except ModuleNotFoundError:
        raise ValueError(f"unknown task {config.task!r} (config.task)") from None
    task = task_module.build(config, workdir)
    return train.train_and_evaluate(config, workdir, task, on_step=on_step)


def main(argv: list[str]) -> None:
    quiet_library_logs()
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    import jax

    from jaxtrain.train import Interrupted

    # Compiled steps are cached on disk: a restart or a second run skips most compile time.
    # Set here, not in run(): a library call must not change the process's global JAX config.
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(os.path.expanduser(config.data.cache_dir), "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        results = run(config, workdir)
    except Interrupted as e:
        logging.warning("%s", e)
        print(f"jaxtrain: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except USER_ERRORS as e:
        fail(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
    headline = results.get("headline") or ["accuracy", "macro_f1"]  # the task's key metrics
    summary = {k: results.get("test", {}).get(k) for k in headline}
    if results.get("already_finished"):
        print(f"already finished: {os.path.join(workdir, 'results.json')}")
    print("test: " + json.dumps(summary))
    if "baseline" in results:
        print("baseline: " + json.dumps({k: results["baseline"].get(k)
                                         for k in ("accuracy", "macro_f1")}))


def entry_point() -> None:
    try:
        app.run(main)
    except AttributeError as e:  # a mistyped --config.key override
        detail = str(e)
        with contextlib.suppress(ValueError, SyntaxError):  # ml_collections wraps it in a repr
            detail = str(ast.literal_eval(detail))
        detail = " ".join(detail.replace("'", "").split())
        fail(f"unknown config key in --config overrides: {detail}")


if __name__ == "__main__":
    entry_point()
