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
from cnnjax.ops.constraints import cap_filter_rms, max_norm_columns
from cnnjax.ops.conv import (
    FilterDoesNotFitError,
    conv2d,
    conv_params,
    convolve2d,
    output_size,
    same_padding,
)
from cnnjax.ops.kernels import KERNELS, apply_kernel
from cnnjax.ops.pooling import avg_pool, max_pool

__all__ = [
    "KERNELS",
    "FilterDoesNotFitError",
    "apply_kernel",
    "avg_pool",
    "cap_filter_rms",
    "conv2d",
    "conv_params",
    "max_norm_columns",
    "convolve2d",
    "elu",
    "leaky_relu",
    "local_response_norm",
    "max_pool",
    "maxout",
    "output_size",
    "prelu",
    "relu",
    "same_padding",
    "sigmoid",
    "tanh",
]
