"""Configs by name or by path, for `--config`: `fire`, `das:tcn`, `configs/das.py:tcn`, `my.py`.

A name is a config shipped with jaxtrain: the checkout's configs/, installed as the package
`jaxtrain.configs`, so names work from a wheel as well as from a checkout. A path (it ends in
`.py` or holds a `/`) is any file with a `get_config(variant=None)` returning a ConfigDict.
`:VARIANT` is passed to `get_config`; a config file may list its variants in `VARIANTS`.
Every mistake in the name, the file or the variant is one line: a `ConfigError`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import textwrap
import types

from absl import flags
from ml_collections import ConfigDict


class ConfigError(ValueError):
    """A config that cannot be found or loaded, said in one line."""


def shipped_dir() -> str:
    """The directory of the configs shipped with jaxtrain (the package `jaxtrain.configs`)."""
    import jaxtrain.configs

    return os.path.dirname(os.path.abspath(jaxtrain.configs.__file__))


def names() -> list[str]:
    """The shipped configs, by the names `--config` takes."""
    return sorted(f.removesuffix(".py") for f in os.listdir(shipped_dir())
                  if f.endswith(".py") and not f.startswith("_"))


def find(where: str) -> str:
    """The config file `where` names: a path that ends in `.py` or holds a `/` as it is, a
    shipped config's name as its file, anything else as a path if it exists."""
    if where.endswith(".py") or "/" in where or os.sep in where:
        return where
    if where in names():
        return os.path.join(shipped_dir(), f"{where}.py")
    if os.path.exists(where):
        return where
    raise ConfigError(f"unknown config {where!r}; known: {', '.join(names())}, "
                      "or the path of a config file")


def load_module(path: str) -> types.ModuleType:
    """Runs the config file at `path` and returns it as the module `jaxtrain_config_<stem>`."""
    if os.path.isdir(path):
        raise ConfigError(f"config {path} is a directory, not a config file")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} not found")
    name = "jaxtrain_config_" + os.path.basename(path).removesuffix(".py")
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # as an import would: dataclasses and pickle look modules up
    try:
        loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"config file {path}, line {e.lineno}: {e.msg}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path} has no get_config()")
    return module


def variants(module: types.ModuleType) -> tuple[str, ...] | None:
    """The variants a config file declares (`VARIANTS`); None when it declares none."""
    declared = getattr(module, "VARIANTS", None)
    return None if declared is None else tuple(declared)


def load(spec: str) -> ConfigDict:
    """The config `--config=spec` means: `NAME[:VARIANT]` or `PATH[:VARIANT]`."""
    where, _, variant = spec.partition(":")
    module = load_module(find(where))
    known = variants(module)
    if variant and known is not None and variant not in known:
        choices = f"known: {', '.join(known)}" if known else "it has no variants"
        raise ConfigError(f"unknown variant {variant!r} of config {where}; {choices}")
    config = module.get_config(variant) if variant else module.get_config()
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"get_config() of config {where} returned {type(config).__name__}, "
                          "not a ConfigDict")
    return config


def catalogue(width: int = 96) -> str:
    """The shipped configs with their variants and the first line of their docstrings."""
    lines = []
    for name in names():
        module = load_module(find(name))
        about = (module.__doc__ or "").strip().split("\n\n")[0]
        lines += textwrap.wrap(" ".join(about.split()), width, initial_indent=f"  {name:<8} ",
                               subsequent_indent=" " * 11)
        if variants(module):
            lines.append(" " * 11 + "variants: " + ", ".join(f"{name}:{v}"
                                                           for v in variants(module)))
    return "\n".join(lines)


class ConfigFlagParser(flags.ArgumentParser):
    """Parses `--config=NAME[:VARIANT]` or `--config=PATH[:VARIANT]` into a locked ConfigDict."""

    def parse(self, argument: str) -> ConfigDict:
        config = load(argument)
        config.lock()
        return config

    def flag_type(self) -> str:
        return "config object"
