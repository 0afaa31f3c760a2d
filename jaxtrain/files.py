"""Files that are either whole or absent: a crash never leaves a half-written one behind, and
two runs sharing a cache never write the same file at once."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxtrain.cli import one_line


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yields a temporary name beside `path`; on success it is renamed to `path`.

    On an exception the temporary file (or directory) is removed and `path` is untouched,
    so a reader or a resumed run sees the old file or the new one, never a mix. The
    temporary name keeps `path`'s extension (some writers choose the format by it).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def made_by_one(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Holds an exclusive lock on `path`.lock while the caller makes `path` (a cache file or
    folder): runs sharing a cache (seeds started side by side) queue behind the one making it
    instead of writing the same files at once. Callers check inside the lock whether `path`
    is already complete. An advisory `flock`: the kernel drops it when its process dies, so
    a killed run never leaves the cache locked."""
    import fcntl

    from absl import logging

    lock = f"{os.path.abspath(os.fspath(path)).rstrip(os.sep)}.lock"
    held = _held.__dict__.setdefault("locks", set())
    if lock in held:  # re-entered by this thread (a maker inside generated_once): one lock
        yield
        return
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.info("waiting for another process making %s: %s", what, os.fspath(path))
            fcntl.flock(fh, fcntl.LOCK_EX)
        held.add(lock)
        try:
            yield
        finally:
            held.discard(lock)
            fcntl.flock(fh, fcntl.LOCK_UN)


_held = threading.local()  # the locks this thread holds: flock would block on its own


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """`obj` as indented JSON (numpy and jax arrays as lists), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_to_builtin)


_REQUIRED = object()


def read_json(path: str | os.PathLike[str], *, missing: str = "not found",
              default: Any = _REQUIRED) -> Any:
    """The parsed JSON file; errors are one line naming the file.

    A missing file returns `default` when one is given, else raises FileNotFoundError
    "<path>: <missing>"; a file that is not JSON raises ValueError.
    """
    path = os.fspath(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        if default is not _REQUIRED:
            return default
        raise FileNotFoundError(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({one_line(e)})") from None


def _to_builtin(x: Any) -> Any:
    if isinstance(x, np.generic | np.ndarray) or hasattr(x, "__array__"):
        return np.asarray(x).tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")
