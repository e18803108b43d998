"""Command-line plumbing shared by `python -m cnnjax.*` tools and the experiments."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence

# User mistakes (bad names, sizes, flags, missing data) surface as these; they are reported as one
# line without a traceback. Set CNNJAX_TRACEBACK=1 to see the traceback anyway.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def run_cli(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    """Wrap an absl `main` so that user errors print `error: ...` on one line and exit with 2."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str]) -> None:
        try:
            main(argv)
        except USER_ERRORS as e:
            if os.environ.get("CNNJAX_TRACEBACK"):
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapped
