"""Residual blocks of He et al. 2016 ("Deep Residual Learning for Image Recognition").

| block      | residual branch (conv-BN units)                | out | used by              |
|------------|------------------------------------------------|-----|----------------------|
| basic      | 3×3, stride s → 3×3                            | f   | ResNet-18/34, CIFAR  |
| bottleneck | 1×1 → 3×3, stride s (v1: on the 1×1) → 1×1     | 4f  | ResNet-50/101/152    |

The block output is ReLU(branch(x) + shortcut(x)). The shortcut is the identity when shapes
agree; otherwise option "B" projects with a 1×1 conv + BN (the ImageNet nets) and option "A"
subsamples and zero-pads the channels, adding no parameters (the CIFAR nets, paper Sec. 4.2).

`v1=False` is torchvision's "ResNet v1.5" (stride on the 3×3); `v1=True` is the paper/Caffe
placement. Both have the same parameters; v1.5 spends more multiply-adds (4.09 vs 3.86 GMACs
for ResNet-50, model_zoo.md §7.1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers.basic import ConvBNAct

Initializer = Callable[..., jax.Array]

# He init as torchvision's resnet.py (`kaiming_normal_(mode="fan_out")`) and the DenseNet authors'
# Lua code (liuzhuang13/DenseNet models/densenet.lua): N(0, 2 / (k·k·out_channels)), untruncated.
HE_NORMAL_FAN_OUT: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

SHORTCUT_KINDS = ("A", "B")


def check_shortcut_kind(kind: str) -> None:
    """Reject a shortcut option other than 'A' (zero-pad) or 'B' (projection) up front."""
    if kind not in SHORTCUT_KINDS:
        raise ValueError(
            f"unknown shortcut {kind!r}; use 'A' (zero-pad, parameter-free) or 'B' (1×1 projection)"
        )


def zero_pad_shortcut(x: jax.Array, features: int, strides: int = 1) -> jax.Array:
    """Option A shortcut: keep every `strides`-th pixel and append zero channels up to `features`.

    Parameter-free (He et al. 2016, Sec. 3.3 and 4.2). The input channels come first, the new
    zero channels last.
    """
    channels = x.shape[-1]
    if features < channels:
        raise ValueError(
            f"zero-pad shortcut cannot shrink {channels} channels to {features}; "
            "use shortcut='B' (projection) for that"
        )
    x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - channels)))


def residual_shortcut(
    x: jax.Array,
    features: int,
    strides: int,
    kind: str,
    train: bool,
    *,
    dtype: Any,
    kernel_init: Initializer,
) -> jax.Array:
    """Identity when the shape is kept, else option A (zero-pad) or B (1×1 conv + BN, 'shortcut').

    Must be called inside a compact method: the option-B projection becomes a submodule of the
    calling block.
    """
    if x.shape[-1] == features and strides == 1:
        return x
    if kind == "A":
        return zero_pad_shortcut(x, features, strides)
    projection = ConvBNAct(
        features, 1, strides, act=None, kernel_init=kernel_init, dtype=dtype, name="shortcut"
    )
    return projection(x, train)


def _last_bn_scale(zero_init_residual: bool) -> Initializer:
    # Goyal et al. 2017 / torchvision `zero_init_residual`: each block starts as the identity.
    return nn.initializers.zeros_init() if zero_init_residual else nn.initializers.ones_init()


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN units plus a shortcut (ResNet-18/34 and the CIFAR ResNets)."""

    features: int
    strides: int = 1
    shortcut: str = "B"
    zero_init_residual: bool = False
    kernel_init: Initializer = HE_NORMAL_FAN_OUT
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        unit = functools.partial(ConvBNAct, kernel_init=self.kernel_init, dtype=self.dtype)
        y = unit(self.features, 3, self.strides, padding=1, name="conv1")(x, train)
        y = unit(
            self.features,
            3,
            padding=1,
            act=None,
            bn_scale_init=_last_bn_scale(self.zero_init_residual),
            name="conv2",
        )(y, train)
        identity = residual_shortcut(
            x, self.features, self.strides, self.shortcut, train,
            dtype=self.dtype, kernel_init=self.kernel_init,
        )
        return nn.relu(y + identity)


class BottleneckBlock(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4) conv-BN units plus a shortcut (ResNet-50/101/152).

    `features` is the bottleneck width; the block outputs `4 * features` channels.
    """

    features: int
    strides: int = 1
    v1: bool = False
    shortcut: str = "B"
    zero_init_residual: bool = False
    kernel_init: Initializer = HE_NORMAL_FAN_OUT
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        unit = functools.partial(ConvBNAct, kernel_init=self.kernel_init, dtype=self.dtype)
        reduce_stride, conv_stride = (self.strides, 1) if self.v1 else (1, self.strides)
        out_features = self.features * self.expansion
        y = unit(self.features, 1, reduce_stride, name="conv1")(x, train)
        y = unit(self.features, 3, conv_stride, padding=1, name="conv2")(y, train)
        y = unit(
            out_features,
            1,
            act=None,
            bn_scale_init=_last_bn_scale(self.zero_init_residual),
            name="conv3",
        )(y, train)
        identity = residual_shortcut(
            x, out_features, self.strides, self.shortcut, train,
            dtype=self.dtype, kernel_init=self.kernel_init,
        )
        return nn.relu(y + identity)


class ResidualStage(nn.Module):
    """`num_blocks` residual blocks named block1, block2, ...; only the first one strides.

    `block` is a block class (or a `functools.partial` of one fixing its options); it is called
    as `block(features=..., strides=..., name=...)`.
    """

    block: Callable[..., nn.Module]
    num_blocks: int
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i in range(self.num_blocks):
            stride = self.strides if i == 0 else 1
            x = self.block(features=self.features, strides=stride, name=f"block{i + 1}")(x, train)
        return x
