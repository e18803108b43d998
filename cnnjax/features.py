"""Named intermediate activations of any cnnjax model, without changing the model.

    feats = cnnjax.features(model, variables, x, layers=["fc7", "conv5"])
    feats["fc7"].shape  # (batch, 4096)

A layer name is the path of a flax submodule joined by '/': a top-level layer ('c1', 'fc7',
'layer3'), a block inside it ('layer4/block2', 'inception_3a') or a leaf ('conv1/bn'). Its
feature is the value that submodule's `__call__` returns, so for a bare `Conv` (LeNet's 'c1',
AlexNet's 'conv1') it is the map *before* the ReLU the model applies afterwards, while
conv-BN-ReLU units, residual blocks and stages include their activation. `feature_names`
lists every name in call order; `python -m cnnjax.summary --model=NAME --layers` prints them
with their output shapes.

Extraction uses flax's `capture_intermediates` with a filter that keeps only the requested
module paths, so nothing else is stored; the model runs in inference mode (`train=False`:
BN uses its running statistics, dropout is off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import did_you_mean
from cnnjax.layers.residual import unrolled

_MAX_LISTED = 60  # beyond this many names, the error lists only the top-level ones


class UnknownLayerError(ValueError):
    """A requested layer name is not a submodule the model calls; the message lists the names."""


def _path(module: nn.Module) -> str:
    return "/".join(module.path) if module.scope is not None else ""


def feature_shapes(
    model: nn.Module, input_shape: Sequence[int], dtype: Any = jnp.float32
) -> dict[str, tuple[int, ...]]:
    """Every layer name of `model` in call order, with its output shape for one example.

    `input_shape` is one example without the batch axis (e.g. (32, 32, 1)); nothing is computed
    (`jax.eval_shape`). Non-array outputs get the shape of their first array leaf. Scanned
    stages are listed block by block (`layer3/block2`), as their unrolled form names them.
    """
    model, _ = unrolled(model)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(next_fun, args, kwargs, context):
        name = _path(context.module)
        if context.method_name != "__call__" or not name:
            return next_fun(*args, **kwargs)
        shapes.setdefault(name, ())  # entry order = call order, parents before children
        out = next_fun(*args, **kwargs)
        leaves = jax.tree.leaves(out)
        if leaves and not shapes[name]:
            shapes[name] = tuple(leaves[0].shape[1:])
        return out

    def run(x: jax.Array) -> None:
        variables = model.init(jax.random.key(0), x)
        with nn.intercept_methods(record):
            model.apply(variables, x, train=False)

    jax.eval_shape(run, jax.ShapeDtypeStruct((1, *input_shape), dtype))
    return shapes


def feature_names(
    model: nn.Module, input_shape: Sequence[int], dtype: Any = jnp.float32
) -> list[str]:
    """Every name `features` accepts for `model`, in call order (see `feature_shapes`)."""
    return list(feature_shapes(model, input_shape, dtype))


def _unknown_layers_message(model: nn.Module, missing: list[str], valid: list[str]) -> str:
    hints = []
    for name in missing:
        hints.append(f"{name!r}{did_you_mean(name, valid, n=2, cutoff=0.5)}")
    if len(valid) <= _MAX_LISTED:
        listed = "valid layers: " + ", ".join(valid)
    else:
        top = [n for n in valid if "/" not in n]
        listed = (
            f"top-level layers: {', '.join(top)}; nested names join paths with '/' (e.g. "
            f"{next(n for n in valid if '/' in n)!r}); all {len(valid)}: "
            "cnnjax.feature_names(model, input_shape) or python -m cnnjax.summary --layers"
        )
    noun = "layers" if len(hints) > 1 else "layer"
    return f"{type(model).__name__} has no {noun} {', '.join(hints)}; {listed}"


def features(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    layers: str | Sequence[str],
) -> dict[str, Any]:
    """The outputs of the named layers for input batch `x` (inference mode), keyed by name.

    Names are module paths joined by '/' (see the module docstring); an unknown name raises
    `UnknownLayerError` listing the valid ones. A model with scanned stages runs unrolled here,
    so every block has its own name.
    """
    model, variables = unrolled(model, variables)
    wanted = [layers] if isinstance(layers, str) else list(layers)
    if not wanted:
        raise ValueError("features: give at least one layer name, e.g. layers=['fc7']")
    wanted_set = set(wanted)

    def keep(module: nn.Module, method_name: str) -> bool:
        return method_name == "__call__" and _path(module) in wanted_set

    _, state = model.apply(
        variables, x, train=False, capture_intermediates=keep, mutable=["intermediates"]
    )
    captured = state.get("intermediates", {})
    found: dict[str, Any] = {}
    for name in wanted:
        node = captured
        for key in name.split("/"):
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if "__call__" in node:
            found[name] = node["__call__"][-1]  # a module called twice: its last output
    missing = [n for n in wanted if n not in found]
    if missing:
        valid = feature_names(model, x.shape[1:], x.dtype)
        raise UnknownLayerError(_unknown_layers_message(model, missing, valid))
    return found
