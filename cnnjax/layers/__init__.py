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
    WindowDense,
    flatten,
    global_avg_pool,
    require_window,
    spatial_output_size,
)
from cnnjax.layers.dense import DenseBlock, DenseLayer, PreActConv, Transition, compressed_channels
from cnnjax.layers.inception import Inception, InceptionAux, adaptive_avg_pool
from cnnjax.layers.residual import (
    HE_NORMAL_FAN_OUT,
    BasicBlock,
    BottleneckBlock,
    ResidualStage,
    zero_pad_shortcut,
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
    "WindowDense",
    "flatten",
    "global_avg_pool",
    "require_window",
    "spatial_output_size",
    # deep families (GoogLeNet, ResNet, DenseNet)
    "HE_NORMAL_FAN_OUT",
    "BasicBlock",
    "BottleneckBlock",
    "DenseBlock",
    "DenseLayer",
    "Inception",
    "InceptionAux",
    "PreActConv",
    "ResidualStage",
    "Transition",
    "adaptive_avg_pool",
    "compressed_channels",
    "zero_pad_shortcut",
]
