"""DenseNet building blocks (Huang et al. 2017, "Densely Connected Convolutional Networks").

| unit       | layers (pre-activation: BN-ReLU before every conv)            | out channels  |
|------------|----------------------------------------------------------------|---------------|
| DenseLayer | [BN-ReLU-1×1 conv 4k] → BN-ReLU-3×3 conv k, concatenated to x  | C + k         |
| DenseBlock | L dense layers                                                 | C + L·k       |
| Transition | BN-ReLU-1×1 conv ⌊θ·C⌋ → 2×2 average pool /2                   | ⌊θ·C⌋         |

The bracketed bottleneck is the "B" of DenseNet-BC (`bn_size=0` drops it); θ < 1 is the "C".
Optional dropout follows every conv, as in the paper (Sec. 4.2, "a dropout layer after each
convolutional layer (except the first one)") and the authors' Lua code. All convs are bias-free.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.ad_checkpoint import checkpoint_name

from cnnjax.layers.basic import CONV_OUTPUT, AvgPool, Conv, Padding
from cnnjax.layers.residual import HE_NORMAL_FAN_OUT, check_remat, rematted

Initializer = Callable[..., jax.Array]


class PreActConv(nn.Module):
    """BN → ReLU → bias-free conv: the pre-activation unit DenseNet repeats ('norm', 'conv')."""

    features: int
    kernel_size: int
    padding: Padding = 0
    kernel_init: Initializer = HE_NORMAL_FAN_OUT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            name="norm",
        )(x)
        y = Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            padding=self.padding,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="conv",
        )(nn.relu(x))
        return checkpoint_name(y, CONV_OUTPUT)  # what remat="convs" keeps


def _dropout(x: jax.Array, rate: float, train: bool) -> jax.Array:
    # Uses the 'dropout' rng only when training with a non-zero rate.
    return nn.Dropout(rate, deterministic=not train)(x) if rate > 0 else x


class DenseLayer(nn.Module):
    """Computes `growth_rate` new feature maps from x and returns concat([x, new]) on channels.

    x may also be the list of maps to concatenate first (what a rematerialised block passes).
    """

    growth_rate: int
    bn_size: int = 4  # bottleneck width = bn_size · growth_rate; 0 = no bottleneck (plain DenseNet)
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array | Sequence[jax.Array], train: bool = False) -> jax.Array:
        if not isinstance(x, jax.Array):  # the block's maps so far, concatenated here
            x = jnp.concatenate(x, axis=-1)
        y = x
        if self.bn_size:
            y = PreActConv(self.bn_size * self.growth_rate, 1, dtype=self.dtype, name="conv1")(
                y, train
            )
            y = _dropout(y, self.dropout_rate, train)
        y = PreActConv(self.growth_rate, 3, padding=1, dtype=self.dtype, name="conv2")(y, train)
        y = _dropout(y, self.dropout_rate, train)
        return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nn.Module):
    """`num_layers` dense layers (denselayer1, denselayer2, ...): C → C + num_layers·k channels.

    `remat` names a policy of REMAT_POLICIES for every layer (see residual.py).
    """

    num_layers: int
    growth_rate: int
    bn_size: int = 4
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    remat: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_remat(self.remat)
        layer = functools.partial(
            rematted(DenseLayer, self.remat),
            self.growth_rate,
            self.bn_size,
            self.dropout_rate,
            dtype=self.dtype,
        )
        if self.remat == "none":
            for i in range(self.num_layers):
                x = layer(name=f"denselayer{i + 1}")(x, train)
            return x
        # Memory-efficient form (Pleiss et al. 2017; torchvision's memory_efficient): each
        # layer concatenates the block's maps inside its checkpoint, so the backward pass keeps
        # only every layer's k new channels, not a growing concatenation per layer.
        pieces = [x]
        for i in range(self.num_layers):
            out = layer(name=f"denselayer{i + 1}")(tuple(pieces), train)
            pieces.append(out[..., -self.growth_rate :])
        return jnp.concatenate(pieces, axis=-1)


def compressed_channels(channels: int, compression: float) -> int:
    """Transition output width ⌊θ·C⌋ (the authors' `math.floor(nChannels*reduction)`)."""
    if not 0 < compression <= 1:
        raise ValueError(f"compression θ must be in (0, 1], got {compression}")
    return math.floor(channels * compression)


class Transition(nn.Module):
    """BN-ReLU-1×1 conv to ⌊θ·C⌋ channels, then 2×2 average pool, stride 2, between dense blocks."""

    compression: float = 0.5
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        features = compressed_channels(x.shape[-1], self.compression)
        x = PreActConv(features, 1, dtype=self.dtype, name="conv")(x, train)
        x = _dropout(x, self.dropout_rate, train)
        return AvgPool(2, 2, name="pool")(x)
