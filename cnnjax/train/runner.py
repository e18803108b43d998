"""The one training loop every experiment runs: data → sharded steps → eval → checkpoints → logs.

`train_and_evaluate(config)` resumes exactly from the workdir's latest valid checkpoint (train
state, data-iterator position, plateau state), evaluates every `eval_every_epochs` on every
example of the eval split, saves asynchronously every `checkpoint_every_steps`, at each epoch end
and on SIGTERM, and never saves a state whose loss went non-finite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from cnnjax import data as cdata
from cnnjax.models import create_model, options_it_takes
from cnnjax.train import distributed
from cnnjax.train.checkpoints import (
    Restored,
    RunCheckpoints,
    check_resume_config,
    saved_steps,
)
from cnnjax.train.config import TrainConfig
from cnnjax.train.logger import RunLogger, plot_curves, read_metrics
from cnnjax.train.optim import base_learning_rate, make_optimizer, total_steps
from cnnjax.train.run_inputs import (
    EVAL_BATCH_PER_DEVICE,
    device_normalization,
    fake_spec,
    make_run_loader,
    normalization,
    resolve_image_size,
)
from cnnjax.train.step import Steps, TrainState, check_batch_divides, make_mesh
from cnnjax.train.text_run import (
    DEFAULT_EMBED_DIM,
    TEXT_FILE,
    dev_split,
    is_text,
    load_vectors,
    model_overrides,
    split_args,
    text_inputs,
    with_word_vectors,
)
from cnnjax.train.transfer import (
    adopt_source_normalization,
    describe_normalization,
    init_from_run,
)
from cnnjax.train.validation import check_workdir, validate_config
from cnnjax.train.workdir_lock import WorkdirLock, run_lock


class TrainingDivergedError(ValueError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    workdir: str
    steps: int
    best_top1: float | None
    final_eval: dict[str, float] | None
    seconds: float
    images_per_second: float
    preempted: bool = False
    dev_top1: float | None = None  # the best dev top-1, where early stopping has a dev set
    stopped_early: bool = False  # early_stopping_patience evaluations passed without a new best


def default_workdir(config: TrainConfig) -> str:
    """A readable run name under runs/: dataset-model[-recipe]-bBATCH-sSEED."""
    recipe = f"-{config.recipe}" if config.recipe else ""
    return str(
        Path("runs")
        / f"{config.dataset}-{config.model}{recipe}-b{config.batch_size}-s{config.seed}"
    )


class _Preemption:
    """Agreement on when to stop for a preemption notice (SIGTERM) or Ctrl-C, then save and exit.

    One process: SIGTERM and the first SIGINT set a flag checked between steps and between
    evaluation batches. Several processes: JAX's preemption sync manager (started by
    `jax.distributed`, which catches SIGTERM) picks the same safe point, a train step or an
    evaluation batch, on every process, so no process leaves a collective the others are in;
    Ctrl-C is turned into that SIGTERM. A second Ctrl-C stops at once: the last complete
    checkpoint is intact, a save in flight is discarded.
    """

    def __init__(self, on_abort: Callable[[], None]) -> None:
        self.multi_process = jax.process_count() > 1
        self.requested = False
        self._on_abort = on_abort
        self._interrupts = 0
        self._ticks = 0  # train steps and evaluation batches of this session (several processes)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Preemption:
        signals = [signal.SIGINT] + ([] if self.multi_process else [signal.SIGTERM])
        for signum in signals:
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                print(
                    "\nstopped at once; the last complete checkpoint is intact (a save in "
                    "flight is discarded); run the same command to resume from it",
                    file=sys.stderr,
                    flush=True,
                )
                self._on_abort()
                os._exit(130)
            logging.warning("Ctrl-C: saving a checkpoint and stopping (Ctrl-C again stops at once)")
            if self.multi_process:  # the same path as a preemption notice, on every process
                os.kill(os.getpid(), signal.SIGTERM)
                return
        else:
            logging.warning("SIGTERM received: saving a checkpoint and stopping")
        self.requested = True

    def reached(self, step: int) -> bool:
        """True at the step where every process should save and stop (call it every step)."""
        if self.multi_process and self._sync_point_reached():
            logging.warning("preemption notice: saving a checkpoint at step %d and stopping", step)
        return self.requested

    def between_eval_batches(self) -> bool:
        """True at the evaluation batch where every process should stop evaluating and save."""
        if self.multi_process and self._sync_point_reached():
            logging.warning("preemption notice during an evaluation: saving and stopping")
        return self.requested

    def _sync_point_reached(self) -> bool:
        """JAX's preemption sync over a counter of train steps and evaluation batches.

        Every process counts the same ticks (the evaluation gives each the same number of
        batches), so the agreed tick falls at the same place on all of them, in training or
        in an evaluation.
        """
        from jax.experimental import multihost_utils

        self._ticks += 1
        if multihost_utils.reached_preemption_sync_point(self._ticks):
            self.requested = True
        return self.requested

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def ensure_prepared(config: TrainConfig) -> None:
    """Prepare a dataset on first use when that needs no manual download (process 0 builds it)."""
    info = cdata.dataset_info(config.dataset)
    if info.tfds_name is None:
        return
    try:  # both splits' files checked now: a damaged eval split would fail an epoch later
        for split in (info.train_split, info.eval_split):
            cdata.num_examples(config.dataset, split, config.data_dir, **split_args(config))
        return
    except cdata.DatasetNotPreparedError:  # or damaged (a subclass): prepare rebuilds it
        if info.manual_download:
            raise  # its message says where the archives go and which command prepares them
    if jax.process_index() == 0:
        logging.info("preparing %s (first use) ...", config.dataset)
        cdata.prepare(config.dataset, data_dir=config.data_dir)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"prepared {config.dataset}")


def _fetch(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Mean of the pending step metrics (one host transfer for all of them)."""
    values = jax.device_get(pending)
    return {k: float(np.mean([v[k] for v in values])) for k in values[0]}


