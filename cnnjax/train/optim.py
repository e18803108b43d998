"""SGD-momentum with the papers' weight decay and learning-rate schedules, all from optax.

Weight decay is coupled L2 by default (added to the gradient before momentum, as Caffe, Torch
and PyTorch's SGD do, and as the AlexNet/VGG/ResNet papers trained), masked to conv and dense
kernels; `decay_mode='decoupled'` adds it after the momentum trace instead (Loshchilov & Hutter).
The plateau schedule (AlexNet's "÷10 when the validation error stops improving") is optax's
`contrib.reduce_on_plateau`, stepped on validation error at each evaluation; its scale
multiplies the updates of the step-based schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cnnjax.train.config import TrainConfig

Schedule = Callable[[jax.Array | int], jax.Array]
SCHEDULES = ("constant", "step", "plateau", "exponential", "cosine")


class Optimizer(NamedTuple):
    """The gradient transformation, its step schedule, and the optional plateau controller."""

    tx: optax.GradientTransformation
    schedule: Schedule
    plateau: optax.GradientTransformationExtraArgs | None


def base_learning_rate(config: TrainConfig) -> float:
    """The peak LR: `lr`, scaled by batch_size / base_batch_size only when asked (`linear`)."""
    if config.lr_scaling == "linear":
        return config.lr * config.batch_size / config.base_batch_size
    if config.lr_scaling != "none":
        raise ValueError(f"lr_scaling must be 'none' or 'linear', got {config.lr_scaling!r}")
    return config.lr


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of the whole run: epochs × steps_per_epoch, capped by max_steps."""
    steps = round(config.epochs * steps_per_epoch)
    return min(steps, config.max_steps) if config.max_steps else steps


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> Schedule:
    """LR as a function of the global step: warm-up, then the named schedule (absolute steps)."""
    if config.lr_schedule not in SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {config.lr_schedule!r}; choose one of {', '.join(SCHEDULES)}"
        )
    lr = base_learning_rate(config)
    warm = config.warmup_steps or round(config.warmup_epochs * steps_per_epoch)
    if config.lr_schedule == "step":
        boundaries = config.lr_decay_steps or tuple(
            round(e * steps_per_epoch) for e in config.lr_decay_epochs
        )
        main = optax.piecewise_constant_schedule(
            lr, {int(b): config.lr_decay_factor for b in boundaries}
        )
    elif config.lr_schedule == "exponential":
        main = optax.exponential_decay(
            lr,
            transition_steps=max(round(config.exponential_decay_epochs * steps_per_epoch), 1),
            decay_rate=config.exponential_decay_rate,
            staircase=True,
        )
    elif config.lr_schedule == "cosine":
        decay_steps = max(total_steps(config, steps_per_epoch) - warm, 1)
        cosine = optax.cosine_decay_schedule(lr, decay_steps)
        main = lambda step: cosine(step - warm)  # noqa: E731 - cosine starts after warm-up
    else:  # constant; plateau scales a constant LR
        main = optax.constant_schedule(lr)
    if warm <= 0:
        return main
    if config.warmup_constant:
        ramp = optax.constant_schedule(config.warmup_lr)
    else:
        ramp = optax.linear_schedule(config.warmup_lr, lr, warm)
    # join_schedules hands the later schedule (step - warm); shift back to absolute steps.
    return optax.join_schedules([ramp, lambda step: main(step + warm)], [warm])


def decay_mask(params: Any, include_all: bool = False) -> Any:
    """True for the leaves weight decay applies to: conv/dense kernels, or everything."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: include_all or getattr(path[-1], "key", None) == "kernel", params
    )


# Kim 2014's Adadelta (his code's sgd_updates_adadelta defaults; Zeiler 2012's method).
ADADELTA_RHO, ADADELTA_EPS = 0.95, 1e-6


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> Optimizer:
    """SGD-momentum (Nesterov optional) or Adadelta, masked L2 decay, and the LR schedule."""
    schedule = make_schedule(config, steps_per_epoch)
    mask = lambda params: decay_mask(params, config.decay_all)  # noqa: E731
    momentum = config.momentum or None
    parts: list[optax.GradientTransformation] = []
    if config.optimizer == "adadelta":
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask))
        parts.append(optax.adadelta(schedule, rho=ADADELTA_RHO, eps=ADADELTA_EPS))
    elif config.optimizer != "sgd":
        raise ValueError(f"--optimizer must be 'sgd' or 'adadelta', got {config.optimizer!r}")
    elif config.decay_mode == "coupled":
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask))
        parts.append(optax.sgd(schedule, momentum=momentum, nesterov=config.nesterov))
    elif config.decay_mode == "decoupled":
        if momentum:
            parts.append(optax.trace(decay=momentum, nesterov=config.nesterov))
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask))
        parts.append(optax.scale_by_learning_rate(schedule))
    else:
        raise ValueError(f"decay_mode must be 'coupled' or 'decoupled', got {config.decay_mode!r}")
    tx = optax.chain(*parts)
    if config.freeze == "backbone":
        from cnnjax.train.transfer import freeze_labels

        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()},
            lambda params: freeze_labels(params, config.num_classes),
        )
    elif config.freeze:
        raise ValueError(f"--freeze must be 'backbone' or empty, got {config.freeze!r}")
    plateau = None
    if config.lr_schedule == "plateau":
        plateau = optax.contrib.reduce_on_plateau(
            factor=config.lr_decay_factor,
            patience=config.plateau_patience,
            min_scale=config.plateau_min_scale,
        )
    return Optimizer(tx, schedule, plateau)


def plateau_scale(plateau_state: Any) -> jax.Array:
    """The plateau controller's current LR multiplier (1 without a plateau schedule)."""
    return jnp.asarray(1.0) if plateau_state is None else plateau_state.scale


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy in float32, with optional label smoothing."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
