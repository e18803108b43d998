"""Flax linen building blocks shared by the model families."""

from cnnjax.layers.basic import (
    LRN,
    AvgPool,
    Conv,
    ConvBNAct,
    InputTooSmallError,
    Maxout,
    MaxPool,
    PReLU,
    flatten,
    global_avg_pool,
    spatial_output_size,
)

__all__ = [
    "LRN",
    "AvgPool",
    "Conv",
    "ConvBNAct",
    "InputTooSmallError",
    "MaxPool",
    "Maxout",
    "PReLU",
    "flatten",
    "global_avg_pool",
    "spatial_output_size",
]
