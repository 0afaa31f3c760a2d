"""Training from the command line: `jaxtrain train --config=NAME --workdir=DIR` (also
`jaxtrain --config=...` and `python -m jaxtrain.main`; `jaxtrain config` prints the resolved
config instead, `jaxtrain.command`).

`jaxtrain --help` lists the configs and their variants. Config overrides:
`--config.train.batch_size=512`. Rerunning with the same workdir resumes (or reports that the
run has finished; `--train_further` with a larger `train.epochs` trains it on). Errors in the
user's input end with one line on stderr and exit status 2; SIGTERM/SIGINT save a checkpoint
and exit with 128 + signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from jaxtrain import config_files
from jaxtrain.cli import describe, fail, flag_lines, is_user_error, start
from jaxtrain.run_files import NETWORK, RESULTS_FILE, deployed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A shipped config by name (NAME or NAME:VARIANT, listed above) or a "
    "config file by path (configs/NAME.py:VARIANT, my_config.py), with overrides "
    "--config.KEY=VALUE.", lock_config=True)
# ml_collections' flag (it makes the --config.KEY overrides) with a parser that takes names too.
flags.FLAGS["config"].parser = config_files.ConfigFlagParser()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results; "
                               "rerun with the same one to resume.")
_TRAIN_FURTHER = flags.DEFINE_bool(
    "train_further", False, "Train a finished run on to a larger --config.train.epochs (from "
    "its last checkpoint, at its schedule's final learning rate); its results.json is kept as "
    "results.epochs_<N>.json and the new one records it.")

ABOUT = """\
jaxtrain trains a detection, classification or segmentation model on one of its systems'
data (synthetic data are generated on first use and cached) or on your own files: one
sharded, jitted train step on every local device (GPU, TPU or CPU), checkpoints that resume
exactly, TensorBoard logs, and a test report with the best checkpoint at the end
(WORKDIR/results.json, predictions and figures)."""

def examples() -> str:
    """Example commands, with the shipped configs' names (`usage`)."""
    variants = {n: config_files.variants(config_files.load_module(config_files.find(n)))
                for n in config_files.names()}
    name = next(iter(variants))
    varied = next((n for n, v in variants.items() if v), name)
    variant = (variants[varied] or ("",))[-1]
    spec = f"{varied}:{variant}" if variant else varied
    return f"""\
Train:
  jaxtrain train --config={name} --workdir=runs/{name}
  jaxtrain train --config={spec} --workdir=runs/{varied}_{variant} --config.train.epochs=10
  jaxtrain train --config=my_config.py --workdir=runs/mine   (start from a copy of a shipped one)
  jaxtrain config --config={name} --config.train.epochs=3    (print the resolved config)
Resume: rerun the same command with the same --workdir. An interrupted run (SIGTERM, a
  crash) continues from its last checkpoint; a finished run only prints its results, unless
  --train_further asks for more epochs (--config.train.epochs larger than it trained).
Predict with a trained run (or an exported bundle):
  jaxtrain predict --workdir=runs/{name} --input=NEW_FILE_OR_DIR --output=preds.csv
  (also: python -m jaxtrain.predict --workdir=... with the same flags)
Other commands: {", ".join(f"jaxtrain {c}" for c in COMMANDS)}; each takes --help."""


COMMANDS = ("train", "predict", "evaluate", "export", "report", "config")


def validate(config, system) -> None:
    """Every config value, before any data are generated or read (one line per problem)."""
    from jaxtrain import config_checks

    config_checks.check_shared(config)
    if system.validate is not None:
        system.validate(config)


