"""A run's checkpoints: orbax CheckpointManager over train state, data-iterator state and config.

Saves are asynchronous (training continues while arrays are written) and atomic: orbax writes
into a temporary directory and renames it only once complete, so a run killed mid-save leaves
its previous checkpoint intact and the half-written one is ignored and cleaned up. Kept: the
latest `keep` checkpoints plus the best one by validation top-1.

Every checkpoint also holds a checksum of each array (computed on the device at save time),
so a restore can tell an intact checkpoint from a truncated or bit-flipped one. Resuming takes
the newest intact checkpoint; damaged ones are named in one warning and set aside under
`WORKDIR/damaged_checkpoints/` (never deleted, never counted by the keep-N policy). When
checkpoints exist but none is intact, nothing is touched and the run stops with one line.

The data-iterator state of every process is stored (`data/process_K-of-N.json`), so a run
can resume on another process count: the global stream position carries over.

`load(workdir)` gives research code `(model, variables, config)` from a run's checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import linen as nn

from cnnjax.layers.residual import has_stacked_blocks, in_layout_of, stack_blocks, unstack_blocks
from cnnjax.train.config import (
    EXTENDABLE_FIELDS,
    IDENTITY_FIELDS,
    OPERATIONAL_FIELDS,
    TrainConfig,
    changed_fields,
    describe_changes,
)

BEST_METRIC = "val_top1"
DAMAGED_DIR = "damaged_checkpoints"
_DATA_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json")


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different run (model, dataset or head)."""


class DamagedCheckpointError(ValueError):
    """A checkpoint cannot be read back intact; the message names its step and the intact ones."""


class ConfigChangedError(ValueError):
    """A resumed run was given settings that differ from the checkpoint's."""


class CheckpointSaveError(ValueError):
    """A save failed for a reason the user can fix (disk full, permissions)."""


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """Position-weighted sum of the array's 32-bit words mod 2**32: any 1-bit flip changes it.

    Each weight is odd, so flipping bit b of word i changes the sum by ±2**b · w_i ≠ 0 mod 2**32.
    """
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        words = x.astype(jnp.uint32)
    elif x.dtype.itemsize == 1:
        words = jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
    elif x.dtype.itemsize == 2:
        words = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    else:  # 4 bytes, or 8 (a trailing axis of two words)
        words = jax.lax.bitcast_convert_type(x, jnp.uint32)
    words = words.ravel()
    weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B1) | jnp.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


_checksums = jax.jit(lambda tree: jax.tree.map(_leaf_checksum, tree))
# What a save dispatches in the training loop: fresh buffers for every leaf (a jitted `copy`
# never aliases its non-donated inputs). Their checksums are computed on the saver thread: on
# the CPU backend they cost about 3x the copy (ResNet-50 state: 146 vs 33 ms).
copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def _by_path(tree: Any) -> dict[str, Any]:
    """{'params/conv1/kernel': leaf}: paths that read the same for dataclasses, tuples and dicts.

    A restore without the TrainState template gives plain dicts and lists where the saved tree
    had a dataclass and optax's named tuples; the simple form of the path is the same for both.
    """
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in flat}


def _recorded(sums: Any) -> dict[str, int]:
    """{array path: checksum} from a tree of device checksums, as the checkpoint records it."""
    return {path: int(np.asarray(value)) for path, value in _by_path(sums).items()}


def checksums(tree: Any) -> dict[str, int]:
    """{array path: checksum} of a pytree of arrays (computed where the arrays live)."""
    return _recorded(_checksums(tree))


class _IteratorPosition:
    """A data-iterator state captured when the save was requested, for grain's orbax handler.

    The handler writes `get_state()` of what it is given; handing it the live iterator from the
    saver thread would record a later position. Restores read these files back as JSON
    (`read_data_states`), so that another process count can carry the position over.
    """

    def __init__(self, state: dict[str, Any]):
        self._encoded = json.dumps(state, indent=4).encode()

    def get_state(self) -> bytes:
        return self._encoded


