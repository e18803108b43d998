"""The classic CNN model zoo; importing this package registers every family."""

from cnnjax.models.registry import (
    ModelSpec,
    UnknownModelError,
    create_model,
    list_models,
    model_spec,
    register_model,
)

# Families register themselves on import (one file per family).
from cnnjax.models import lenet  # noqa: E402,F401,I001

__all__ = [
    "ModelSpec",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
