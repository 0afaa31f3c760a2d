"""What every command-line entry point shares: one-line errors and readable logs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from absl import logging

T = TypeVar("T")

# Errors caused by the user's input (files, config values): reported in one line, exit 2.
USER_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
               ValueError)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2."""
    print(f"jaxtrain: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_cli(fn: Callable[[], T]) -> T:
    """`fn()`, with library logs kept quiet and a user error ending as one line, exit 2."""
    quiet_library_logs()
    try:
        return fn()
    except USER_ERRORS as e:
        fail(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))


def quiet_library_logs() -> None:
    """Keep our INFO lines readable: orbax and grain log every step of their work at INFO."""
    import logging as pylogging

    def keep(record: pylogging.LogRecord) -> bool:
        noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "grain", "jax/_src"))
        return record.levelno >= pylogging.WARNING or not noisy

    logging.get_absl_handler().addFilter(keep)