@dataclasses.dataclass
class Restored:
    """An intact checkpoint read back: its step, state, config and every process's data state."""

    step: int
    state: Any
    config: TrainConfig
    data_states: list[dict[str, Any]]  # one per process of the run that saved it


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
    """The checkpoints of one run: save (async), restore the newest intact one, keep the best."""

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
        self.damaged: list[tuple[int, str]] = []  # (step, problem) found by restore_latest
        self._saver: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed = False  # a save error has been raised: orbax's copies of it are not news
        self._last_step: int | None = None
        self._nbytes = 0  # of the state being saved

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
        next step donates the originals) and for the iterator position to be read; the
        checksums and orbax's own blocking part (host transfer, directories) run on the saver
        thread. One save is in flight at a time.
        """
        if step == self._last_step or step in self.manager.all_steps():
            return False
        self._join()
        self._last_step = step
        snapshot = copy_tree(state)  # one dispatch; the copy runs before the next step
        self._nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves(snapshot))
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
            sums = _checksums(state)  # of the snapshot, off the training loop's path
            args = ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(position),
                config=ocp.args.JsonSave(config),
                checksums=ocp.args.JsonSave(_recorded(sums)),
            )
            self.manager.save(step, args=args, metrics=metrics, force=True)
            self.manager.wait_until_finished()
        except BaseException as e:  # re-raised in the training thread at the next wait/save
            self._error = _explain_save_error(e, step, self._nbytes, self.directory)

    def _join(self) -> None:
        if self._saver is not None:
            self._saver.join()
            self._saver = None
        if self._error is not None:
            error, self._error = self._error, None
            self._failed = True
            raise error

    def newest_config(self) -> TrainConfig | None:
        """The configuration of the newest checkpoint whose config reads back; None if none.

        Read before any array, so that another run's workdir, or other settings, are refused
        as such rather than mistaken for damage when the arrays do not fit this run's shapes.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return read_config(self.directory.parent, step)
            except DamagedCheckpointError:
                continue
        return None

    def restore_latest(self, state_template: Any) -> Restored | None:
        """The newest intact checkpoint in the template's shapes and shardings; None if none.

        Damaged checkpoints are skipped and recorded in `self.damaged` (see `set_aside_damaged`).
        Checkpoints that exist but are all damaged raise DamagedCheckpointError and touch nothing.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        self.damaged = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = _restore_verified(self.manager, self.directory, step, abstract)
            except Exception as e:  # noqa: BLE001 - any failure to read back means damaged
                self.damaged.append((step, _first_line(e)))
                continue
            if self.damaged:
                logging.warning(
                    "damaged checkpoint(s) in %s: %s; resuming from step %d, the newest intact one",
                    self.directory,
                    "; ".join(f"step {s}: {why}" for s, why in self.damaged),
                    step,
                )
            return restored
        if self.damaged:
            raise DamagedCheckpointError(
                f"no intact checkpoint in {self.directory}: "
                + "; ".join(f"step {s}: {why}" for s, why in self.damaged)
                + f"; nothing was changed (move {self.directory} away to start afresh)"
            )
        return None

    def set_aside_damaged(self) -> None:
        """Move the damaged checkpoints out of orbax's view, so keep-N never counts them."""
        if not self.damaged:
            return
        if jax.process_index() == 0:
            aside = self.directory.parent / DAMAGED_DIR
            aside.mkdir(exist_ok=True)
            for step, _ in self.damaged:
                target = aside / str(step)
                suffix = 1
                while target.exists():
                    target, suffix = aside / f"{step}.{suffix}", suffix + 1
                shutil.move(str(self.directory / str(step)), str(target))
                logging.warning("moved damaged checkpoint %d to %s", step, target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cnnjax: damaged checkpoints set aside")
        self.manager.reload()
        self.damaged = []

    def wait(self) -> None:
        """Block until pending asynchronous saves are committed; a failed save raises once."""
        self._join()
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            if not self._failed:  # (orbax raises a failure again at every later wait)
                self._failed = True
                raise _explain_save_error(e, self._last_step, self._nbytes, self.directory) from e

    def close(self) -> None:
        """Wait for the last save, then release orbax."""
        try:
            self.wait()
        finally:
            with contextlib.suppress(Exception):  # a failed save was raised already
                self.manager.close()


def check_resume_config(
    saved: TrainConfig, config: TrainConfig, *, allow_config_change: bool = False
) -> None:
    """Refuse (before anything is written) a resume whose settings differ from the checkpoint's.

    Another model, dataset or head is another run. Other changes need allow_config_change,
    except those that only extend the run or change how it is run (logged).
    """
    workdir = Path(config.workdir)
    if saved.imported_from:
        raise CheckpointMismatchError(
            f"{workdir} holds weights imported from {saved.imported_from}, not a training run; "
            f"fine-tune them in a new --workdir with --init_from={workdir} (nothing was written)"
        )
    changes = changed_fields(saved, config)
    identity = {k: v for k, v in changes.items() if k in IDENTITY_FIELDS}
    if identity:
        raise CheckpointMismatchError(
            f"{workdir} holds checkpoints of another run ({describe_changes(identity)}); "
            "pass a new --workdir (nothing was overwritten)"
        )
    free = EXTENDABLE_FIELDS + OPERATIONAL_FIELDS
    refused = {k: v for k, v in changes.items() if k not in free}
    if refused and not allow_config_change:
        raise ConfigChangedError(
            f"{workdir} was trained with other settings: {describe_changes(refused)}; run the "
            f"command it was started with (its settings are in {workdir / 'config.json'}), pass "
            "--allow_config_change to resume with the new ones, or use another --workdir "
            "(nothing was written)"
        )
    if refused:
        logging.warning("resuming with changed settings: %s", describe_changes(refused))
    extended = {k: v for k, v in changes.items() if k in EXTENDABLE_FIELDS}
    if extended:
        logging.info("resuming with a new length: %s", describe_changes(extended))


def _first_line(error: BaseException) -> str:
    """The problem in a few words: tensorstore's read failures say only which slice failed."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "while reading array index" in text or "TensorStore" in text:
        return "its array data cannot be read (a truncated or corrupted file)"
    return text if len(text) <= 200 else text[:197] + "..."


_SAVE_PROBLEMS = {  # what the OS said (as an errno or in tensorstore's message) -> in words
    errno.ENOSPC: ("No space left on device", "the disk is full"),
    errno.EDQUOT: ("Disk quota exceeded", "the disk quota is exceeded"),
    errno.EACCES: ("Permission denied", "permission denied"),
    errno.EROFS: ("Read-only file system", "the file system is read-only"),
}


def _save_problem(error: BaseException) -> str | None:
    """'the disk is full' etc. when a save failed for a reason the user can fix; else None."""
    cause: BaseException | None = error
    while cause is not None:
        for code, (text, words) in _SAVE_PROBLEMS.items():
            if getattr(cause, "errno", None) == code or text in str(cause):
                return words
        cause = cause.__cause__ or cause.__context__
    return None


def _explain_save_error(
    error: BaseException, step: int | None, nbytes: int, directory: Path
) -> BaseException:
    """A one-line CheckpointSaveError for a full disk or a permission problem; else `error`."""
    problem = _save_problem(error)
    if problem is None:
        return error
    needed = nbytes / 2**20
    free = shutil.disk_usage(directory).free / 2**20
    return CheckpointSaveError(
        f"saving checkpoint {step} to {directory} failed: {problem} (it needs about "
        f"{needed:.1f} MiB, {free:.1f} MiB are free); the older checkpoints are intact and the "
        "partial one is removed at the next start: make room and run the same command to resume"
    )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(path.parents[2])} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path.relative_to(path.parents[2])} is not valid JSON ({e})") from None


def read_data_states(directory: Path, step: int) -> list[dict[str, Any]]:
    """Every process's saved data-iterator state of checkpoint `step`, in process order."""
    folder = directory / str(step) / "data"
    found = {}
    counts = set()
    for path in folder.glob("process_*-of-*.json") if folder.is_dir() else []:
        match = _DATA_FILE.fullmatch(path.name)
        if match:
            found[int(match[1])] = path
            counts.add(int(match[2]))
    if len(counts) != 1:
        raise FileNotFoundError(f"{step}/data holds no complete set of iterator states")
    (count,) = counts
    missing = sorted(set(range(count)) - set(found))
    if missing:
        raise FileNotFoundError(f"{step}/data/process_{missing[0]}-of-{count}.json is missing")
    return [_read_json(found[k]) for k in range(count)]


def _restore_either_layout(manager: Any, step: int, abstract: Any) -> tuple[Any, bool]:
    """(state, converted): checkpoint `step` in `abstract`'s ResNet-stage layout, or another.

    Checkpoints written before ResNet stages were scanned, or by a `--noscan` run, hold every
    block under its own name (`block2`, ...); scanned runs stack the repeated blocks under
    `blocks`, and those written before stages of 3 blocks were left unrolled stack every stage.
    When the checkpoint is in another layout than the template, it is read back in its own and
    `converted` says it still needs converting.
    """

    def restore(target: Any) -> Any:
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
        return manager.restore(step, args=args).state

    try:
        return restore(abstract), False
    except Exception:
        per_block = unstack_blocks(abstract)
        layouts = {}  # by tree structure: each other layout once
        for layout in (per_block, stack_blocks(per_block), stack_blocks(per_block, min_repeats=1)):
            layouts.setdefault(jax.tree.structure(layout), layout)
        layouts.pop(jax.tree.structure(abstract), None)
        for layout in layouts.values():
            try:
                return restore(layout), True
            except Exception:  # noqa: BLE001 - not this layout either: try the next one
                continue
        raise  # no other layout reads it back: the first error


def _restore_verified(
    manager: Any, directory: Path, step: int, abstract: Any, *, with_data: bool = True
) -> Restored:
    """Read checkpoint `step` back and check it against its recorded checksums.

    with_data=False: weights only (`load`), so imported weights, which have no data-iterator
    state, read back too; a resume always needs the data states.
    """
    config = TrainConfig.from_json(
        json.dumps(_read_json(directory / str(step) / "config" / "metadata"))
    )
    data_states = read_data_states(directory, step) if with_data else []
    recorded_path = directory / str(step) / "checksums" / "metadata"
    recorded = _read_json(recorded_path) if recorded_path.exists() else None
    state, converted = _restore_either_layout(manager, step, abstract)
    if recorded is None:
        logging.info("checkpoint %d has no checksums (written before they existed)", step)
    else:
        actual = checksums(state)
        bad = [path for path, value in actual.items() if recorded.get(path) != value]
        if bad:
            raise ValueError(f"array {bad[0]} does not match its checksum ({len(bad)} arrays)")
    if converted:
        logging.info("checkpoint %d holds ResNet stages in the other layout: converted", step)
        per_block = unstack_blocks(state)
        ours = stack_blocks(per_block) if has_stacked_blocks(abstract) else per_block
        state = jax.tree.map(lambda a, t: jax.device_put(a, t.sharding), ours, abstract)
    return Restored(step=step, state=state, config=config, data_states=data_states)


def save_weights(workdir: str | Path, variables: dict[str, Any], config: TrainConfig) -> None:
    """Write `variables` as checkpoint 0 of `workdir`: weights, config and checksums only.

    For weights from elsewhere (`cnnjax.weights`): `load`, evaluate, the viz tools and
    --init_from read it like a run's checkpoint; it has no optimizer or data-iterator state.
    """
    state = {
        "params": variables["params"],
        "model_state": {k: v for k, v in variables.items() if k != "params"},
    }
    state = jax.tree.map(jnp.asarray, state)
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    with ocp.CheckpointManager(checkpoint_dir(workdir), options=options) as manager:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(json.loads(config.to_json())),
            checksums=ocp.args.JsonSave(checksums(state)),
        )
        manager.save(0, args=args)
        manager.wait_until_finished()


