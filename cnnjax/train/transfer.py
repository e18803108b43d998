"""Transfer learning: start from another run's weights with a new head; freeze the backbone.

`--init_from=WORKDIR` copies every parameter and BN statistic whose path and shape match from
that run's latest checkpoint; the rest (normally the classifier, re-sized for `--num_classes`)
keeps its fresh initialisation. `--freeze=backbone` trains only the head: an optax
`multi_transform` zeroes every other update (weight decay included), and the network runs as
in evaluation (BN with its loaded statistics, no dropout), as a linear probe does, so the head
learns on exactly the features it is scored on.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from cnnjax.layers.residual import has_stacked_blocks, stack_blocks, unstack_blocks

FREEZE_CHOICES = ("", "backbone")


def head_paths(params: Any, num_classes: int) -> set[tuple[str, ...]]:
    """Modules whose kernel produces `num_classes` outputs: the classifier(s), aux heads too."""
    flat = traverse_util.flatten_dict(params)
    return {
        path[:-1]
        for path, leaf in flat.items()
        if path[-1] == "kernel" and leaf.shape[-1] == num_classes
    }


def freeze_labels(params: Any, num_classes: int) -> Any:
    """'train' for head parameters, 'frozen' for the rest (labels for optax.multi_transform)."""
    heads = head_paths(params, num_classes)
    if not heads:
        raise ValueError(
            f"--freeze=backbone: found no classifier with {num_classes} outputs to train"
        )
    flat = traverse_util.flatten_dict(params)
    labels = {path: "train" if path[:-1] in heads else "frozen" for path in flat}
    return traverse_util.unflatten_dict(labels)


def rgb_to_gray_kernel(kernel: Any, target_shape: tuple[int, ...]) -> Any | None:
    """An RGB input conv kernel (kh, kw, 3, out) for 1-channel inputs: its three filters summed.

    A grey image fed as R = G = B = x gives every filter the response of that sum, so the
    pretrained filters see grey inputs as they saw grey RGB images. None for any other pair of
    shapes.
    """
    shape = tuple(kernel.shape)
    if len(shape) != 4 or shape[2] != 3 or tuple(target_shape) != (*shape[:2], 1, shape[3]):
        return None
    return np.asarray(kernel).sum(axis=2, keepdims=True)


def _merge(fresh: Any, source: Any, kind: str) -> tuple[Any, list[str], list[str]]:
    """Copy source leaves into `fresh` where path and shape agree; report what was (not) copied.

    An RGB input conv meeting 1-channel inputs (ImageNet weights on MNIST-style data) gets its
    three input filters summed (`rgb_to_gray_kernel`) instead of a fresh initialisation.
    Scanned stages are matched block by block (either side may be stacked or per-block), so a
    shallower source still fills the blocks it has.
    """
    fresh_flat = traverse_util.flatten_dict(unstack_blocks(fresh))
    source_flat = traverse_util.flatten_dict(unstack_blocks(source))
    copied, kept = [], []
    merged = {}
    for path, leaf in fresh_flat.items():
        other = source_flat.get(path)
        gray = rgb_to_gray_kernel(other, leaf.shape) if other is not None else None
        if gray is not None:
            merged[path] = jax.device_put(gray.astype(leaf.dtype), leaf.sharding)
            copied.append("/".join(path))
            logging.info("init_from: %s: RGB filters summed for 1-channel inputs", "/".join(path))
        elif other is not None and tuple(other.shape) == tuple(leaf.shape):
            merged[path] = jax.device_put(np.asarray(other, dtype=leaf.dtype), leaf.sharding)
            copied.append("/".join(path))
        else:
            merged[path] = leaf
            kept.append("/".join(path))
    if kept:
        logging.info("init_from: %s freshly initialised: %s", kind, ", ".join(kept))
    tree = traverse_util.unflatten_dict(merged)
    if has_stacked_blocks(fresh):
        tree = jax.tree.map(lambda a, b: jax.device_put(a, b.sharding), stack_blocks(tree), fresh)
    return tree, copied, kept


def adopt_source_normalization(config: Any, channels: int) -> Any:
    """The config with the --init_from run's own normalisation, if it has one for `channels`.

    Imported weights expect the inputs normalised as they were trained (e.g. ImageNet mean/std);
    a run that sets no --mean/--std of its own fine-tunes with theirs when the channel counts
    agree. Anything else (no source yet, a source without its own normalisation) is unchanged.
    """
    from cnnjax.train.checkpoints import read_config

    if not config.init_from or config.mean or config.std:
        return config
    try:
        source = read_config(config.init_from)
    except (FileNotFoundError, ValueError):  # init_from_run says what is wrong, later
        return config
    if not source.mean or len(source.mean) not in (1, channels):
        return config
    return config.replace(mean=source.mean, std=source.std)


def describe_normalization(config: Any, mean: Any, std: Any) -> str:
    """Which normalisation a run uses, and where it comes from, in one line."""
    values = f"mean {tuple(round(m, 4) for m in mean)}, std {tuple(round(s, 4) for s in std)}"
    if not config.mean:
        origin = f"{config.dataset}'s statistics"
    elif config.init_from:
        origin = f"the --init_from run's ({config.init_from}), not {config.dataset}'s"
    else:
        origin = "set for this run"
    return f"inputs normalised as (x/255 - mean)/std with {values}: {origin}"


def init_from_run(state: Any, workdir: str) -> Any:
    """The train state with the weights of run `workdir` wherever names and shapes agree."""
    from cnnjax.train.checkpoints import load

    try:
        _, variables, source_config = load(workdir)
    except (FileNotFoundError, ValueError) as e:  # no run there, or a damaged checkpoint
        raise ValueError(f"--init_from={workdir}: {e}") from None
    params, copied, _ = _merge(state.params, variables["params"], "params")
    if not copied:
        raise ValueError(
            f"--init_from={workdir}: its {source_config.model} shares no parameter with this "
            "model; start from a run of the same architecture"
        )
    model_state = dict(state.model_state)
    if "batch_stats" in model_state and "batch_stats" in variables:
        model_state["batch_stats"], _, _ = _merge(
            model_state["batch_stats"], variables["batch_stats"], "batch_stats"
        )
    logging.info(
        "init_from %s (%s): copied %d parameter arrays", workdir, source_config.model, len(copied)
    )
    return state.replace(params=params, model_state=model_state)
