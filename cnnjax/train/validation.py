"""Every value of a TrainConfig checked before anything is built or written.

`validate_config(config)` raises one `ConfigError` (a ValueError, so the command line prints it
as one `error:` line) naming each bad flag as the user typed it, its value and the valid range,
e.g. `--momentum=2.0 is out of range: momentum must be in [0, 1)`. `check_workdir(path)` says
whether a run directory can be used, without creating anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from cnnjax.data.catalog import DatasetInfo, dataset_info
from cnnjax.train.config import TrainConfig
from cnnjax.train.text_run import check_text_config

MAX_IMAGE_SIZE = 4096  # 12× the largest classic CNN input (331); beyond it is a typo
GiB = 2**30


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag, its value and the range."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one numeric field: an interval, optionally of integers only."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    high_text: str = ""  # how to print `high` when %g would not be readable (2**32)

    def contains(self, value: Any) -> bool:
        """True for a number of the right kind that lies in the interval."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The range in words: 'in [0, 1)', 'an integer >= 1', 'finite and > 0'."""
        kind = "an integer " if self.integer else ""
        if math.isinf(self.high):
            bound = f"{'>' if self.low_open else '>='} {self.low:g}"
            return f"{kind}{bound}" if self.integer else f"finite and {bound}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        high = self.high_text or f"{self.high:g}"
        return f"{kind}in {left}{self.low:g}, {high}{right}"


# One entry per numeric TrainConfig field (tests check that none is missing).
RANGES: dict[str, Range] = {
    "image_size": Range(1, integer=True),  # the upper bound depends on dataset and memory
    "resize_size": Range(1, integer=True),  # (>= the crop side: the loader checks)
    "num_classes": Range(2, integer=True),
    "batch_size": Range(1, integer=True),
    "epochs": Range(0, low_open=True),
    "max_steps": Range(1, integer=True),
    "lr": Range(0, low_open=True),
    "base_batch_size": Range(1, integer=True),
    "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0),
    "lr_decay_factor": Range(0, 1, low_open=True),
    "plateau_patience": Range(1, integer=True),
    "plateau_min_scale": Range(0, 1, low_open=True),
    "exponential_decay_rate": Range(0, 1, low_open=True),
    "exponential_decay_epochs": Range(0, low_open=True),
    "warmup_epochs": Range(0),
    "warmup_steps": Range(0, integer=True),
    "warmup_lr": Range(0),
    "label_smoothing": Range(0, 1, high_open=True),
    "max_norm": Range(0),
    "filter_rms": Range(0),
    "aux_loss_weight": Range(0),
    "seed": Range(0, 2**32, high_open=True, integer=True, high_text="2**32"),
    "eval_every_epochs": Range(0, low_open=True),
    "checkpoint_every_steps": Range(1, integer=True),
    "keep_checkpoints": Range(1, integer=True),
    "log_every_steps": Range(1, integer=True),
    "workers": Range(0, integer=True),
    "fold": Range(0, integer=True),  # (the upper bound is the dataset's: check_text_config)
    "feature_maps": Range(1, integer=True),
    "dropout": Range(0, 1, high_open=True),
    "dev_fraction": Range(0, 1, high_open=True),
    "early_stopping_patience": Range(0, integer=True),
}

# Step-schedule boundaries: each element in this range, strictly increasing.
BOUNDARIES: dict[str, Range] = {
    "lr_decay_epochs": Range(0, low_open=True),
    "lr_decay_steps": Range(1, integer=True),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adadelta"),
    "lr_scaling": ("none", "linear"),
    "decay_mode": ("coupled", "decoupled"),
    "lr_schedule": ("constant", "step", "plateau", "exponential", "cosine"),
    "dtype": ("float32", "bfloat16"),
    "freeze": ("", "backbone"),
}


def flag_text(name: str, value: Any) -> str:
    """`--name=value` as the user would have typed it (lists comma-separated)."""
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value)
    return f"--{name}={value}"


def _out_of_range(name: str, value: Any, requirement: str) -> str:
    return f"{flag_text(name, value)} is out of range: {name} must be {requirement}"