def evaluate(
    steps: Steps,
    state: TrainState,
    config: TrainConfig,
    image_size: int,
    local_batch: int,
    stop: Callable[[], bool] = lambda: False,
    text: Any = None,
    split: str | None = None,
    loader: cdata.Loader | None = None,
) -> dict[str, float] | None:
    """top-1/top-5/loss over every example of `split` (default the eval split), padded + masked.

    None when `stop()` turns true between batches (a preemption notice on one process).
    `loader`: the run's loader of that split, built once and rewound here (default: built now).
    """
    if loader is None:
        loader = make_run_loader(
            config,
            split or cdata.dataset_info(config.dataset).eval_split,
            train=False,
            batch_size=local_batch,
            image_size=image_size,
            text=text,
        )
    loader.rewind()
    totals = None
    for batch in loader:
        if stop():
            return None
        sums = steps.eval(state, steps.to_global(batch))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {
        "loss": float(totals["loss_sum"]) / count,
        "top1": float(totals["top1_sum"]) / count,
        "top5": float(totals["top5_sum"]) / count,
        "examples": count,
    }


def train_and_evaluate(config: TrainConfig, *, allow_config_change: bool = False) -> RunResult:
    """Train `config.model` on `config.dataset`, resuming from `config.workdir` if possible.

    The configuration is validated and the workdir locked before anything is written; a resume
    with other settings than the checkpoint's is refused unless `allow_config_change`.
    """
    distributed.initialize()
    info = cdata.dataset_info(config.dataset)
    config = config.replace(
        num_classes=config.num_classes or info.num_classes,
        workdir=config.workdir or default_workdir(config),
    )
    if config.init_from:
        fake = fake_spec(config)
        channels = fake.channels if fake is not None else info.channels
        config = adopt_source_normalization(config, channels)
    validate_config(config, processes=jax.process_count())
    check_workdir(config.workdir)
    check_batch_divides(config.batch_size, jax.device_count())
    fresh = not Path(config.workdir).exists()
    try:
        with run_lock(
            config.workdir, process_index=jax.process_index(), process_count=jax.process_count()
        ) as lock:
            return _train(config, info, allow_config_change, lock)
    finally:
        if fresh and jax.process_index() == 0:  # a run refused at its start leaves no folder
            with contextlib.suppress(OSError):
                Path(config.workdir).rmdir()  # only when empty


def _resume_data(train_iter: cdata.Loader, restored: Restored, config: TrainConfig) -> None:
    """Put the training loader where the checkpoint's run was, on this run's topology."""
    saved = restored.data_states
    index, count = jax.process_index(), jax.process_count()
    own = saved[index] if len(saved) == count else None
    same_layout = (
        own is not None
        and restored.config.batch_size == config.batch_size
        and cdata.loader_state_fits(own, workers=config.workers)
    )
    if same_layout:
        train_iter.set_state(own)
        return
    state, uncertain = cdata.carry_over_state(
        saved,
        saved_batch_size=restored.config.batch_size,
        batch_size=config.batch_size,
        shard=(index, count),
        workers=config.workers,
    )
    train_iter.set_state(state)
    logging.warning(
        "checkpoint %d was saved by %d process(es) with %d worker(s) and batch %d; this run has "
        "%d, %d and %d: the data position carries over%s",
        restored.step,
        len(saved),
        restored.config.workers,
        restored.config.batch_size,
        count,
        config.workers,
        config.batch_size,
        f" (up to {uncertain} examples may repeat or be left out)" if uncertain else " exactly",
    )


