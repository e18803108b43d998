"""Command-line plumbing shared by `python -m cnnjax.*` tools and the experiments."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    """INFO from cnnjax itself; from jax/orbax/grain internals, warnings and errors in one line.

    A library's traceback (orbax logs one from each of its threads when a save fails) is left
    out: the failure reaches cnnjax, which reports it in one line of its own.
    """
    if record.pathname.startswith(_OWN_CODE):
        return True
    if record.levelno < logging.WARNING or record.exc_info or record.exc_text:
        return False
    lines = record.getMessage().splitlines()
    record.msg, record.args = (lines[0][:300] if lines else ""), ()
    return True


def _from_orbax(unraisable: Any) -> bool:
    """Whether an unraisable exception was raised inside orbax (its traceback passes there)."""
    if isinstance(unraisable.exc_value, RuntimeError) and (
        str(unraisable.exc_value) == "Event loop is closed"
    ):
        return True
    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    return any(f"{os.sep}orbax{os.sep}" in frame.filename for frame in frames)


def _drop_orbax_leftovers(hook: Callable) -> Callable:
    """An unraisable-exception hook that leaves out orbax's leftovers after a failed read or save.

    When one array of a restore or a save fails, orbax gives up on the others; their coroutines
    and callbacks then report the same failure again as unraisable exceptions at garbage
    collection (a traceback apiece, or "Event loop is closed"). The failure itself reaches
    cnnjax, which reports it in one line.
    """

    def hook_without_orbax_leftovers(unraisable: Any) -> None:
        if not _from_orbax(unraisable):
            hook(unraisable)

    return hook_without_orbax_leftovers


def run_cli(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    """Wrap an absl `main` so that user errors print `error: ...` on one line and exit with 2."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str]) -> None:
        if not os.environ.get("CNNJAX_VERBOSE"):
            absl_logging.get_absl_handler().addFilter(_quiet_libraries)
            sys.unraisablehook = _drop_orbax_leftovers(sys.unraisablehook)
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
