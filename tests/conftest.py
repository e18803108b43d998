"""Fixtures shared by several test files."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def fast_compile():
    """XLA's cheap compile path, for tests that compile big graphs and run each only a few times.

    About 40% less compile time for the deep nets on CPU; results agree to float32 rounding.
    """
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", False)