def _train(
    config: TrainConfig,
    info: cdata.DatasetInfo,
    allow_config_change: bool,
    lock: WorkdirLock | None,
) -> RunResult:
    """The run itself, in a validated and locked workdir: build, restore or init, train, save."""
    is_main = jax.process_index() == 0
    mesh = make_mesh()
    local_batch = config.batch_size // jax.process_count()
    image_size = resolve_image_size(config, info)
    ensure_prepared(config)
    fake = fake_spec(config)
    num_train = cdata.num_examples(
        config.dataset, info.train_split, config.data_dir, fake=fake, **split_args(config)
    )
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch size {config.batch_size} exceeds the {num_train} training examples of "
            f"{config.dataset}; use a smaller --batch_size"
        )
    num_steps = total_steps(config, steps_per_epoch)
    eval_every = max(round(config.eval_every_epochs * steps_per_epoch), 1)

    text, vectors = None, None
    if is_text(config):
        text = text_inputs(config, DEFAULT_EMBED_DIM)
        if config.word_vectors and not saved_steps(config.workdir):  # a fresh run
            vectors = load_vectors(config, text.vocabulary)
            text = dataclasses.replace(text, embed_dim=vectors.dim)
    model = create_model(
        config.model,
        num_classes=config.num_classes,
        dtype=jnp.dtype(config.dtype),
        **(model_overrides(config, text) if text else {}),
        **options_it_takes(config.model, remat=config.remat, scan=config.scan),
    )
    optimizer = make_optimizer(config, steps_per_epoch)
    steps = Steps(model, optimizer, config, mesh, normalization=device_normalization(config, info))
    train_iter = make_run_loader(
        config,
        info.train_split,
        train=True,
        batch_size=local_batch,
        image_size=image_size,
        text=text,
    )
    if text is not None:
        example = np.zeros((local_batch, text.max_length), np.int32)
    else:
        channels = fake.channels if fake is not None else info.channels
        example = np.zeros((local_batch, image_size, image_size, channels), np.float32)
    state = steps.init(example)
    if vectors is not None:
        state = with_word_vectors(state, vectors.table)

    if config.init_from and not saved_steps(config.workdir):  # a fresh run: before any write
        state = init_from_run(state, config.init_from)
    checkpoints = RunCheckpoints(config.workdir, keep=config.keep_checkpoints)
    saved_config = checkpoints.newest_config()
    if saved_config is not None:
        check_resume_config(saved_config, config, allow_config_change=allow_config_change)
    restored = checkpoints.restore_latest(state)
    start_step = 0
    if restored is not None:
        if restored.config != saved_config:  # an older checkpoint than the newest config's
            check_resume_config(restored.config, config, allow_config_change=allow_config_change)
        checkpoints.set_aside_damaged()
        state, start_step = restored.state, restored.step
        _resume_data(train_iter, restored, config)
        logging.info("resumed %s from step %d", config.workdir, start_step)
    if is_main:
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
        (Path(config.workdir) / "config.json").write_text(config.to_json())
        if text is not None:
            (Path(config.workdir) / TEXT_FILE).write_text(text.to_json())
    logger = RunLogger(config.workdir, enabled=is_main, start_step=start_step)
    lr = base_learning_rate(config)
    logging.info(
        "%s on %s: %d steps (%d/epoch), global batch %d over %d devices, lr %g%s",
        config.model,
        config.dataset,
        num_steps,
        steps_per_epoch,
        config.batch_size,
        jax.device_count(),
        lr,
        " (linearly scaled)" if config.lr_scaling == "linear" else "",
    )
    if text is None:
        logging.info("%s", describe_normalization(config, *normalization(config, info)))
    dev = dev_split(config)
    scores = Scores.from_events(read_metrics(logger.metrics_path), dev is not None)
    pending: list[dict[str, jax.Array]] = []
    eval_batch = EVAL_BATCH_PER_DEVICE * jax.local_device_count()
    eval_loaders = {  # built once, rewound at each evaluation
        split: make_run_loader(
            config, split, train=False, batch_size=eval_batch, image_size=image_size, text=text
        )
        for split in filter(None, (dev, info.eval_split))
    }
    batches = steps.prefetch(train_iter)  # transfers overlap the steps; the state stays exact
    t0, images_seen, preempted = time.time(), 0, False
    bar = _Progress(is_main, steps_per_epoch, start_step, num_steps)

    def save(step: int, metrics: dict[str, float] | None = None) -> None:
        checkpoints.save(step, state, batches, config, metrics)

    def check_finite(values: dict[str, float], step: int) -> None:
        if not math.isfinite(values["loss"]):
            checkpoints.wait()
            raise TrainingDivergedError(
                f"loss became {values['loss']} by step {step}; stopped, the last good checkpoint "
                f"in {checkpoints.directory} is kept (try a lower --lr)"
            )

    def abort() -> None:  # a second Ctrl-C: leave the workdir free for the next run
        if lock is not None:
            lock.release()

    def run_evaluation(split: str | None) -> dict[str, float] | None:
        """Evaluate `split` (None: the eval split); None when a preemption notice cut it short."""
        return evaluate(
            steps,
            state,
            config,
            image_size,
            eval_batch,
            stop=preemption.between_eval_batches,
            text=text,
            loader=eval_loaders[split or info.eval_split],
        )

    def record(name: str, step: int, epoch: float, values: dict[str, float]) -> None:
        logger.log(name, step, epoch, values)
        bar.write(eval_line(step, epoch, values, name))
        scores.record(name, values)

    with _Preemption(abort) as preemption:
        step = start_step
        try:
            while step < num_steps and not scores.patience_spent(config.early_stopping_patience):
                state, metrics = steps.train(state, next(batches))
                pending.append(metrics)
                step += 1
                images_seen += config.batch_size
                epoch = step / steps_per_epoch
                log_now = step % config.log_every_steps == 0 or step == num_steps
                save_now = step % config.checkpoint_every_steps == 0 or step % steps_per_epoch == 0
                eval_now = step % eval_every == 0 or step == num_steps
                stop_now = preemption.reached(step)
                if log_now or save_now or eval_now or stop_now:
                    values = _fetch(pending)  # the only host sync: at log/save/eval time
                    pending.clear()
                    check_finite(values, step)
                    elapsed = time.time() - t0
                    values["images_per_second"] = images_seen / max(elapsed, 1e-9)
                    if log_now:
                        logger.log("train", step, epoch, values)
                    bar.update(step, values)
                if eval_now and not stop_now:
                    # With a dev set: score it, and the test split only at a new best dev
                    # top-1; both are logged once complete (a preemption notice skips them).
                    if dev:
                        dev_values = run_evaluation(dev)
                        improved = dev_values is not None and scores.improves(dev_values)
                        test_values = run_evaluation(None) if improved else None
                        completed = dev_values is not None and (
                            test_values is not None or not improved
                        )
                    else:
                        dev_values, test_values = None, run_evaluation(None)
                        completed = test_values is not None
                    if not completed:  # a notice came during the evaluation: save and stop
                        save(step)
                        preempted = True
                        break
                    if dev_values is not None:
                        record(DEV, step, epoch, dev_values)
                    if test_values is not None:
                        record(EVAL, step, epoch, test_values)
                    selecting = scores.latest_dev if dev else scores.latest
                    if steps.plateau_update is not None:
                        error = jnp.asarray(1.0 - selecting["top1"], jnp.float32)
                        state = state.replace(
                            plateau_state=steps.plateau_update(state.plateau_state, error)
                        )
                    save(step, {"val_top1": selecting["top1"]})
                elif save_now or stop_now:
                    save(step)
                if stop_now:
                    preempted = True
                    break
        finally:
            batches.close()
            bar.close()
            checkpoints.close()
            logger.close()
    seconds = time.time() - t0
    result = RunResult(
        workdir=config.workdir,
        steps=step,
        best_top1=scores.best_top1,
        final_eval=scores.latest,
        seconds=seconds,
        images_per_second=images_seen / max(seconds, 1e-9),
        preempted=preempted,
        dev_top1=scores.best_dev["top1"] if scores.best_dev else None,
        stopped_early=scores.patience_spent(config.early_stopping_patience),
    )
    if is_main:
        plot_curves(logger.metrics_path, Path(config.workdir) / "curves.png")
        logging.info("%s", summary_line(result))
    return result


