"""Command-line plumbing shared by `python -m cnnjax.*` tools and the experiments."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging as absl_logging

_OWN_CODE = (
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parent.parent / "experiments"),
)

# User mistakes (bad names, sizes, flags, missing data) surface as these; they are reported as one
# line without a traceback. Set CNNJAX_TRACEBACK=1 to see the traceback anyway, and
# CNNJAX_VERBOSE=1 for the INFO logs of jax, orbax and grain.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def _quiet_libraries(record: logging.LogRecord) -> bool:
    # INFO from cnnjax itself; only warnings and errors from jax/orbax/grain internals.
    return record.levelno >= logging.WARNING or record.pathname.startswith(_OWN_CODE)


def run_cli(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    """Wrap an absl `main` so that user errors print `error: ...` on one line and exit with 2."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str]) -> None:
        if not os.environ.get("CNNJAX_VERBOSE"):
            absl_logging.get_absl_handler().addFilter(_quiet_libraries)
        try:
            main(argv)
        except USER_ERRORS as e:
            if os.environ.get("CNNJAX_TRACEBACK"):
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C before a run installed its own handler
            print("interrupted (Ctrl-C)", file=sys.stderr)
            sys.exit(130)

    return wrapped
