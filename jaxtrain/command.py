"""The `jaxtrain` command: `jaxtrain COMMAND [flags]`, one entry point for every stage.

  train     train a system from a config (the default: `jaxtrain --config=...` trains)
  predict   predict new data with a trained run or an exported bundle
  evaluate  score a finished run's saved predictions again
  export    write a versioned bundle of a finished run
  report    write the HTML report of one run, or compare several
  config    print the resolved config (after --config.KEY=VALUE overrides and its checks)

`jaxtrain --version` prints the version. Every command is also `python -m jaxtrain.<module>`
(train: jaxtrain.main) with the same flags; each takes --help.
"""

from __future__ import annotations

import importlib.metadata
import runpy
import sys

# command -> the module whose `python -m` form it is
MODULES = {"train": "jaxtrain.main", "predict": "jaxtrain.predict",
           "evaluate": "jaxtrain.evaluate", "export": "jaxtrain.export",
           "report": "jaxtrain.report", "config": "jaxtrain.main"}


def version() -> str:
    try:
        return importlib.metadata.version("jaxtrain")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def entry_point(argv: list[str] | None = None) -> None:
    """Dispatches on the first argument; the command's own flag parsing does the rest (a
    process defines only its command's flags: several define --workdir)."""
    argv = list(sys.argv if argv is None else argv)
    first = argv[1] if len(argv) > 1 else ""
    if first in ("--version", "-V"):
        print(f"jaxtrain {version()}")
        return
    command, rest = (first, argv[2:]) if first in MODULES else ("train", argv[1:])
    sys.argv = [f"jaxtrain {command}", *rest]
    if command in ("train", "config"):
        from jaxtrain import main

        main.entry_point() if command == "train" else main.config_entry_point()
        return
    runpy.run_module(MODULES[command], run_name="__main__")