def eval_line(step: int, epoch: float, values: dict[str, float], name: str = "eval") -> str:
    """The console line of one evaluation: step, epoch, top-1, top-5, loss and examples."""
    return (
        f"{name} step {step} (epoch {epoch:.2f}): top-1 {100 * values['top1']:.2f}%, "
        f"top-5 {100 * values['top5']:.2f}%, loss {values['loss']:.4f} "
        f"({int(values['examples']):,} examples)"
    )


def summary_line(result: RunResult) -> str:
    """The short end-of-run summary: best (or dev-selected) top-1, time, throughput."""
    best = f"{100 * result.best_top1:.2f}%" if result.best_top1 is not None else "n/a"
    status = "stopped at" if result.preempted else "finished"
    if result.stopped_early:
        status = "stopped early (no better dev top-1) at"
    resume = "; run the same command to resume" if result.preempted else ""
    scored = "best eval top-1"
    if result.dev_top1 is not None:
        scored = f"test top-1 at the best dev top-1 ({100 * result.dev_top1:.2f}%)"
    return (
        f"{status} step {result.steps}: {scored} {best}, {result.seconds / 60:.1f} min, "
        f"{result.images_per_second:.0f} img/s; logs and checkpoints in {result.workdir}{resume}"
    )


EVAL, DEV = "eval", "dev"  # the metrics.jsonl names of test-split and dev-split evaluations


