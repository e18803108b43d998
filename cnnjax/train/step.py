"""The train state and the pure, jit-compiled train and eval steps over a device mesh.

One `jax.jit` over a 1-D `('data',)` mesh of every device of every process: the batch is
sharded on `data`, parameters and optimizer state are replicated, and XLA inserts the
gradient all-reduce. BatchNorm without `axis_name` therefore normalises over the *global*
batch. Nothing random lives outside the state: the step's dropout key is
`fold_in(key(seed), step)`. Metrics are returned as device scalars and fetched only at log time.

Image runs feed raw uint8 pixels (4x fewer bytes to the device than float32); with
`normalization` the steps turn them into `(x / 255 - mean) / std` in the compute dtype as
their first operation, which XLA fuses into the first layer (`device_inputs`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax.data.preprocess import LIGHTING
from cnnjax.train.config import TrainConfig
from cnnjax.train.constraints import post_update_hook
from cnnjax.train.optim import Optimizer, cross_entropy, plateau_scale

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std), 0-1 scale


def device_inputs(batch: Batch, normalization: Normalization | None, dtype: Any) -> Batch:
    """The model's input from raw pixels: `((x [+ lighting]) / 255 - mean) / std` in `dtype`.

    The same float32 arithmetic as the host's `augment.normalize`, so results match it within
    float rounding; None (token ids, or images normalised already) passes the batch through.
    """
    if normalization is None:
        return batch
    batch = dict(batch)
    image = batch.pop("image").astype(jnp.float32)
    offset = batch.pop(LIGHTING, None)
    if offset is not None:  # (B, 3) -> broadcast over (B, [crops,] H, W, 3)
        image = image + offset.reshape(offset.shape[0], *([1] * (image.ndim - 2)), -1)
    mean, std = (jnp.asarray(v, jnp.float32).reshape(-1) for v in normalization)
    batch["image"] = ((image * jnp.float32(1 / 255) - mean) / std).astype(dtype)
    return batch


@struct.dataclass
class TrainState:
    """Everything a step changes: step, params, other model variables and optimizer state."""

    step: jax.Array
    params: Any
    model_state: dict[str, Any]  # batch_stats and any other non-trainable collections
    opt_state: Any
    plateau_state: Any = None  # optax reduce_on_plateau state, stepped at evaluations

    def variables(self) -> dict[str, Any]:
        return {"params": self.params, **self.model_state}


def make_mesh() -> Mesh:
    """A 1-D data-parallel mesh over every device of every process."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_divides(global_batch: int, num_devices: int) -> None:
    """Raise a one-line error naming the nearest valid batch sizes when the batch does not split."""
    if global_batch % num_devices == 0:
        return
    below = global_batch - global_batch % num_devices
    above = below + num_devices
    options = " or ".join(str(b) for b in (below, above) if b > 0)
    raise ValueError(
        f"batch size {global_batch} does not divide over {num_devices} devices; "
        f"use --batch_size={options}"
    )


# The initialisation runs once, so XLA:CPU's most expensive backend optimisations only cost
# start-up time: each parameter's threefry draw is its own fusion, ~0.3 s of LLVM work apiece.
# At LLVM level 1 the init's compile + run takes 0.31-0.69x as long (LeNet-5 3.8 -> 1.2 s,
# GoogLeNet 25.4 -> 12.7 s; benchmarks/init_compile.py) and draws the same bits (level 0 moves
# some weights by an ulp; tests/test_train_step.py checks).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_state(model: nn.Module, optimizer: Optimizer, example: jax.Array, seed: int) -> TrainState:
    """Initialise variables (eval mode) and optimizer state; run under jit with out_shardings."""
    variables = model.init(jax.random.key(seed), example, train=False)
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    plateau = optimizer.plateau.init(params) if optimizer.plateau is not None else None
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=optimizer.tx.init(params),
        plateau_state=plateau,
    )


