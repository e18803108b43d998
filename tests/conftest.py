"""Fixtures shared by several test files."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session", autouse=True)
def _shared_compilation_cache(tmp_path_factory):
    """One persistent XLA cache for the whole suite, in-process and for the runs it spawns.

    Many tests start experiments whose train and eval steps have the same shapes; with the
    cache only the first compiles them (the key is the program and its compile options, so
    another device count or flag compiles anew).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the workers share one cache
        root = root.parent
    folder = str(root / "jax_cache")
    os.makedirs(folder, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", folder)
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        previous = (
            jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs,
        )
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        yield
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