@dataclasses.dataclass
class Scores:
    """What a run's evaluations decided: its best top-1, and with a dev set, early stopping.

    `latest` is the test-split evaluation the run reports. Without a dev set it is the last
    one and `best_top1` the best of them. With one, the test split is evaluated only right
    after a new best dev evaluation (`best_dev`; ties go to the later one, as in Kim's code),
    so `latest` is the test score at the best dev score; `evals_since_best` counts the dev
    evaluations since the last strictly better one (a tie is selected but is no progress).
    Rebuilt from metrics.jsonl on resume.
    """

    with_dev: bool
    latest: dict[str, float] | None = None
    best_top1: float | None = None
    latest_dev: dict[str, float] | None = None
    best_dev: dict[str, float] | None = None
    evals_since_best: int = 0

    @classmethod
    def from_events(cls, events: list[dict[str, Any]], with_dev: bool) -> Scores:
        """The scores of the evaluations logged so far (the logger dropped unsaved ones)."""
        scores = cls(with_dev)
        for event in events:
            if event["split"] in (EVAL, DEV):
                scores.record(event["split"], event)
        return scores

    def improves(self, dev_values: dict[str, float]) -> bool:
        """Whether a dev evaluation is a new best (ties count: the later one is kept)."""
        return self.best_dev is None or dev_values["top1"] >= self.best_dev["top1"]

    def record(self, name: str, values: dict[str, float]) -> None:
        """Take in one evaluation of the test split (EVAL) or of the dev split (DEV)."""
        if name == DEV:
            better = self.best_dev is None or values["top1"] > self.best_dev["top1"]
            self.evals_since_best = 0 if better else self.evals_since_best + 1
            if self.improves(values):
                self.best_dev = values
            self.latest_dev = values
            return
        self.latest = values
        if self.with_dev:
            self.best_top1 = values["top1"]  # made right after a new best dev evaluation
        else:
            self.best_top1 = max(self.best_top1 or 0.0, values["top1"])

    def patience_spent(self, patience: int) -> bool:
        """Whether early stopping ends the run: `patience` dev evaluations without a new best."""
        return self.with_dev and patience > 0 and self.evals_since_best >= patience


class _Progress:
    """A tqdm bar per epoch (process 0 only) showing img/s, loss, LR and the ETA."""

    def __init__(self, enabled: bool, steps_per_epoch: int, start_step: int, num_steps: int):
        self.enabled, self.steps_per_epoch, self.num_steps = enabled, steps_per_epoch, num_steps
        self.bar: Any = None
        self.epoch = -1
        self.last = start_step

    def update(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        epoch = (step - 1) // self.steps_per_epoch
        if epoch != self.epoch:
            self.close()
            self.epoch = epoch
            self.bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {epoch + 1}",
                unit="step",
                initial=(self.last % self.steps_per_epoch),
                dynamic_ncols=True,
            )
        self.bar.update(step - self.last)
        self.last = step
        self.bar.set_postfix(
            loss=f"{values['loss']:.4f}",
            lr=f"{values['lr']:.3g}",
            img_s=f"{values['images_per_second']:.0f}",
        )

    def write(self, line: str) -> None:
        """A line on the console above the bar (process 0 only)."""
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
