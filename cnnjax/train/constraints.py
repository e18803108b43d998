"""The train step's post-update hook: weight constraints applied after every optimizer update.

| field        | what it keeps                                          | paper (recipe)           |
|--------------|--------------------------------------------------------|--------------------------|
| `max_norm`   | each classifier output unit's weights (a column of the | Kim 2014: 3 (`kim2014`)  |
|              | kernel producing the classes) within l2 norm r         |                          |
| `filter_rms` | each conv filter's RMS ≤ r (every conv kernel)         | Zeiler & Fergus 2014:    |
|              |                                                        | 0.1 (`zfnet_paper`)      |

The classifier is found as in transfer learning (`head_paths`: the kernels producing
`num_classes` outputs, GoogLeNet's auxiliary heads included). With `--freeze=backbone` the
filter constraint is skipped: frozen filters must stay as loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import traverse_util

from cnnjax import ops
from cnnjax.train.config import TrainConfig
from cnnjax.train.transfer import head_paths

Params = Any


def _cap_classifier_columns(params: Params, num_classes: int, max_norm: float) -> Params:
    heads = head_paths(params, num_classes)
    flat = traverse_util.flatten_dict(params)
    for path in flat:
        if path[:-1] in heads and path[-1] == "kernel":
            flat[path] = ops.max_norm_columns(flat[path], max_norm)
    return traverse_util.unflatten_dict(flat)


def _cap_filters(params: Params, max_rms: float) -> Params:
    def cap(leaf: jax.Array) -> jax.Array:
        if leaf.ndim == 4:
            return ops.cap_filter_rms(leaf, max_rms)
        if leaf.ndim == 5:  # a scanned ResNet stage's kernels, one per block on axis 0
            return jax.vmap(lambda kernel: ops.cap_filter_rms(kernel, max_rms))(leaf)
        return leaf

    return jax.tree.map(cap, params)


def post_update_hook(config: TrainConfig) -> Callable[[Params], Params] | None:
    """params -> constrained params for the run's settings; None when nothing is constrained."""
    hooks: list[Callable[[Params], Params]] = []
    if config.max_norm:
        hooks.append(lambda p: _cap_classifier_columns(p, config.num_classes, config.max_norm))
    if config.filter_rms and config.freeze != "backbone":
        hooks.append(lambda p: _cap_filters(p, config.filter_rms))
    if not hooks:
        return None

    def hook(params: Params) -> Params:
        for constrain in hooks:
            params = constrain(params)
        return params

    return hook
