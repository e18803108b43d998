"""cnnjax: the classic convolutional networks in JAX/Flax, faithful to the papers."""

from cnnjax import layers, ops
from cnnjax.features import feature_names, features
from cnnjax.models import create_model, list_models, model_spec

__version__ = "0.1.0"

__all__ = [
    "create_model",
    "feature_names",
    "features",
    "layers",
    "list_models",
    "model_spec",
    "ops",
]
