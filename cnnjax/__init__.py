"""cnnjax: the classic convolutional networks in JAX/Flax, faithful to the papers."""

import importlib
from typing import Any

from cnnjax import layers, ops
from cnnjax.features import feature_names, features
from cnnjax.models import create_model, list_models, model_spec

__version__ = "0.1.0"

# Submodules imported on first access (`cnnjax.checkpoint.load(...)` after `import cnnjax`),
# so that importing the package stays light.
_LAZY_SUBMODULES = ("checkpoint", "data", "evaluate", "summary", "train", "viz")

__all__ = [
    "create_model",
    "feature_names",
    "features",
    "layers",
    "list_models",
    "model_spec",
    "ops",
    *_LAZY_SUBMODULES,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"cnnjax.{name}")
    raise AttributeError(f"module 'cnnjax' has no attribute {name!r}")