def saved_steps(workdir: str | Path) -> list[int]:
    """The steps of the checkpoints in a workdir, oldest first (a listing; nothing is read)."""
    directory = checkpoint_dir(workdir)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def read_config(workdir: str | Path, step: int | None = None) -> TrainConfig:
    """The configuration stored with a checkpoint (default: the latest)."""
    steps = saved_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir(workdir)}")
    step = steps[-1] if step is None else step
    try:
        raw = _read_json(checkpoint_dir(workdir) / str(step) / "config" / "metadata")
        return TrainConfig.from_json(json.dumps(raw))
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise DamagedCheckpointError(
            f"checkpoint {step} in {checkpoint_dir(workdir)} is damaged ({_first_line(e)})"
        ) from None


def _restore_state(workdir: str | Path, step: int) -> Any:
    """Checkpoint `step`'s train state on this process's first device, checked against checksums."""
    directory = checkpoint_dir(workdir)
    with ocp.CheckpointManager(
        directory,
        item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(read_only=True),
    ) as manager:
        # Restore onto this process's first device, whatever topology saved it (resharding).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            dict(manager.item_metadata(step)["state"]),
        )
        return _restore_verified(manager, directory, step, target, with_data=False).state


def _try_restore(workdir: str | Path, step: int) -> tuple[Any, str | None]:
    """(state, None) when checkpoint `step` reads back intact, else (None, the problem)."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # a read-only manager warns about what it will not do
    try:
        return _restore_state(workdir, step), None
    except Exception as e:  # noqa: BLE001 - any failure to read back means damaged
        return None, _first_line(e)
    finally:
        logging.set_verbosity(verbosity)


def load(workdir: str | Path, step: int | None = None) -> tuple[nn.Module, dict, TrainConfig]:
    """`(model, variables, config)` of a run's checkpoint (default: the latest) for research code.

    `model.apply(variables, x, train=False)` then evaluates the trained network. A damaged
    checkpoint raises DamagedCheckpointError naming its step, the problem and the intact steps.
    """
    from cnnjax.models import create_model, options_it_takes

    steps = saved_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir(workdir)}; train a run first")
    if step is not None and step not in steps:
        raise ValueError(f"no checkpoint at step {step}; available: {', '.join(map(str, steps))}")
    step = steps[-1] if step is None else step
    state, problem = _try_restore(workdir, step)
    if problem is not None:
        intact = [s for s in reversed(steps) if s != step and _try_restore(workdir, s)[1] is None]
        advice = (
            f"intact: {', '.join(map(str, intact))}" if intact else "no other checkpoint is intact"
        )
        raise DamagedCheckpointError(
            f"checkpoint {step} in {checkpoint_dir(workdir)} is damaged ({problem}); {advice}"
        )
    config = read_config(workdir, step)
    from cnnjax.train.text_run import model_overrides, saved_text_inputs

    text = saved_text_inputs(workdir)  # a text run's vocabulary size, width and variant
    overrides = model_overrides(config, text) if text is not None else {}
    overrides.update(options_it_takes(config.model, scan=config.scan))
    model = create_model(config.model, num_classes=config.num_classes, **overrides)
    variables = {"params": state["params"], **state.get("model_state", {})}
    return model, in_layout_of(model, variables), config
