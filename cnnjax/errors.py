"""Shared wording of user-facing errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: object, known: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """' (did you mean a or b?)' for the known names closest to `name`, or '' when none is."""
    close = difflib.get_close_matches(str(name), list(known), n=n, cutoff=cutoff)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
