"""A workdir's identity: one config per workdir, one process at a time.

`config.json` is written once, when a run starts in a new workdir. A rerun compares its
config with the saved one before anything in the workdir is touched: the same config (or one
that differs only in `SAFE_TO_CHANGE` keys) resumes or reports the finished run; anything else
stops with one line listing the differing keys (a system adds its own safe keys:
`System.safe_to_change`). A lock file (pid and host of its owner) keeps
a second process out; the lock of a process that has died is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import ml_collections

from jaxtrain import files
from jaxtrain.run_files import CONFIG_FILE, RESULTS_FILE, deployed

LOCK_FILE = ".lock"

# Keys a rerun may change without making it another run. Logging cadence, input workers,
# where synthetic data are cached, how often checkpoints are kept, how processes find each
# other: none changes what is trained. `train.epochs` is the one training key: see
# `schedule_epochs` (README: "Rerunning a workdir").
SAFE_TO_CHANGE = (
    "train.epochs",
    "train.log_every_s",
    "train.report",
    "train.profile_steps",
    "data.worker_count",
    "data.read_threads",
    "data.cache_dir",
    "data.in_memory_gib",
    "checkpoint.every_steps",
    "checkpoint.keep_every_steps",
    "distributed.",
)

# What jaxtrain itself writes into a workdir: a directory holding anything else and no
# config.json is not a run, and is not trained into (`--workdir=.` in a source tree).
OWN_ENTRIES = ("checkpoints", "tb", "predictions", "normalization.json", "history.csv",
               LOCK_FILE, CONFIG_FILE)


class WorkdirError(ValueError):
    """A workdir that cannot take this run, said in one line."""


def resolve(workdir: str | None) -> str:
    """The absolute workdir; an empty or missing `--workdir` is an error, not the cwd."""
    if not workdir or not workdir.strip():
        raise WorkdirError("--workdir is empty: name a directory for the run (a new one to "
                           "start a run, an existing one to resume it)")
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} is a file, not a directory")
    return workdir


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.batch_size": 64, ...} from a nested dict; tuples as lists (JSON's view)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = json.loads(json.dumps(v, default=str))
    return out


def _safe(key: str, safe_keys: Sequence[str]) -> bool:
    return any(key == s or (s.endswith(".") and key.startswith(s))
               for s in (*SAFE_TO_CHANGE, *safe_keys))


def differences(saved: dict[str, Any], config: ml_collections.ConfigDict,
                safe_keys: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(keys that make it another run, safe keys that changed), each `key (saved -> now)`;
    `safe_keys`: the system's own (`System.safe_to_change`)."""
    old, new = flatten(saved), flatten(config.to_dict())
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") !=
                     new.get(k, "<absent>"))
    describe = [f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})"
                for k in changed]
    unsafe = [d for k, d in zip(changed, describe, strict=True) if not _safe(k, safe_keys)]
    safe = [d for k, d in zip(changed, describe, strict=True) if _safe(k, safe_keys)]
    return unsafe, safe


def saved_config(workdir: str) -> dict[str, Any] | None:
    """The workdir's config.json, None if it has none; a damaged one is a one-line error."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkdirError(f"{path}: unreadable ({e}); it identifies the run in {workdir}: "
                           "restore it, or start a new run in a new --workdir") from None
    if not isinstance(saved, dict):
        raise WorkdirError(f"{path}: not a config (a JSON object expected)")
    return saved


def check_identity(workdir: str, config: ml_collections.ConfigDict,
                   safe_keys: Sequence[str] = ()) -> dict[str, Any] | None:
    """Reads only: raises `WorkdirError` unless `workdir` is new, empty, or holds this run
    (`safe_keys`: the system's own keys a rerun may change, `System.safe_to_change`).

    Returns the saved config (None for a new run).
    """
    saved = saved_config(workdir)
    if saved is None:
        if os.path.isdir(workdir):
            foreign = sorted(set(os.listdir(workdir)) - set(OWN_ENTRIES))
            if foreign:
                raise WorkdirError(
                    f"workdir {workdir} is not empty and holds no jaxtrain run (no "
                    f"{CONFIG_FILE}; found {', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}): choose a new or empty directory")
        return None
    unsafe, _ = differences(saved, config, safe_keys)
    if unsafe and never_stepped(workdir):
        return None  # a start that failed before its first step: the corrected config wins
    if unsafe:
        shown = "; ".join(unsafe[:4]) + (f"; and {len(unsafe) - 4} more" if len(unsafe) > 4
                                         else "")
        raise WorkdirError(
            f"workdir {workdir} holds a run with another config: {shown}. Rerun without "
            "these changes to resume it, or use a new --workdir to start a new run (README: "
            "Rerunning a workdir)")
    return saved


def never_stepped(workdir: str) -> bool:
    """True when `workdir` holds no checkpoint step and no results: its run failed to start
    (e.g. "train split has 2 records, fewer than train.batch_size"), so nothing trained there
    binds the config of the next start."""
    if os.path.exists(os.path.join(workdir, RESULTS_FILE)):
        return False
    checkpoints = os.path.join(workdir, "checkpoints")
    return not (os.path.isdir(checkpoints)
                and any(name.isdigit() for name in os.listdir(checkpoints)))


def clear_unstarted(workdir: str) -> list[str]:
    """Removes what a start that never stepped left in `workdir` (its config.json, an
    empty checkpoint directory, a normalization fitted to other data, TensorBoard files)
    before another config starts there; returns the names removed. The lock stays."""
    if not never_stepped(workdir):
        raise WorkdirError(f"workdir {workdir} holds a trained run: not clearing it")
    removed = []
    for name in OWN_ENTRIES:
        path = os.path.join(workdir, name)
        if name == LOCK_FILE or not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed.append(name)
    return removed


def finished_results(workdir: str) -> dict[str, Any] | None:
    """A finished run's results.json (with "already_finished": True), None before it ends."""
    path = os.path.join(workdir, RESULTS_FILE)
    if not os.path.exists(path):
        return None
    return files.read_json(path) | {"already_finished": True}


def check_further(workdir: str, config: ml_collections.ConfigDict,
                  previous: dict[str, Any]) -> dict[str, Any]:
    """What training the finished run in `workdir` (its results: `previous`) further
    records (results.json "trained_further"), or a `WorkdirError` when `train.epochs` asks
    for no more epochs."""
    trained = int(previous.get("epochs_trained", 0))
    wanted = int(config.train.epochs)
    if wanted <= trained:
        raise WorkdirError(
            f"--train_further: train.epochs={wanted} is not more than the {trained} epochs "
            f"the run in {workdir} trained; ask for more, e.g. "
            f"--config.train.epochs={trained + max(1, trained // 2)}")
    return {"from_epochs": trained, "to_epochs": wanted,
            "previous_results": f"results.epochs_{trained}.json",
            "previous_best_step": previous.get("best_step"),
            "previous_test": deployed(previous)["test"],
            "earlier": previous.get("trained_further", [])}


def set_aside_results(workdir: str, further: dict[str, Any]) -> None:
    """Moves the finished run's results.json to `further["previous_results"]` (kept, never
    overwritten) so the run trains on; the new results.json records both."""
    kept = os.path.join(workdir, further["previous_results"])
    if os.path.exists(kept):
        raise WorkdirError(f"{kept} exists already: move it away to train this run further")
    os.replace(os.path.join(workdir, RESULTS_FILE), kept)


def schedule_epochs(saved: dict[str, Any] | None, config: ml_collections.ConfigDict) -> int:
    """The epochs the learning-rate schedule spans: those of the run's first start.

    A rerun's `train.epochs` only moves where training stops (earlier: stops at that epoch;
    later: continues at the schedule's final learning rate), so resuming never re-stretches
    the schedule of steps already taken.
    """
    if saved is None:
        return int(config.train.epochs)
    return int(saved.get("train", {}).get("epochs", config.train.epochs))


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """config.json, written once (atomically) when the run starts; never rewritten."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        files.write_json_atomic(path, config.to_dict())


def _owner_alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell from here: another host's process is presumed alive
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
    """Holds WORKDIR/.lock for the block; a live owner's lock is a `WorkdirError`."""
    path = os.path.join(workdir, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        _acquire(path, me)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir} is not writable: {_reason(e)}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            if json.load(f) == me:
                os.remove(path)


def _acquire(path: str, me: dict[str, Any]) -> None:
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None or _owner_alive(owner):
                owner = owner or {}
                raise WorkdirError(
                    f"workdir {os.path.dirname(path)} is in use by process "
                    f"{owner.get('pid', '?')} on {owner.get('host', '?')} ({path}); wait for "
                    "it to finish, or delete the lock file if that process is gone") from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # stale: its owner died without releasing it
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise WorkdirError(f"could not take the lock {path}")


def _read_owner(path: str) -> dict[str, Any] | None:
    """The lock's owner; {} for a lock its dead owner left half-written, None while a
    live owner may still be writing it (younger than a few seconds)."""
    try:
        with open(path) as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        with contextlib.suppress(OSError):
            if time.time() - os.path.getmtime(path) < 5:
                return None
        return {}


def _reason(e: OSError) -> str:
    return "read-only file system" if e.errno == errno.EROFS else (e.strerror or str(e))


def make(workdir: str) -> None:
    """Creates the workdir; an unwritable place is one line naming it."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir} is not writable: {_reason(e)}") from None


def remove_new(workdir: str) -> None:
    """Removes a workdir this process created for a run that failed before it started
    (no config.json yet), so a corrected rerun finds a new workdir, not a half-made one."""
    if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        shutil.rmtree(workdir, ignore_errors=True)
