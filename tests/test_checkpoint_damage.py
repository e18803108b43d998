"""Damaged checkpoints: every kind of damage is found, training resumes from the newest intact
checkpoint and sets the damaged one aside, `load` names the damaged step and the intact ones, and
checkpoints that are all damaged stop the run without touching anything."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.train.checkpoints import (
    DAMAGED_DIR,
    DamagedCheckpointError,
    RunCheckpoints,
    checksums,
    load,
)
from cnnjax.train.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:Sharding info not provided")


class _Position:
    """A data iterator whose state records the step it was saved at."""

    def __init__(self, step: int):
        self.step = step

    def get_state(self) -> dict:
        return {"pipeline": {"next_index": self.step}, "leftover": 0, "num_skipped": 0}


def _state(step: int) -> dict:
    kernel = jnp.arange(6 * 16, dtype=jnp.float32).reshape(6, 16) * step
    return {
        "step": jnp.int32(step),
        "params": {"c1": {"kernel": kernel, "bias": jnp.full((16,), float(step))}},
        "model_state": {},
    }


def _saved_run(workdir: Path, steps=(10, 20, 30)) -> None:
    checkpoints = RunCheckpoints(workdir, keep=5)
    for step in steps:
        checkpoints.save(step, _state(step), _Position(step), TrainConfig(model="lenet5"))
    checkpoints.close()


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate_array_data(step_dir: Path) -> None:
    path = _largest_file(step_dir / "state")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_bit_of_array_data(step_dir: Path) -> None:
    path = _largest_file(step_dir / "state")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _change_a_recorded_checksum(step_dir: Path) -> None:
    # The same as an array whose bytes changed without the storage layer noticing.
    path = step_dir / "checksums" / "metadata"
    recorded = json.loads(path.read_text())
    recorded["params/c1/bias"] = (recorded["params/c1/bias"] + 1) % 2**32
    path.write_text(json.dumps(recorded))


def _garble_array_metadata(step_dir: Path) -> None:
    (step_dir / "state" / "_METADATA").write_text("{ not json")


def _remove_config(step_dir: Path) -> None:
    (step_dir / "config" / "metadata").unlink()


def _garble_config(step_dir: Path) -> None:
    (step_dir / "config" / "metadata").write_text('{"model": "lenet5", "batch')


def _remove_iterator_state(step_dir: Path) -> None:
    (step_dir / "data" / "process_0-of-1.json").unlink()


DAMAGE = {
    "truncated array data": _truncate_array_data,
    "bit-flipped array data": _flip_a_bit_of_array_data,
    "array not matching its checksum": _change_a_recorded_checksum,
    "garbled array metadata": _garble_array_metadata,
    "missing config": _remove_config,
    "garbled config": _garble_config,
    "missing iterator state": _remove_iterator_state,
}


def test_the_checksum_changes_with_any_single_bit_flip():
    values = np.array([0.5, -3.25, 1e-20, 7.0], np.float32)
    words = values.view(np.uint32)
    reference = checksums({"w": jnp.asarray(values)})["w"]
    for index in range(len(values)):
        for bit in range(32):
            flipped = words.copy()
            flipped[index] ^= np.uint32(1 << bit)
            assert checksums({"w": jnp.asarray(flipped.view(np.float32))})["w"] != reference
    # Position matters: swapping two elements changes it too.
    assert checksums({"w": jnp.asarray(values[[1, 0, 2, 3]])})["w"] != reference


def test_checksum_by_hand():
    # words 1, 2, 3 with weights (i * 0x9E3779B1 mod 2**32) | 1 for i = 0, 1, 2.
    weights = [(i * 0x9E3779B1 % 2**32) | 1 for i in range(3)]
    expected = sum(w * x for w, x in zip(weights, [1, 2, 3], strict=True)) % 2**32
    assert checksums({"x": jnp.array([1, 2, 3], jnp.int32)})["x"] == expected


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_resume_skips_a_damaged_checkpoint_and_sets_it_aside(tmp_path, damage):
    _saved_run(tmp_path)
    DAMAGE[damage](tmp_path / "checkpoints" / "30")
    checkpoints = RunCheckpoints(tmp_path, keep=2)
    restored = checkpoints.restore_latest(_state(0))
    assert restored.step == 20
    np.testing.assert_array_equal(
        restored.state["params"]["c1"]["kernel"], _state(20)["params"]["c1"]["kernel"]
    )
    assert restored.data_states == [_Position(20).get_state()]
    assert [step for step, _ in checkpoints.damaged] == [30]
    checkpoints.set_aside_damaged()
    assert (tmp_path / DAMAGED_DIR / "30").is_dir()
    # Training goes on: step 30 is saved anew, and keep=2 never deletes step 20 for the
    # damaged one; it goes only once two newer intact checkpoints exist.
    for step in (30, 40):
        checkpoints.save(step, _state(step), _Position(step), TrainConfig(model="lenet5"))
        checkpoints.wait()
        assert 20 in checkpoints.manager.all_steps() or step == 40
    checkpoints.close()
    assert sorted(checkpoints.manager.all_steps()) == [30, 40]
    again = RunCheckpoints(tmp_path, keep=2).restore_latest(_state(0))
    assert again.step == 40


def test_when_every_checkpoint_is_damaged_nothing_is_touched(tmp_path):
    _saved_run(tmp_path, steps=(10, 20))
    _truncate_array_data(tmp_path / "checkpoints" / "20")
    _remove_config(tmp_path / "checkpoints" / "10")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(DamagedCheckpointError) as error:
        RunCheckpoints(tmp_path, keep=2).restore_latest(_state(0))
    message = str(error.value)
    assert "no intact checkpoint" in message and "step 20:" in message and "step 10:" in message
    assert "\n" not in message
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_load_names_the_damaged_step_and_the_intact_ones(tmp_path):
    _saved_run(tmp_path)
    _flip_a_bit_of_array_data(tmp_path / "checkpoints" / "30")
    with pytest.raises(DamagedCheckpointError) as error:
        load(tmp_path)
    message = str(error.value)
    assert message.startswith(f"checkpoint 30 in {tmp_path / 'checkpoints'} is damaged (")
    assert message.endswith("intact: 20, 10")
    _, variables, _ = load(tmp_path, 20)
    np.testing.assert_array_equal(variables["params"]["c1"]["bias"], np.full((16,), 20.0))


def test_load_verifies_an_intact_checkpoint_saved_from_a_dataclass_state(tmp_path):
    # The training state is a dataclass holding optax's named tuples; `load` restores plain
    # dicts and lists: the recorded checksums must name the arrays the same way for both.
    from cnnjax.train.optim import make_optimizer
    from cnnjax.train.step import Steps, make_mesh

    config = TrainConfig(model="lenet5", num_classes=10, momentum=0.9)
    from cnnjax.models import create_model

    steps = Steps(
        create_model("lenet5", num_classes=10), make_optimizer(config, 10), config, make_mesh()
    )
    state = steps.init(np.zeros((2, 32, 32, 1), np.float32))
    checkpoints = RunCheckpoints(tmp_path)
    checkpoints.save(7, state, _Position(7), config)
    checkpoints.close()
    _, variables, _ = load(tmp_path)
    for a, b in zip(
        jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