def run(config, workdir: str, on_step=None, train_further: bool = False) -> dict:
    """Everything after flag parsing; importable so tests and notebooks can call it.

    Order matters: the config is validated and compared with the workdir's saved one before
    anything is written; then the workdir is locked, the data are built, and config.json is
    written once, for a new run only. `train_further`: a finished run trains on to
    `config.train.epochs` (more than it trained) instead of reporting its results.
    """
    import jax

    from jaxtrain import config_checks, sharding, train
    from jaxtrain import workdir as workdirs
    from jaxtrain.task import load_system

    system = load_system(config.task)
    validate(config, system)
    workdir = workdirs.resolve(workdir)
    saved = workdirs.check_identity(workdir, config, system.safe_to_change)  # reads only
    d = config.distributed
    sharding.maybe_initialize_distributed(d.coordinator_address, d.num_processes,
                                          d.process_id, d.enabled)
    config_checks.check_devices(config, jax.device_count())
    finished = workdirs.finished_results(workdir) if saved is not None else None
    if finished is not None and not train_further:
        logging.info("this run already finished; its results are in %s (a new --workdir "
                     "trains again; --train_further with a larger --config.train.epochs "
                     "trains it on)", os.path.join(workdir, RESULTS_FILE))
        return finished
    further = workdirs.check_further(workdir, config, finished) if finished else None
    is_main = jax.process_index() == 0
    created = not os.path.exists(workdir)
    workdirs.make(workdir)
    with workdirs.locked(workdir) if is_main else contextlib.nullcontext():
        # again, now that we hold the lock
        saved = workdirs.check_identity(workdir, config, system.safe_to_change)
        if saved is None and is_main and workdirs.saved_config(workdir) is not None:
            removed = workdirs.clear_unstarted(workdir)
            logging.info("workdir %s held a start that never took a step, with another "
                         "config: starting afresh with this one (removed %s)", workdir,
                         ", ".join(removed))
        try:
            task = system.build(config, workdir)
        except BaseException:
            if created and is_main:  # a new run that never started leaves nothing behind
                workdirs.remove_new(workdir)
            raise
        if is_main:
            workdirs.write_config(workdir, config)
            if further is not None:  # after the build: a failed one leaves the run as it was
                workdirs.set_aside_results(workdir, further)
        return train.train_and_evaluate(
            config, workdir, task, on_step=on_step,
            schedule_epochs=workdirs.schedule_epochs(saved, config), further=further)


def train() -> None:
    """`jaxtrain train`: the run of --config in --workdir, its summary printed."""
    config = _CONFIG.value
    workdir = _WORKDIR.value
    import jax

    from jaxtrain.train import Diverged, Interrupted

    # Compiled steps are cached on disk: a restart or a second run skips most compile time.
    # Set here, not in run(): a library call must not change the process's global JAX config.
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(os.path.expanduser(config.data.cache_dir), "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        results = run(config, workdir, train_further=_TRAIN_FURTHER.value)
    except Interrupted as e:
        logging.warning("%s", e)
        print(f"jaxtrain: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except Diverged as e:
        fail(str(e), status=3, hard=True)
    except Exception as e:
        if not is_user_error(e):
            raise  # a bug: keep the traceback
        fail(describe(e), hard=True)
    print_summary(results, os.path.join(workdir, RESULTS_FILE))


def print_summary(results: dict, results_path: str) -> None:
    """The deployed model's headline test metrics (every test metric for runs from before
    `headline` was recorded), the network's when another model is deployed, the baseline's."""
    model = deployed(results)
    keys = [k for k in results.get("headline", model["test"]) if k in model["test"]]
    if results.get("already_finished"):
        print(f"already finished: {results_path}")
    print(f"test ({model['model']}): " + _short({k: model["test"][k] for k in keys}))
    if model["model"] != NETWORK:
        print(f"test ({NETWORK}): " + _short({k: results["test"].get(k) for k in keys}))
    if "baseline" in results:
        print("baseline: " + _short({k: v for k, v in results["baseline"].items()
                                     if isinstance(v, int | float)}))
    print(f"every metric: {results_path}")


def _short(metrics: dict) -> str:
    """JSON with 4 significant digits (results.json keeps the exact values)."""
    return json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v
                       for k, v in metrics.items()})


def print_config() -> None:
    """`jaxtrain config --config=NAME [--config.KEY=VALUE ...]`: the resolved config as JSON,
    after the checks a run makes (an invalid value is the one-line error a run would give)."""
    from jaxtrain.task import load_system

    config = _CONFIG.value
    validate(config, load_system(config.task))
    print(config.to_json_best_effort(indent=2))


def usage() -> str:
    """`jaxtrain --help`: what it does, the shipped configs, example commands, the flags."""
    return "\n\n".join([
        "USAGE: jaxtrain [train] --config=CONFIG --workdir=WORKDIR [--config.KEY=VALUE ...]\n"
        "       jaxtrain COMMAND --help   (COMMAND: " + ", ".join(COMMANDS) + ")\n"
        "       jaxtrain --version",
        ABOUT,
        "Configs (--config=NAME or NAME:VARIANT, or the path of a config file; shipped in\n"
        f"{config_files.shipped_dir()}):\n{config_files.catalogue()}",
        examples(),
        "Flags:\n" + flag_lines([f.name for f in (_CONFIG, _WORKDIR, _TRAIN_FURTHER)]),
        "Try --helpfull for every flag (logging and the libraries' own)."])


def entry_point() -> None:
    start(train, required=("config", "workdir"), usage=usage)


def config_entry_point() -> None:
    start(print_config, required=("config",), usage=usage)


if __name__ == "__main__":
    entry_point()
