"""The bad-input catalogue: every mistake a user can make, through the command line.

Each case runs `python -m jaxtrain.main` (or predict / evaluate) as a user would and asserts
the exit status, exactly one `jaxtrain: error:` line saying what is wrong, no traceback, and
that nothing was written: a finished workdir stays byte-for-byte the same, a new workdir is
not even created. Cases run a few at a time (each is mostly Python start-up and imports).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRE = os.path.join(ROOT, "tests", "fire_test_config.py")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # after the module; {finished}, {files}, {new} are filled in
    message: str  # a part of the one error line
    status: int = 2
    module: str = "jaxtrain.main"


def _fire(*overrides: str, workdir: str = "{new}") -> tuple[str, ...]:
    return (f"--config={FIRE}", f"--workdir={workdir}", "--config.data.cache_dir={cache}",
            *overrides)


def _on_finished(*overrides: str) -> tuple[str, ...]:
    return _fire(*overrides, workdir="{finished}")


CASES = [
    # The config file and the flags.
    Case("unknown config name", ("--config=nope", "--workdir={new}"), "unknown config 'nope'"),
    Case("missing config file", ("--config={files}/missing.py", "--workdir={new}"),
         "not found"),
    Case("config is a directory", ("--config={files}", "--workdir={new}"), "is a directory"),
    Case("config with a syntax error", ("--config={files}/syntax.py", "--workdir={new}"),
         "invalid syntax"),
    Case("config without get_config", ("--config={files}/empty.py", "--workdir={new}"),
         "has no get_config()"),
    Case("unknown variant", ("--config=das:foo", "--workdir={new}"), "unknown variant 'foo'"),
    Case("typo in the first part of a key", _fire("--config.trian.batch_size=4"),
         "unknown config key"),
    Case("typo in the last part of a key", _fire("--config.train.bach_size=4"),
         "unknown config key"),
    Case("value of the wrong type", _fire("--config.train.batch_size=abc"), "batch_size"),
    Case("stray positional argument", (*_fire(), "extra"), "unexpected arguments"),
    Case("empty workdir", _fire(workdir=""), "--workdir is empty"),
    Case("workdir is a file", _fire(workdir="{files}/syntax.py"), "is a file"),
    Case("workdir holds something else", _fire(workdir="{files}/foreign"),
         "holds no jaxtrain run"),
    # Shared config values (checked before any data are read).
    Case("batch size 0", _fire("--config.train.batch_size=0"), "train.batch_size=0"),
    Case("batch size -1", _fire("--config.train.batch_size=-1"), "train.batch_size=-1"),
    Case("batch size not a multiple of the devices", _fire("--config.train.batch_size=12"),
         "multiple of the device count 8"),
    Case("0 epochs", _fire("--config.train.epochs=0"), "train.epochs=0"),
    Case("-2 epochs", _fire("--config.train.epochs=-2"), "train.epochs=-2"),
    Case("negative learning rate", _fire("--config.optim.learning_rate=-0.001"),
         "optim.learning_rate=-0.001"),
    Case("zero learning rate", _fire("--config.optim.learning_rate=0"), "learning_rate=0"),
    Case("NaN learning rate", _fire("--config.optim.learning_rate=nan"), "learning_rate=nan"),
    Case("negative warmup", _fire("--config.optim.warmup_epochs=-1"), "optim.warmup_epochs"),
    Case("beta of 1", _fire("--config.optim.b1=1.0"), "optim.b1=1.0"),
    Case("weight average that never moves", _fire("--config.optim.ema_decay=1.0"),
         "optim.ema_decay=1.0"),
    Case("unknown compute dtype", _fire("--config.train.compute_dtype=float16"),
         "'auto', 'float32', 'bfloat16'"),
    Case("unknown PRNG", _fire("--config.train.rng_impl=mt19937"), "train.rng_impl"),
    Case("unknown early-stopping mode", _fire("--config.early_stopping.mode=up"),
         "early_stopping.mode='up'"),
    Case("early stopping on a training metric", _fire("--config.early_stopping.metric=loss"),
         "a validation metric"),
    Case("negative patience", _fire("--config.early_stopping.patience=-1"),
         "early_stopping.patience"),
    Case("plateau factor above 1", _fire("--config.reduce_on_plateau.factor=1.5"),
         "reduce_on_plateau.factor"),
    Case("negative checkpoint interval", _fire("--config.checkpoint.every_steps=-5"),
         "checkpoint.every_steps"),
    Case("fsdp not dividing the devices", _fire("--config.mesh.fsdp=3"),
         "a divisor of the device count 8"),
    Case("negative seed", _fire("--config.seed=-1"), "config.seed=-1"),
    # Fire's own config values.
    Case("window of 0 minutes", _fire("--config.data.seq_len=0"), "data.seq_len=0"),
    Case("train stride 0", _fire("--config.data.train_stride=0"), "data.train_stride=0"),
    Case("negative eval stride", _fire("--config.data.eval_stride=-1"), "data.eval_stride"),
    Case("lags that are not numbers", _fire("--config.data.diff_lags=abc"), "data.diff_lags"),
    Case("a lag longer than the window", _fire("--config.data.diff_lags=(5,100)"),
         "shorter than data.seq_len=60"),
    Case("heads not dividing d_model", _fire("--config.model.num_heads=3"),
         "a divisor of model.d_model=32"),
    Case("dropout above 1", _fire("--config.model.dropout=1.5"), "model.dropout=1.5"),
    Case("split fractions not summing to 1", _fire("--config.data.split=(0.5,0.5,0.5)"),
         "summing to 1"),
    Case("unknown normalization", _fire("--config.data.normalization=minmax"),
         "'robust', 'zscore'"),
    Case("unknown place to normalize", _fire("--config.data.normalize_in=gpu"),
         "data.normalize_in='gpu'"),
    Case("negative label smoothing", _fire("--config.train.label_smoothing=-0.1"),
         "train.label_smoothing"),
    # Other systems' config values.
    Case("DAS event threshold above 1", ("--config=das", "--workdir={new}",
                                         "--config.data.event_threshold=1.5"),
         "data.event_threshold=1.5"),
    Case("DAS transformer heads not dividing d_model",
         ("--config=das:transformer", "--workdir={new}", "--config.model.num_heads=3"),
         "a divisor of model.d_model=64"),
    Case("DAS unknown augmentation place", ("--config=das", "--workdir={new}",
                                            "--config.augment.where=gpu"), "augment.where"),
    Case("debris crop not a multiple of 16", ("--config=debris", "--workdir={new}",
                                              "--config.data.crop_size=30"), "multiple of 16"),
    Case("debris threshold above 1", ("--config=debris", "--workdir={new}",
                                      "--config.predict.threshold=2.0"), "predict.threshold"),
    # Data files.
    Case("missing data file", _fire("--config.data.path={files}/nonexistent.h5"),
         "nonexistent.h5"),
    Case("data file of random bytes", _fire("--config.data.path={files}/random.h5"),
         "random.h5"),
    Case("data file that is a directory", _fire("--config.data.path={files}/foreign"),
         "foreign"),
    Case("HDF5 file of another layout", _fire("--config.data.path={files}/other_layout.h5"),
         "other_layout.h5"),
    Case("NaN in the readings", _fire("--config.data.path={files}/nan.h5"), "nan.h5"),
    Case("a label out of range", _fire("--config.data.path={files}/bad_label.h5"),
         "bad_label.h5"),
    Case("DAS directory that does not exist",
         ("--config=das", "--workdir={new}", "--config.data.path={files}/no_such_dir"),
         "no_such_dir"),
    Case("DAS labels.json that is not JSON",
         ("--config=das", "--workdir={new}", "--config.data.path={files}/das_bad_labels"),
         "labels.json"),
    # A finished workdir and another config: nothing changes there.
    Case("rerun with another window", _on_finished("--config.data.seq_len=30"),
         "another config: data.seq_len (60 -> 30)"),
    Case("rerun with another batch size", _on_finished("--config.train.batch_size=16"),
         "train.batch_size (32 -> 16)"),
    Case("rerun with another model size", _on_finished("--config.model.d_model=64"),
         "model.d_model (32 -> 64)"),
    Case("rerun with another system", ("--config=das", "--workdir={finished}"),
         "another config"),
    Case("rerun with a damaged config.json", _fire(workdir="{files}/damaged_run"),
         "config.json: unreadable"),
    Case("rerun while another process holds the workdir", _fire(workdir="{files}/locked_run"),
         "is in use by process"),
    # The other commands.
    Case("predict from a missing workdir", ("--workdir={files}/no_run", "--input={data}",
                                            "--output={new}.csv"), "no_run",
         module="jaxtrain.predict"),
    Case("predict on a missing input", ("--workdir={finished}", "--input={files}/none.h5",
                                        "--output={new}.csv"), "none.h5",
         module="jaxtrain.predict"),
    Case("predict into a path under a file",
         ("--workdir={finished}", "--input={data}", "--output={files}/empty.py/preds.csv"),
         "empty.py", module="jaxtrain.predict"),
    Case("evaluate a directory that holds no run", ("--workdir={files}/foreign",),
         "foreign", module="jaxtrain.evaluate"),
]


def _digest(directory: str) -> dict[str, str]:
    out = {}
    for base, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _run(module: str, args: list[str], cwd: str, timeout: int = 300, **kwargs
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir) -> dict[str, str]:
    """A finished tiny fire run (through the CLI) and the bad files the cases point at."""
    root = tmp_path_factory.mktemp("catalogue")
    workdir = str(root / "finished")
    r = _run("jaxtrain.main", [f"--config={FIRE}", f"--workdir={workdir}",
                               f"--config.data.cache_dir={cache_dir}",
                               "--config.train.epochs=1"], cwd=str(root), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(workdir, "results.json")) as f:
        data = json.load(f)["data"]["path"]
    files = root / "files"
    files.mkdir()
    (files / "syntax.py").write_text("def get_config(:\n    pass\n")
    (files / "empty.py").write_text("X = 1\n")
    (files / "foreign").mkdir()
    (files / "foreign" / "notes.txt").write_text("not a run\n")
    (files / "random.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    with h5py.File(files / "other_layout.h5", "w") as f:
        f["images"] = np.zeros((2, 4, 4), np.float32)
    for name, dataset, value in (("nan.h5", "readings", np.nan), ("bad_label.h5", "label", 7)):
        shutil.copy(data, files / name)
        with h5py.File(files / name, "r+") as f:
            area = next(iter(f["areas"]))
            f["areas"][area][dataset][100] = value
    (files / "das_bad_labels").mkdir()
    (files / "das_bad_labels" / "labels.json").write_text("{not json")
    damaged = files / "damaged_run"
    shutil.copytree(workdir, damaged)
    (damaged / "config.json").write_text("{\"task\": \"fire\", ")
    locked = files / "locked_run"  # an unfinished run (a finished one is only read)
    shutil.copytree(workdir, locked)
    os.remove(locked / "results.json")
    (locked / ".lock").write_text(json.dumps({"pid": os.getpid(),
                                              "host": os.uname().nodename}))
    return {"finished": workdir, "files": str(files), "cache": cache_dir, "data": data,
            "root": str(root)}


def test_the_catalogue_has_at_least_50_cases():
    assert len(CASES) >= 50 and len({c.name for c in CASES}) == len(CASES)


def test_every_bad_input_is_one_line_and_changes_nothing(finished):
    before = {d: _digest(finished[d]) for d in ("finished",)}
    news = {c.name: os.path.join(finished["root"], f"new-{i}") for i, c in enumerate(CASES)}

    def run(case: Case) -> tuple[Case, subprocess.CompletedProcess]:
        fill = {**finished, "new": news[case.name]}
        args = [a.format(**fill) for a in case.args]
        return case, _run(case.module, args, cwd=finished["root"])

    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for case, r in pool.map(run, CASES):
            errors = [line for line in r.stderr.splitlines()
                      if line.startswith("jaxtrain: error:")]
            problems = []
            if r.returncode != case.status:
                problems.append(f"exit status {r.returncode}, expected {case.status}")
            if "Traceback" in r.stderr:
                problems.append("a traceback")
            if len(errors) != 1:
                problems.append(f"{len(errors)} error lines")
            elif case.message not in errors[0]:
                problems.append(f"message {errors[0]!r} lacks {case.message!r}")
            if os.path.exists(news[case.name]):
                problems.append("created the new workdir")
            if problems:
                failures.append(f"{case.name}: {', '.join(problems)}\n"
                                f"    stderr tail: {r.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)
    assert {d: _digest(finished[d]) for d in before} == before
    assert not os.path.exists(os.path.join(finished["finished"], ".lock"))


def test_a_stale_lock_is_taken_over_and_a_safe_change_resumes(finished, tmp_path):
    """A dead process's lock does not block, and a key that is safe to change resumes: the
    unfinished run (its results.json removed) finishes its test evaluation."""
    workdir = tmp_path / "stale"
    shutil.copytree(finished["finished"], workdir)
    os.remove(workdir / "results.json")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (workdir / ".lock").write_text(json.dumps({"pid": int(dead), "host": os.uname().nodename}))
    args = [a.format(**finished) for a in _fire("--config.train.log_every_s=5",
                                                "--config.train.epochs=1",
                                                workdir=str(workdir))]
    r = _run("jaxtrain.main", args, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from step" in r.stderr and "test (network): " in r.stdout
    assert not os.path.exists(workdir / ".lock")
    with open(workdir / "config.json") as f:
        assert json.load(f)["train"]["log_every_s"] == 1000.0  # never rewritten


def test_a_start_that_never_stepped_takes_a_corrected_config(finished, tmp_path):
    """A first start that fails before its first step (here a batch larger than the train
    split, refused after config.json is written) does not bind the workdir to its config:
    the corrected command trains there. A trained run still refuses another config."""
    workdir = tmp_path / "unstarted"
    go = [a.format(**finished) for a in _fire("--config.train.epochs=1", workdir=str(workdir))]
    r = _run("jaxtrain.main", [*go, "--config.train.batch_size=100000"], cwd=str(tmp_path))
    assert r.returncode != 0 and "fewer than" in r.stderr, r.stderr[-2000:]
    with open(workdir / "config.json") as f:
        assert json.load(f)["train"]["batch_size"] == 100000  # the failed start's
    r = _run("jaxtrain.main", go, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "never took a step" in r.stderr and "test (network): " in r.stdout
    with open(workdir / "config.json") as f:
        assert json.load(f)["train"]["batch_size"] == 32  # the run that trained
    r = _run("jaxtrain.main", [*go, "--config.train.batch_size=16"], cwd=str(tmp_path))
    assert r.returncode != 0 and "another config" in r.stderr


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs user namespaces (unshare -rm)")
@pytest.mark.parametrize("what, mount, message", [
    ("train", "ro,size=1m", "read-only file system"),
    ("train", "size=256k", "No space left on device"),
    ("predict", "ro,size=1m", "read-only file system"),
])
def test_read_only_and_full_disks_are_one_line(finished, tmp_path, what, mount, message):
    """A workdir or a predict output on a read-only file system, and a workdir on a disk that
    fills up while checkpoints are written: one line, exit 2, no traceback (orbax's writer
    threads stay quiet)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if what == "train":
        module, args = "jaxtrain.main", _fire("--config.checkpoint.every_steps=1",
                                              workdir=str(mnt / "run"))
    else:
        module, args = "jaxtrain.predict", ("--workdir={finished}", "--input={data}",
                                            f"--output={mnt}/preds.csv")
    command = " ".join(f"'{a.format(**finished)}'" for a in args)
    script = (f"mount -t tmpfs -o {mount} tmpfs {mnt} && "
              f"exec {sys.executable} -m {module} {command}")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                       timeout=600, cwd=str(tmp_path))
    errors = [line for line in r.stderr.splitlines() if line.startswith("jaxtrain: error:")]
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(errors) == 1 and message.lower() in errors[0].lower(), errors


def test_closed_event_loop_deliveries_are_dropped_and_nothing_else(monkeypatch):
    """tensorstore hands write results to orbax's closed asyncio loop after a failed save:
    those unraisable "Event loop is closed" errors are dropped; any other is still shown."""
    import asyncio
    import types

    from jaxtrain import cli

    shown = []
    monkeypatch.setattr(sys, "unraisablehook", shown.append)
    cli._quiet_closed_event_loops()
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        late = e
    # As tensorstore's C++ reports it: the traceback starts in call_soon_threadsafe.
    delivery = types.SimpleNamespace(exc_type=RuntimeError, exc_value=late,
                                     exc_traceback=late.__traceback__.tb_next, object=None)
    sys.unraisablehook(delivery)
    assert shown == []
    from_our_code = types.SimpleNamespace(exc_type=RuntimeError, exc_value=late,
                                          exc_traceback=late.__traceback__, object=None)
    other = types.SimpleNamespace(exc_type=ValueError, exc_value=ValueError("x"),
                                  exc_traceback=None, object=None)
    sys.unraisablehook(from_our_code)
    sys.unraisablehook(other)
    assert shown == [from_our_code, other]
