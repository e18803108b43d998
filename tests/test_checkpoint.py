"""RunCheckpoints: the saved values are a snapshot taken at save() time, errors of the background
saver surface in the training thread, and the package exposes its submodules lazily."""

from __future__ import annotations

import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnnjax import data as cdata
from cnnjax.train.checkpoints import RunCheckpoints, load
from cnnjax.train.config import TrainConfig


def _state(value: float) -> dict:
    return {
        "step": jnp.int32(3),
        "params": {"c1": {"kernel": jnp.full((2, 3), value)}},
        "model_state": {},
    }


def _loader():
    loader = cdata.make_loader("fake", "train", batch_size=2, train=True, image_size=4)
    next(loader)
    return loader


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_saved_values_are_those_at_save_time_even_if_the_buffers_are_donated(tmp_path, monkeypatch):
    checkpoints = RunCheckpoints(tmp_path, keep=2)
    donated = threading.Event()
    real_save = checkpoints.manager.save

    def save_after_donation(*args, **kwargs):  # the saver thread reaches orbax late
        donated.wait(timeout=30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoints.manager, "save", save_after_donation)
    config = TrainConfig(model="lenet5", dataset="fake", num_classes=10)
    state = _state(1.5)
    assert checkpoints.save(3, state, _loader(), config)
    # The next training step donates the state and overwrites its buffers.
    bump = jax.jit(lambda s: jax.tree.map(lambda x: x + 1, s), donate_argnums=0)
    state = jax.block_until_ready(bump(state))
    donated.set()
    assert not checkpoints.save(3, state, _loader(), config)  # a step is saved once
    checkpoints.close()
    restored = ocp.PyTreeCheckpointer().restore(tmp_path / "checkpoints" / "3" / "state")
    np.testing.assert_array_equal(restored["params"]["c1"]["kernel"], np.full((2, 3), 1.5))


def test_a_failed_background_save_is_raised_in_the_training_thread(tmp_path, monkeypatch):
    checkpoints = RunCheckpoints(tmp_path, keep=2)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.manager, "save", broken)
    assert checkpoints.save(1, _state(0.0), _loader(), TrainConfig(dataset="fake"))
    with pytest.raises(OSError, match="disk full"):
        checkpoints.wait()
    checkpoints.wait()  # reported once


def test_load_without_checkpoints_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints in .*; train a run first"):
        load(tmp_path)


def test_submodules_are_reachable_after_a_bare_import_and_loaded_lazily():
    code = (
        "import sys, cnnjax\n"
        "assert 'cnnjax.evaluate' not in sys.modules and 'cnnjax.checkpoint' not in sys.modules\n"
        "assert callable(cnnjax.checkpoint.load) and callable(cnnjax.evaluate.ensemble_metrics)\n"
        "assert 'tensorflow' not in sys.modules\n"
        "try:\n    cnnjax.nothing\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "has no attribute 'nothing'" in out.stdout
