"""Data scaling, the fire seed's 5M-vs-50M question: accuracy and cost against data size.

    python -m benchmarks.scaling                          # CPU sizes: 50k, 200k, 500k readings
    python -m benchmarks.scaling --sizes=500000,5000000,50000000 --model=seed \
        --override=--config.train.batch_size=4096         # GPU sizes (benchmarks/suite.sh)
    python -m benchmarks.scaling --plot_only              # redraw benchmarks/scaling.png

For each size (readings over all areas, one a minute; the seed's "5M samples" are 5M
readings, 1M per area) the default fire command (`python -m jaxtrain.main --config=fire`:
transformer, then the ML ensemble) runs in a fresh workdir, in its own process, on synthetic
data generated beforehand (not timed). Recorded per size, one JSON line appended to
benchmarks/scaling.jsonl: windows per split, test accuracy and macro F1 of the transformer,
each tree member and both votes, wall time of the whole command, the transformer's train-step
time and samples/s (results.json's time_breakdown: compilation and evaluation excluded), the
ensemble's time, the device. The plot (benchmarks/scaling.png) draws accuracy and wall time
against data size with the seed's targets: accuracy 0.94-0.96, 2-4 h for 5M on an A10G.

`--model=small` (the CPU default) trains a d_model=32, 1-layer transformer so that the three
CPU sizes finish in minutes on 2 cores; `--model=seed` keeps the config's seed-sized model.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "scaling.jsonl")
PLOT = os.path.join(HERE, "scaling.png")
SEED_ACCURACY = (0.94, 0.96)
SEED_HOURS_5M = (2.0, 4.0)  # on an A10G (ml.g5.2xlarge, $1.624/h)
SMALL_MODEL = {"d_model": 32, "num_heads": 2, "num_layers": 1, "d_ff": 64}

_SIZES = flags.DEFINE_list("sizes", ["50000", "200000", "500000"], "Readings in all areas.")
_MODEL = flags.DEFINE_enum("model", "small", ["small", "seed"], "Transformer size.")
_OVERRIDES = flags.DEFINE_multi_string("override", [], "Extra --config.KEY=VALUE flags for "
                                       "every run (repeatable).")
_RECORD = flags.DEFINE_bool("record", True, "Append to benchmarks/scaling.jsonl and replot.")
_PLOT_ONLY = flags.DEFINE_bool("plot_only", False, "Only redraw the plot from the JSON lines.")
_RESULTS = flags.DEFINE_string("results", RESULTS, "The JSON-lines file to append to.")
_MACHINE = flags.DEFINE_string("machine", "", "A label for this machine in the table and plot "
                               "(default: the device kind and host CPU count).")


def run_size(readings: int) -> dict[str, Any]:
    """One default fire command at `readings` readings; its figures."""
    from configs.fire import get_config
    from jaxtrain.tasks.fire.task import data_path

    config = get_config()
    per_area = readings // config.data.num_areas
    overrides = [f"--config.data.samples_per_area={per_area}", *_OVERRIDES.value]
    if _MODEL.value == "small":
        overrides += [f"--config.model.{k}={v}" for k, v in SMALL_MODEL.items()]
    config.data.samples_per_area = per_area
    data_path(config)  # generate (or find) the data first: not part of the training cost
    with tempfile.TemporaryDirectory(prefix="jaxtrain-scaling-") as workdir:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jaxtrain.main", "--config=configs/fire.py",
                        f"--workdir={workdir}", *overrides], cwd=ROOT, check=True)
        wall = time.perf_counter() - t0
        with open(os.path.join(workdir, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
            batch_size = json.load(f)["train"]["batch_size"]
    ens, times = results["ensemble"], results["time_breakdown"]
    windows = results["data"]["windows"]
    import jax

    return {
        "readings": readings, "windows": windows, "model": _MODEL.value,
        "params": results["setup"]["parameters"], "epochs": results["epochs_trained"],
        "batch_size": batch_size, "overrides": overrides,
        "accuracy": {c: v["accuracy"] for c, v in ens["summary"].items()},
        "macro_f1": {c: v["macro_f1"] for c, v in ens["summary"].items()},
        "chosen": ens["chosen"], "wall_s": wall, "time_breakdown": times,
        "transformer_train_s": times["train_steps_s"],
        "transformer_samples_per_s": results["final_step"] * batch_size
        / max(times["train_steps_s"], 1e-9),
        "ensemble_s": sum(ens["timing"].values()), "ensemble_timing": ens["timing"],
        "device": results["setup"]["device_kind"], "backend": results["setup"]["backend"],
        "host_cpus": len(os.sched_getaffinity(0)), "load_avg_1m": os.getloadavg()[0],
        "machine": _MACHINE.value or f"{results['setup']['device_kind']}, "
                                     f"{len(os.sched_getaffinity(0))} CPU cores",
        "python": platform.python_version(), "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def plot(path: str, rows: list[dict[str, Any]]) -> str:
    """Accuracy (transformer, members, votes) and wall time against readings, log x, with the
    seed's accuracy band and its 2-4 h for 5M readings on an A10G."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    acc, cost = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key in sorted({(r["machine"], r["model"]) for r in rows}):
        group = sorted((r for r in rows if (r["machine"], r["model"]) == key),
                       key=lambda r: r["readings"])
        x = [r["readings"] for r in group]
        label = f"{key[0]}, {key[1]} transformer"
        for model, style in (("transformer", "o-"), ("random_forest", "s--"),
                             ("gradient_boosting", "^--"), ("soft_vote", "D-")):
            acc.plot(x, [r["accuracy"][model] for r in group], style, label=f"{model} ({label})")
        cost.plot(x, [r["wall_s"] / 3600 for r in group], "o-", label=f"whole run ({label})")
        cost.plot(x, [r["transformer_train_s"] / 3600 for r in group], "s--",
                  label=f"transformer training ({label})")
    acc.axhspan(*SEED_ACCURACY, color="tab:green", alpha=0.15, label="seed target 0.94-0.96")
    acc.set_xscale("log")
    acc.set_xlabel("readings (all areas)")
    acc.set_ylabel("test accuracy")
    acc.set_title("accuracy vs data size")
    acc.legend(fontsize=6)
    cost.errorbar([5e6], [sum(SEED_HOURS_5M) / 2], yerr=[[1.0], [1.0]], fmt="*",
                  color="tab:red", markersize=12, capsize=6, label="seed: 2-4 h for 5M (A10G)")
    cost.set_xscale("log")
    cost.set_yscale("log")
    cost.set_xlabel("readings (all areas)")
    cost.set_ylabel("wall time (h)")
    cost.set_title("cost vs data size")
    cost.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _load(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str]) -> None:
    del argv
    if not _PLOT_ONLY.value:
        for size in _SIZES.value:
            row = run_size(int(size))
            print(json.dumps(row), flush=True)
            if _RECORD.value:
                with open(_RESULTS.value, "a") as f:
                    f.write(json.dumps(row) + "\n")
    if _RECORD.value or _PLOT_ONLY.value:
        print(plot(PLOT, _load(_RESULTS.value)))


if __name__ == "__main__":
    app.run(main)
