"""Plain functions on arrays for what a CNN course teaches."""

from cnnjax.ops.activations import (
    elu,
    leaky_relu,
    local_response_norm,
    maxout,
    prelu,
    relu,
    sigmoid,
    tanh,
)

__all__ = [
    "elu",
    "leaky_relu",
    "local_response_norm",
    "maxout",
    "prelu",
    "relu",
    "sigmoid",
    "tanh",
]
