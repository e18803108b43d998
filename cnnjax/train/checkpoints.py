"""A run's checkpoints: orbax CheckpointManager over train state, data-iterator state and config.

Saves are asynchronous (training continues while arrays are written) and atomic: orbax writes
into a temporary directory and renames it only once complete, so a run killed mid-save leaves
its previous checkpoint intact and the half-written one is ignored and cleaned up. Kept: the
latest `keep` checkpoints plus the best one by validation top-1.

`load(workdir)` gives research code `(model, variables, config)` from a run's checkpoint.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from flax import linen as nn

from cnnjax.train.config import TrainConfig

BEST_METRIC = "val_top1"
_IDENTITY_FIELDS = ("model", "dataset", "num_classes")


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different run (model, dataset or head)."""


class DamagedCheckpointError(ValueError):
    """A checkpoint cannot be read back intact; the message names its step and the intact ones."""


# Fresh buffers for every leaf (a jitted `copy` never aliases its non-donated inputs).
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


class _IteratorPosition:
    """A data-iterator state captured when the save was requested, for grain's orbax handler.

    The handler writes `get_state()` of what it is given; handing it the live iterator from the
    saver thread would record a later position. Restores go into the real iterator as usual.
    """

    def __init__(self, state: dict[str, Any]):
        self._encoded = json.dumps(state, indent=4).encode()

    def get_state(self) -> bytes:
        return self._encoded


def use_coordination_service_barriers() -> None:
    """Make orbax synchronise processes through jax.distributed's key-value store, not devices.

    orbax's default barrier is a device all-gather. Issued from the saver thread while the main
    thread runs the train step's all-reduce, the two collectives interleave differently on each
    process (gloo aborts with "collective mismatch"; NCCL can hang). The coordination service's
    barriers are keyed RPCs that involve no device, so a save can overlap training.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():  # research code outside an absl app: take the defaults
        flags.FLAGS.mark_as_parsed()
    flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def checkpoint_dir(workdir: str | Path) -> Path:
    return Path(workdir).absolute() / "checkpoints"


class RunCheckpoints:
    """The checkpoints of one run: save (async), restore the latest valid one, keep the best."""

    def __init__(self, workdir: str | Path, *, keep: int = 3):
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[BEST_METRIC],
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,  # removes saves a killed run left half-written
            create=True,
        )
        if jax.process_count() > 1:
            use_coordination_service_barriers()
        self.directory = checkpoint_dir(workdir)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._saver: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last_step: int | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def check_compatible(self, config: TrainConfig) -> None:
        """Raise (before anything is written) if the workdir's run is a different one."""
        step = self.latest_step()
        if step is None:
            return
        stored = read_config(self.directory.parent, step)
        diffs = [
            f"{f} {getattr(stored, f)!r} (this run: {getattr(config, f)!r})"
            for f in _IDENTITY_FIELDS
            if getattr(stored, f) != getattr(config, f)
        ]
        if diffs:
            raise CheckpointMismatchError(
                f"{self.directory.parent} holds checkpoints of another run: {'; '.join(diffs)}; "
                "pass a new --workdir (nothing was overwritten)"
            )

    def save(
        self,
        step: int,
        state: Any,
        data_iterator: Any,
        config: TrainConfig,
        metrics: dict[str, float] | None = None,
    ) -> bool:
        """Snapshot the state and hand the save to a background thread; False if step exists.

        The training loop only waits for an on-device copy of the state to be *dispatched* (the
        next step donates the originals) and for the iterator position to be read; orbax's own
        blocking part (host transfer, directories) runs on the saver thread. One save is in
        flight at a time.
        """
        if step == self._last_step or step in self.manager.all_steps():
            return False
        self._join()
        self._last_step = step
        snapshot = _copy_tree(state)  # one dispatch; the copy runs before the next step
        position = _IteratorPosition(data_iterator.get_state())
        self._saver = threading.Thread(
            target=self._save_now,
            args=(step, snapshot, position, json.loads(config.to_json()), metrics),
            name=f"cnnjax-save-{step}",
        )
        self._saver.start()
        return True

    def _save_now(self, step, state, position, config, metrics) -> None:
        import grain  # the iterator handler lives in grain

        try:
            args = ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(position),
                config=ocp.args.JsonSave(config),
            )
            self.manager.save(step, args=args, metrics=metrics, force=True)
        except BaseException as e:  # re-raised in the training thread at the next wait/save
            self._error = e

    def _join(self) -> None:
        if self._saver is not None:
            self._saver.join()
            self._saver = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def restore_latest(self, state_template: Any, data_iterator: Any) -> tuple[Any, int] | None:
        """Restore the newest readable checkpoint into the template's shapes and shardings.

        Falls back to older checkpoints if the newest cannot be read; None when there is none.
        """
        import grain

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        data=grain.checkpoint.CheckpointRestore(data_iterator),
                    ),
                )
            except (ValueError, OSError, KeyError) as e:  # unreadable: try the one before
                logging.warning("checkpoint %d unreadable (%s); trying an older one", step, e)
                continue
            return restored.state, step
        return None

    def wait(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self._join()
        self.manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def _steps(workdir: str | Path) -> list[int]:
    directory = checkpoint_dir(workdir)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def read_config(workdir: str | Path, step: int | None = None) -> TrainConfig:
    """The configuration stored with a checkpoint (default: the latest)."""
    steps = _steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir(workdir)}")
    step = steps[-1] if step is None else step
    path = checkpoint_dir(workdir) / str(step) / "config" / "metadata"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {step} in {checkpoint_dir(workdir)} has no config")
    return TrainConfig.from_json(path.read_text())


def _restore_state(workdir: str | Path, step: int) -> Any:
    with ocp.CheckpointManager(
        checkpoint_dir(workdir),
        item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(read_only=True),
    ) as manager:
        # Restore onto this process's first device, whatever topology saved it (resharding).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            dict(manager.item_metadata(step)["state"]),
        )
        return manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )


def load(workdir: str | Path, step: int | None = None) -> tuple[nn.Module, dict, TrainConfig]:
    """`(model, variables, config)` of a run's checkpoint (default: the latest) for research code.

    `model.apply(variables, x, train=False)` then evaluates the trained network.
    """
    from cnnjax.models import create_model

    steps = _steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir(workdir)}; train a run first")
    if step is not None and step not in steps:
        raise ValueError(f"no checkpoint at step {step}; available: {', '.join(map(str, steps))}")
    step = steps[-1] if step is None else step
    config = read_config(workdir, step)
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # a read-only manager warns about what it will not do
    try:
        restored = _restore_state(workdir, step)
    finally:
        logging.set_verbosity(verbosity)
    state = restored.state
    model = create_model(config.model, num_classes=config.num_classes)
    variables = {"params": state["params"], **state.get("model_state", {})}
    return model, variables, config
