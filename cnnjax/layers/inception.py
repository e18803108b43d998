"""The Inception module and auxiliary classifier of GoogLeNet (Szegedy et al. 2015, Fig. 2b).

Inception module, four parallel branches concatenated on channels (names as in BVLC Caffe's
bvlc_googlenet prototxt, e.g. `inception_3a/3x3_reduce`):

| branch | layers                                             | out channels |
|--------|----------------------------------------------------|--------------|
| 1      | `1x1`: 1×1 conv                                    | #1×1         |
| 2      | `3x3_reduce`: 1×1 conv → `3x3`: 3×3 conv, pad 1   | #3×3         |
| 3      | `5x5_reduce`: 1×1 conv → `5x5`: 5×5 conv, pad 2   | #5×5         |
| 4      | `pool`: 3×3 max-pool /1, pad 1 → `pool_proj`: 1×1 | pool proj    |

Every conv is a conv unit: conv + bias + ReLU in the paper, bias-free conv + BN(eps 1e-3) + ReLU
in torchvision's variant, whose branch 3 is also a 3×3 (pad 1) instead of a 5×5 (a known
discrepancy kept for weight compatibility, pytorch/vision#906): `five_by_five=False`.

Auxiliary classifier (paper Sec. 5): 5×5/3 average pool (torchvision: adaptive average pool to
4×4) → 1×1 conv 128 → FC 1024 + ReLU → dropout 0.7 → FC classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers.basic import AvgPool, ConvBNAct, MaxPool, flatten

Initializer = Callable[..., jax.Array]

GOOGLENET_BN_EPSILON = 1e-3  # torchvision googlenet.py BasicConv2d: BatchNorm2d(eps=0.001)


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    # PyTorch's rule: cell i covers [floor(i·size/out), ceil((i+1)·size/out)).
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """PyTorch's `adaptive_avg_pool2d` on NHWC: (N, H, W, C) -> (N, oh, ow, C).

    Cell i averages input rows ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉ - 1 (same for columns); the bins overlap
    when oh does not divide H, e.g. 14 -> 4 uses rows 0-3, 3-6, 7-10, 10-13.
    """
    oh, ow = output_size
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool output size must be positive, got {output_size}")
    row_bins, col_bins = _adaptive_bins(x.shape[1], oh), _adaptive_bins(x.shape[2], ow)
    rows = [
        jnp.stack([jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)) for c0, c1 in col_bins], axis=1)
        for r0, r1 in row_bins
    ]
    return jnp.stack(rows, axis=1)


class Inception(nn.Module):
    """One Inception module: 1×1, 1×1→3×3, 1×1→5×5 and pool→1×1 branches, concatenated.

    The channel fields follow the columns of the paper's Table 1; the output has
    `ch1x1 + ch3x3 + ch5x5 + ch_pool_proj` channels.
    """

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    ch_pool_proj: int
    five_by_five: bool = True  # False: torchvision's 3×3 in the "5×5" branch
    batch_norm: bool = False  # True: bias-free conv + BN(eps 1e-3) units (torchvision)
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        unit = functools.partial(
            ConvBNAct,
            norm=self.batch_norm,
            bn_epsilon=GOOGLENET_BN_EPSILON,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
        )
        wide = 5 if self.five_by_five else 3
        branch1 = unit(self.ch1x1, 1, name="1x1")(x, train)
        branch2 = unit(self.ch3x3_reduce, 1, name="3x3_reduce")(x, train)
        branch2 = unit(self.ch3x3, 3, padding=1, name="3x3")(branch2, train)
        branch3 = unit(self.ch5x5_reduce, 1, name="5x5_reduce")(x, train)
        branch3 = unit(self.ch5x5, wide, padding=wide // 2, name="5x5")(branch3, train)
        branch4 = MaxPool(3, 1, padding=1, name="pool")(x)
        branch4 = unit(self.ch_pool_proj, 1, name="pool_proj")(branch4, train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on an intermediate Inception output (GoogLeNet's aux1/aux2 heads).

    Paper (`batch_norm=False`): 5×5/3 avg-pool, conv 1×1 128 with bias. torchvision
    (`batch_norm=True`): adaptive avg-pool to 4×4, conv 1×1 128 + BN. Both then FC 1024, ReLU,
    dropout, FC `num_classes` (`classifier`, zero bias).
    """

    num_classes: int
    batch_norm: bool = False
    dropout_rate: float = 0.7
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.batch_norm:
            x = adaptive_avg_pool(x, (4, 4))
        else:
            x = AvgPool(5, 3, ceil_mode=True, name="pool")(x)
        x = ConvBNAct(
            128, 1, norm=self.batch_norm, bn_epsilon=GOOGLENET_BN_EPSILON,
            kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype, name="conv",
        )(x, train)
        x = nn.Dense(
            1024, kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
            name="fc",
        )(flatten(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        return nn.Dense(
            self.num_classes, kernel_init=self.kernel_init, dtype=self.dtype, name="classifier"
        )(x)