def _split_outputs(out: Any) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    # Models with auxiliary classifiers (GoogLeNet) return (logits, aux_logits) in training.
    if isinstance(out, tuple):
        return out[0], tuple(out[1])
    return out, ()


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest logits (ties broken by index), per example."""
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits.astype(jnp.float32), k)[1]
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def predict_probabilities(model: nn.Module, variables: Any, images: jax.Array) -> jax.Array:
    """float32 softmax probabilities (B, classes); (B, crops, H, W, C) images average the crops.

    Images (B, H, W, C) and token ids (B, L) are scored as they are.
    """
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape((-1, *images.shape[2:])) if images.ndim == 5 else images  # or ids
    logits = model.apply(variables, flat, train=False).astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1).reshape(images.shape[0], crops, -1).mean(axis=1)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    optimizer: Optimizer,
    config: TrainConfig,
    normalization: Normalization | None = None,
) -> tuple[TrainState, Metrics]:
    """One SGD step on a global batch: forward, loss (+aux), backward, update; returns metrics."""
    batch = device_inputs(batch, normalization, jnp.dtype(config.dtype))
    rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
    # A frozen backbone is the loaded network as evaluation runs it (BN with its loaded
    # statistics, no dropout), so the head learns on exactly the features it will be scored on.
    frozen = config.freeze == "backbone"
    mutable = [k for k in ("batch_stats",) if k in state.model_state and not frozen]
    images, labels = batch["image"], batch["label"]

    def loss_fn(params):
        out, updates = model.apply(
            {"params": params, **state.model_state},
            images,
            train=not frozen,
            rngs={"dropout": rng},
            mutable=mutable,
        )
        logits, aux = _split_outputs(out)
        loss = jnp.mean(cross_entropy(logits, labels, config.label_smoothing))
        for aux_logits in aux:
            aux_loss = jnp.mean(cross_entropy(aux_logits, labels, config.label_smoothing))
            loss = loss + config.aux_loss_weight * aux_loss
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    scale = plateau_scale(state.plateau_state)
    deltas, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
    deltas = jax.tree.map(lambda d: d * scale.astype(d.dtype), deltas)
    params = optax.apply_updates(state.params, deltas)
    constrain = post_update_hook(config)  # Kim's max-norm, ZF's filter RMS: after every update
    new_state = state.replace(
        step=state.step + 1,
        params=params if constrain is None else constrain(params),
        model_state={**state.model_state, **updates},
        opt_state=opt_state,
    )
    metrics = {
        "loss": loss,
        "top1": jnp.mean(topk_correct(logits, labels, 1)),
        "top5": jnp.mean(topk_correct(logits, labels, 5)),
        "lr": optimizer.schedule(state.step) * scale,
        "grad_norm": optax.tree.norm(grads),
    }
    return new_state, metrics


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    normalization: Normalization | None = None,
    dtype: Any = jnp.float32,
) -> Metrics:
    """Sums over the real (mask=1) examples of a batch: loss, top-1/top-5 hits and count.

    A `(B, crops, H, W, C)` image batch is scored by the mean softmax over the crops (10-crop).
    """
    batch = device_inputs(batch, normalization, dtype)
    images, labels = batch["image"], batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, bool)).astype(jnp.float32)
    probs = predict_probabilities(model, state.variables(), images)
    nll = -jnp.log(jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0] + 1e-12)
    return {
        "loss_sum": jnp.sum(nll * mask),
        "top1_sum": jnp.sum(topk_correct(probs, labels, 1) * mask),
        "top5_sum": jnp.sum(topk_correct(probs, labels, 5) * mask),
        "count": jnp.sum(mask),
    }


class Steps:
    """The compiled steps of a run, and the shardings that feed them.

    `normalization`: the run's per-channel (mean, std) when its loaders give raw uint8 pixels
    (`make_run_loader`), so the steps normalise them; None for token ids or float images.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        config: TrainConfig,
        mesh: Mesh,
        normalization: Normalization | None = None,
    ):
        self.mesh = mesh
        self.replicated = NamedSharding(mesh, P())
        self.data = NamedSharding(mesh, P("data"))
        self._model, self._optimizer, self._seed = model, optimizer, config.seed
        self.train = jax.jit(
            functools.partial(
                train_step,
                model=model,
                optimizer=optimizer,
                config=config,
                normalization=normalization,
            ),
            in_shardings=(self.replicated, self.data),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=(0,),
        )
        self.eval = jax.jit(
            functools.partial(
                eval_step,
                model=model,
                normalization=normalization,
                dtype=jnp.dtype(config.dtype),
            ),
            in_shardings=(self.replicated, self.data),
            out_shardings=self.replicated,
        )
        plateau = optimizer.plateau
        self.plateau_update: Callable[[Any, jax.Array], Any] | None = None
        if plateau is not None:
            self.plateau_update = jax.jit(
                lambda st, value: plateau.update(jnp.zeros(()), st, value=value)[1],
                out_shardings=self.replicated,
            )

    def init(self, example: np.ndarray) -> TrainState:
        """Initial state, replicated over the mesh (compiled once, so every process agrees)."""
        fn = functools.partial(init_state, self._model, self._optimizer, seed=self._seed)
        options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
        init = jax.jit(fn, out_shardings=self.replicated, compiler_options=options)
        return init(jnp.asarray(example))

    def prefetch(self, loader: grain.DatasetIterator, size: int = 2) -> grain.DatasetIterator:
        """`loader`'s batches as global device arrays, `size` transfers ahead of the consumer.

        grain's thread prefetch runs the loader and the host-to-device copies in a background
        thread, so the next batch's transfer overlaps the current step; its `get_state` is
        the loader's state after the last batch handed out, so checkpoints stay exact.
        """
        return grain.experimental.ThreadPrefetchDatasetIterator(_OnDevice(loader, self), size)

    def to_global(self, local_batch: dict[str, np.ndarray]) -> Batch:
        """This process's slice of the batch → global arrays sharded over `data`."""
        return {
            k: jax.make_array_from_process_local_data(self.data, np.asarray(v))
            for k, v in local_batch.items()
        }


class _OnDevice(grain.DatasetIterator):
    """A loader's batches put on the mesh (`Steps.to_global`); its state is the loader's."""

    def __init__(self, loader: grain.DatasetIterator, steps: Steps):
        super().__init__(loader)
        self._steps = steps

    def __next__(self) -> Batch:
        return self._steps.to_global(next(self._parent))

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)