def _range_problems(config: TrainConfig) -> dict[str, str]:
    """Numeric fields outside RANGES; None is accepted where it is the field's default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    problems = {}
    for name, valid in RANGES.items():
        value = getattr(config, name)
        if value is None and defaults[name] is None:
            continue
        if not valid.contains(value):
            problems[name] = _out_of_range(name, value, valid.describe())
    return problems


def _boundary_problems(config: TrainConfig) -> dict[str, str]:
    """Decay boundaries that are not all in range or not strictly increasing."""
    problems = {}
    for name, valid in BOUNDARIES.items():
        values = tuple(getattr(config, name))
        increasing = all(a < b for a, b in zip(values, values[1:], strict=False))
        if not (all(valid.contains(v) for v in values) and increasing):
            kind = "integers" if valid.integer else "finite numbers"
            sign = f"{'>' if valid.low_open else '>='} {valid.low:g}"
            problems[name] = _out_of_range(name, values, f"strictly increasing {kind} {sign}")
    return problems


def _choice_problems(config: TrainConfig) -> dict[str, str]:
    """String fields whose value is not one of their choices."""
    problems = {}
    for name, choices in _CHOICES.items():
        value = getattr(config, name)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            problems[name] = (
                f"{flag_text(name, value)} is not valid: {name} must be one of {listed}"
            )
    return problems


def _remat_problem(config: TrainConfig) -> str | None:
    """--remat names a policy, and a model other than 'none' needs has scanned/remat stages."""
    from cnnjax.layers.residual import REMAT_POLICIES
    from cnnjax.models import UnknownModelError, create_model

    if config.remat not in REMAT_POLICIES:
        listed = ", ".join(repr(c) for c in REMAT_POLICIES)
        return f"--remat={config.remat} is not valid: remat must be one of {listed}"
    if config.remat == "none":
        return None
    try:
        model = create_model(config.model)
    except UnknownModelError:
        return None  # the model's own check names it
    if not hasattr(model, "remat"):
        return (
            f"--remat={config.remat}: {config.model} has no rematerialised blocks; use --remat=none"
        )
    return None


def _num_classes_problem(config: TrainConfig, info: DatasetInfo) -> str | None:
    """A real dataset's labels fix the classifier width, unless a run's weights are reused."""
    if config.num_classes is None or info.tfds_name is None or config.init_from:
        return None
    if config.num_classes == info.num_classes:
        return None
    return _out_of_range(
        "num_classes",
        config.num_classes,
        f"{info.num_classes} ({info.name}'s classes) without --init_from, or unset",
    )


def _normalization_problems(config: TrainConfig, info: DatasetInfo) -> dict[str, str]:
    """--mean/--std: given together, one value or one per channel each, std positive."""
    if not config.mean and not config.std:
        return {}
    channels = _channels(config, info)
    fits = f"one value, or {channels} comma-separated values (one per channel)"
    problems = {}
    for name in ("mean", "std"):
        values = tuple(getattr(config, name))
        if not values:
            other = "std" if name == "mean" else "mean"
            problems[name] = f"--{other} needs --{name} too: pass both, {fits} each"
        elif len(values) not in (1, channels) or not all(math.isfinite(v) for v in values):
            problems[name] = _out_of_range(name, values, fits)
        elif name == "std" and min(values) <= 0:
            problems[name] = _out_of_range(name, values, "positive in every channel")
    return problems


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def available_cores() -> int:
    """CPU cores this process may run on (as cnnjax.data.loader counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def buffered_batches(workers: int) -> int:
    """Training batches the loader holds at once, plus the one being trained on.

    cnnjax.data.loader reads with one grain thread per core (at most 16) in-process, or one per
    worker process, and a prefetch buffer of max(2, threads) batches per stream.
    """
    threads = 1 if workers > 0 else min(available_cores(), 16)
    return max(workers, 1) * max(2, threads) + 1


def processes_from_environment() -> int:
    """The run's process count as launch.sh or SLURM announce it (1 when neither does)."""
    for variable in ("CNNJAX_NUM_PROCESSES", "SLURM_NTASKS"):
        try:
            return max(int(os.environ.get(variable, "")), 1)
        except ValueError:
            continue
    return 1


def _channels(config: TrainConfig, info: DatasetInfo) -> int:
    """Image channels: the dataset's, or the model's for the synthetic dataset."""
    if info.tfds_name is not None:
        return info.channels
    from cnnjax.models import model_spec

    shape = model_spec(config.model).input_shape
    return shape[-1] if len(shape) == 3 else info.channels


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Host memory of the training batches one process's loader buffers."""

    buffers: int  # batches held at once
    batch: int  # per-process batch
    pixel_bytes: int  # channels × bytes per value
    memory: int  # physical memory of the machine

    def need(self, side: int) -> int:
        """Bytes of the buffered batches at this image side."""
        return self.buffers * self.batch * side * side * self.pixel_bytes

    def largest_side(self) -> int:
        """The largest image side whose buffered batches fit in memory."""
        return math.isqrt(self.memory // (self.buffers * self.batch * self.pixel_bytes))

    def largest_batch(self, side: int) -> int:
        """The largest per-process batch of side×side images that fits in memory."""
        return self.memory // (self.buffers * side * side * self.pixel_bytes)

    def usage(self, side: int) -> str:
        """Why it does not fit, in words."""
        return (
            f"{self.buffers} buffered batches of {self.batch} {side}×{side} images "
            f"need {self.need(side) / GiB:,.1f} GiB, more than this machine's "
            f"{self.memory / GiB:,.1f} GiB"
        )


def _footprint(config: TrainConfig, info: DatasetInfo, processes: int) -> Footprint | None:
    """The loader's memory footprint, or None when memory is unknown."""
    memory = physical_memory_bytes()
    if memory is None:
        return None
    value_bytes = 2 if config.dtype == "bfloat16" else 4
    return Footprint(
        buffers=buffered_batches(config.workers),
        batch=math.ceil(config.batch_size / processes),
        pixel_bytes=_channels(config, info) * value_bytes,
        memory=memory,
    )


def _image_size_problem(
    config: TrainConfig, info: DatasetInfo, fit: Footprint | None
) -> str | None:
    """Sides out of range, that the dataset's pipeline cannot produce, or that overflow memory."""
    size, native = config.image_size, info.image_size
    if size is None or not RANGES["image_size"].contains(size):
        return None  # unset, or reported with the plain range
    if info.pipeline == "cifar":
        if size == native:
            return None
        requirement = f"{native} for {info.name} ({native}×{native} images) or unset"
        return _out_of_range("image_size", size, requirement)
    low = native if info.pipeline == "mnist" else 1
    high, note = MAX_IMAGE_SIZE, ""
    if low > 1:
        note = f" for {info.name} ({native}×{native} images; larger sides zero-pad)"
    if fit is not None and size > fit.largest_side():
        if fit.largest_side() < low:
            return (
                f"{flag_text('image_size', size)} cannot fit at --batch_size={config.batch_size}:"
                f" {fit.usage(low)}, so use a smaller --batch_size"
            )
        high = min(high, fit.largest_side())
        note = f" at --batch_size={config.batch_size} ({fit.usage(size)})"
    valid = Range(low, high, integer=True)
    if valid.contains(size):
        return None
    return _out_of_range("image_size", size, valid.describe() + note)


def _batch_memory_problem(
    config: TrainConfig, info: DatasetInfo, fit: Footprint | None, processes: int
) -> str | None:
    """A batch whose buffered batches overflow memory at a valid (or the native) image side."""
    if fit is None:
        return None
    side = config.image_size or info.image_size
    if fit.need(side) <= fit.memory:
        return None
    largest = max(fit.largest_batch(side) * processes, 1)
    valid = f"{Range(1, largest, integer=True).describe()} ({fit.usage(side)})"
    return _out_of_range("batch_size", config.batch_size, valid)


def validate_config(config: TrainConfig, *, processes: int | None = None) -> None:
    """Raise one ConfigError listing every invalid value of `config`, before anything is built.

    processes: the run's process count (each loads batch_size / processes examples a step);
    None reads it from launch.sh's or SLURM's environment variables.
    """
    info = dataset_info(config.dataset)
    problems = {
        **_range_problems(config),
        **_boundary_problems(config),
        **_choice_problems(config),
        **_normalization_problems(config, info),
    }
    if text_problem := check_text_config(config):
        problems["variant"] = text_problem
    if remat_problem := _remat_problem(config):
        problems["remat"] = remat_problem
    count = max(processes if processes is not None else processes_from_environment(), 1)
    sizes_valid = not any(n in problems for n in ("batch_size", "workers", "dtype"))
    fit = _footprint(config, info, count) if sizes_valid else None
    checks = {
        "num_classes": lambda: _num_classes_problem(config, info),
        "image_size": lambda: _image_size_problem(config, info, fit),
        "batch_size": lambda: _batch_memory_problem(config, info, fit, count),
    }
    for name, check in checks.items():
        if name in problems or (name == "batch_size" and "image_size" in problems):
            continue  # one message a flag; a side too large for memory is image_size's
        if problem := check():
            problems[name] = problem
    if problems:
        raise ConfigError("; ".join(problems[name] for name in _field_order(problems)))


def _field_order(names: Sequence[str]) -> list[str]:
    """`names` in TrainConfig's field order, which is the order of the flags' help."""
    order = [f.name for f in dataclasses.fields(TrainConfig)]
    return sorted(names, key=order.index)


def _nearest_existing(path: str) -> str:
    """`path` or its closest ancestor that exists (a dangling link counts as existing)."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        current = os.path.dirname(current)
    return current


def check_workdir(path: str) -> None:
    """Raise ConfigError unless `path` is, or can be created as, a writable directory.

    Nothing is created: an existing path must be a writable directory, otherwise its nearest
    existing ancestor must be one. os.access also says no on read-only file systems.
    """
    flag = flag_text("workdir", path)
    if not path:
        raise ConfigError(f"{flag} is empty: give a directory, or leave --workdir out")
    existing = _nearest_existing(path)
    what = "it" if existing == os.path.abspath(path) else existing
    if not os.path.isdir(existing):
        kind = "a broken link" if not os.path.exists(existing) else "a file"
        raise ConfigError(f"{flag} cannot be used: {what} is {kind}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} cannot be used: {what} is a directory this user cannot write")
