"""Model registry: every network is a named factory returning a flax.linen Module."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import did_you_mean


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a registered model is, and the input it was defined for."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one example, NHWC without N; (length,) for token models
    num_classes: int
    input_dtype: Any = jnp.float32
    paper: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the valid names."""


def register_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    input_dtype: Any = jnp.float32,
    paper: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering `factory(num_classes=..., dtype=..., **overrides) -> nn.Module`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name, factory, tuple(input_shape), num_classes, input_dtype, paper
        )
        return factory

    return wrap


def _ensure_loaded() -> None:
    # Importing the families fills the registry; done lazily to keep `import cnnjax` cheap.
    import cnnjax.models  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob (`'resnet*'`)."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; an unknown name raises with the list of valid ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}; "
            f"registered models: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def create_model(
    name: str, *, num_classes: int | None = None, dtype: Any = jnp.float32, **overrides: Any
) -> nn.Module:
    """Build the named model; `dtype` is the compute dtype (params stay float32)."""
    spec = model_spec(name)
    classes = spec.num_classes if num_classes is None else num_classes
    return spec.factory(num_classes=classes, dtype=dtype, **overrides)


def options_it_takes(name: str, **options: Any) -> dict[str, Any]:
    """The `options` that model `name` has as fields (e.g. `scan`, `remat` for ResNets only)."""
    module = create_model(name)
    return {key: value for key, value in options.items() if hasattr(module, key)}
