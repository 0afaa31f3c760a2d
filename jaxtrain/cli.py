"""What every command-line entry point shares: `start` (flags, --help, one-line errors,
readable logs)."""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from absl import logging

T = TypeVar("T")

# Errors caused by the user's input (files, config values) or the environment (disk full,
# read-only file system): reported in one line, exit 2. Anything else is a bug and keeps
# its traceback.
USER_ERRORS = (OSError, ValueError)

_HINTS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
          errno.EROFS: "read-only file system", errno.EFBIG: "file size limit reached"}


def environment_error(e: BaseException | None) -> OSError | None:
    """The OSError behind `e`: itself, or what it was raised from (libraries such as orbax
    wrap a failed write in their own exception); None if there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        seen.add(id(e))
        e = e.__cause__ if e.__cause__ is not None else (
            None if e.__suppress_context__ else e.__context__)
    return None


def describe(e: BaseException) -> str:
    """One line for a user or environment error: the file, what went wrong."""
    os_error = environment_error(e)
    if os_error is not None and not isinstance(e, ValueError):
        where = f"{os_error.filename}: " if os_error.filename else ""
        text = f"{where}{os_error.strerror or os_error}"
        hint = _HINTS.get(os_error.errno)
        return f"{text} ({hint})" if hint and hint not in text.lower() else text
    text = str(e).strip()
    return text.splitlines()[0] if text else repr(e)


def one_line(exc: BaseException, *, named: bool = False) -> str:
    """An exception's message folded onto one line (a one-line error, a CSV error column);
    `named`: prefixed with the exception's type ("ValueError: ...")."""
    text = " ".join(str(exc).split())
    if named:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


def is_user_error(e: BaseException) -> bool:
    return isinstance(e, USER_ERRORS) or environment_error(e) is not None


def fail(message: str, status: int = 2, *, hard: bool = False) -> NoReturn:
    """One line on stderr, exit status 2 (or `status`).

    `hard`: leave at once, without interpreter teardown: after a failed checkpoint write,
    orbax's background event-loop threads would print tracebacks while Python shuts down.
    """
    print(f"jaxtrain: error: {message}", file=sys.stderr)
    if hard:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


HELP_FLAGS = ("-h", "-help", "--help", "-?", "--helpshort", "-helpshort")


def start(program: Callable[[], Any], *, required: Sequence[str] = (), doc: str = "",
          usage: Callable[[], str] | None = None) -> None:
    """Runs a command-line program as every jaxtrain entry point does. absl parses the
    flags; --help prints `usage()` (default: `doc` and the program's own flags) and exits 0;
    a bad flag, a stray argument or a missing `required` flag is one line on stderr, exit 2;
    then `program()` runs through `run_cli`, and what it returns, unless None, is printed as
    JSON."""
    from absl import app

    def parse(argv: list[str]) -> list[str]:
        if any(a in HELP_FLAGS for a in argv[1:argv.index("--") if "--" in argv else None]):
            print(usage() if usage is not None else module_usage(doc))
            sys.exit(0)
        return parse_flags(argv)

    def main(argv: list[str]) -> None:
        from absl import flags

        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])}")
        for name in required:
            value = flags.FLAGS[name].value
            if value is None or value == []:  # "" is the program's to judge (say why)
                fail(f"--{name} is required (--help says more)")
        result = run_cli(program)
        if result is not None:
            print(json.dumps(result, default=float))

    app.run(main, flags_parser=parse)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with its errors as one line (exit 2)."""
    from absl import flags

    from jaxtrain import config_files

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        cause = e.__context__  # a ConfigError says it all without absl's "flag --config=..."
        message = str(cause if isinstance(cause, config_files.ConfigError) else e)
        fail(f"{message.strip().splitlines()[0]} (--help says more)")
    except (AttributeError, KeyError) as e:  # a mistyped --config.key override
        detail = str(e)
        with contextlib.suppress(ValueError, SyntaxError):  # ml_collections wraps it in a repr
            detail = str(ast.literal_eval(detail))
        detail = " ".join(detail.replace("'", "").split())
        fail(f"unknown config key in --config overrides: {detail}")


def flag_lines(names: Sequence[str]) -> str:
    """`--name  help`, one wrapped entry per flag (for a program's --help)."""
    from absl import flags

    return "\n".join(textwrap.fill(" ".join(flags.FLAGS[n].help.split()), 96,
                                   initial_indent=f"  --{n:<14}", subsequent_indent=" " * 18)
                     for n in names)


def module_usage(doc: str) -> str:
    """A program's --help: its docstring, the flags it defined, where the others are."""
    from absl import flags

    own = [f.name for f in flags.FLAGS.get_flags_for_module(sys.argv[0])]
    return "\n\n".join([textwrap.dedent(doc).strip(), "Flags:\n" + flag_lines(own),
                        "Try --helpfull for every flag (logging and the libraries' own)."])


def run_cli(fn: Callable[[], T]) -> T:
    """`fn()`, with library logs kept quiet and a user error ending as one line, exit 2."""
    quiet_library_logs()
    try:
        return fn()
    except Exception as e:
        if not is_user_error(e):
            raise
        fail(describe(e))


def quiet_library_logs() -> None:
    """Keep our INFO lines readable: orbax and grain log every step of their work at INFO."""
    import logging as pylogging

    _quiet_closed_event_loops()

    def keep(record: pylogging.LogRecord) -> bool:
        noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "grain", "jax/_src"))
        if noisy and record.exc_info and is_user_error(record.exc_info[1]):
            return False  # e.g. a full disk in orbax's writer threads: we say it in one line
        return record.levelno >= pylogging.WARNING or not noisy

    logging.get_absl_handler().addFilter(keep)


def _quiet_closed_event_loops() -> None:
    """After a failed checkpoint write orbax closes its asyncio loop while tensorstore still
    delivers write results to it: each delivery (`loop.call_soon_threadsafe`, called straight
    from tensorstore's C++) raises "Event loop is closed", which tensorstore reports through
    `sys.unraisablehook`: hundreds of tracebacks on a full disk, before our one line. Exactly
    those are dropped (the traceback starts in `call_soon_threadsafe`: no Python code called
    it); everything else is reported as before."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxtrain_quiet", False):
        return

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        tb = unraisable.exc_traceback
        late_delivery = (unraisable.exc_type is RuntimeError
                         and str(unraisable.exc_value) == "Event loop is closed"
                         and tb is not None
                         and tb.tb_frame.f_code.co_name == "call_soon_threadsafe")
        if not late_delivery:
            previous(unraisable)

    hook._jaxtrain_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
