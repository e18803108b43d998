"""The classic CNN model zoo; importing this package registers every family."""

from cnnjax.models.registry import (  # noqa: I001 (families below register on import)
    ModelSpec,
    UnknownModelError,
    create_model,
    list_models,
    model_spec,
    options_it_takes,
    register_model,
)

# Families register themselves on import (one file per family).
from cnnjax.models import (  # noqa: F401
    alexnet,
    densenet,
    googlenet,
    lenet,
    nin,
    resnet,
    textcnn,
    vgg,
    zfnet,
)

__all__ = [
    "ModelSpec",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_spec",
    "options_it_takes",
    "register_model",
]
