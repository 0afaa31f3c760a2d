"""Built-in synthetic data: generated once per (generator code, parameters), then reused."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
from absl import logging
from jax.experimental import multihost_utils

from jaxtrain import files


def generator_version(generator: ModuleType, params: dict[str, Any]) -> str:
    """Hash of the generator module's own source and the parameters it is called with.

    Only the generator's module counts: fixing a reader, a model or augmentation never
    regenerates data (and never silently changes what experiments train on); changing how
    data are made, or with what, always does.
    """
    h = hashlib.sha1(inspect.getsource(generator).encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:8]


def generated_once(name: str, *, cache_dir: str, generator: ModuleType,
                   params: dict[str, Any], make: Callable[[str], None], done: str = "") -> str:
    """Path of synthetic data made by `make(path)` once, then reused.

    The path is `cache_dir/<name>`, with `{version}` in `name` (or a `-<version>` suffix)
    replaced by `generator_version(generator, params)`. `done` names the file inside a
    generated directory that is written last (its presence means complete). Process 0
    generates while the others wait; a host without a shared file system then makes its own.
    """
    version = generator_version(generator, params)
    name = name.format(version=version) if "{version}" in name else f"{name}-{version}"
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), name)
    marker = os.path.join(path, done) if done else path

    def generate() -> None:
        with files.made_by_one(path, "synthetic data"):
            if os.path.exists(marker):  # made by another run while this one waited
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            logging.info("generating synthetic data: %s", path)
            make(path)

    if not os.path.exists(marker) and jax.process_index() == 0:
        generate()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"generated {name}")
        if not os.path.exists(marker):
            generate()
    return path


def configured_or_generated(path: str, what: str, generated: Callable[[], str]) -> str:
    """`config.data.path` when set (it must exist), else the built-in synthetic data."""
    if not path:
        return generated()
    if not os.path.exists(os.path.expanduser(path)):
        raise FileNotFoundError(f"{what} not found: {path} (config.data.path)")
    return os.path.abspath(os.path.expanduser(path))
