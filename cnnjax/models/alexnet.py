"""AlexNet (Krizhevsky, Sutskever & Hinton, NeurIPS 2012): single tower, 2-GPU grouped, torchvision.

Input 227×227×3 (the paper says 224, but an 11×11/4 unpadded conv1 needs 227 for its stated
55×55 output: (227 - 11)/4 + 1 = 55, while 224 gives 54 and a 5×5×256 map before fc6).

| layer | kernel / stride, pad      | output    | params (single) | params (grouped) |
|-------|---------------------------|-----------|----------------:|-----------------:|
| conv1 | 11×11/4, 96               | 55×55×96  |          34,944 |           34,944 |
| norm1 | ReLU, LRN                 | 55×55×96  |               0 |                0 |
| pool1 | 3×3/2 max                 | 27×27×96  |               0 |                0 |
| conv2 | 5×5/1 pad 2, 256 (g2)     | 27×27×256 |         614,656 |          307,456 |
| norm2 | ReLU, LRN                 | 27×27×256 |               0 |                0 |
| pool2 | 3×3/2 max                 | 13×13×256 |               0 |                0 |
| conv3 | 3×3/1 pad 1, 384          | 13×13×384 |         885,120 |          885,120 |
| conv4 | 3×3/1 pad 1, 384 (g2)     | 13×13×384 |       1,327,488 |          663,936 |
| conv5 | 3×3/1 pad 1, 256 (g2)     | 13×13×256 |         884,992 |          442,624 |
| pool5 | 3×3/2 max                 | 6×6×256   |               0 |                0 |
| fc6   | 9216 → 4096, dropout 0.5  | 4096      |      37,752,832 |       37,752,832 |
| fc7   | 4096 → 4096, dropout 0.5  | 4096      |      16,781,312 |       16,781,312 |
| fc8   | 4096 → 1000               | 1000      |       4,097,000 |        4,097,000 |
| total |                           |           |  **62,378,344** |   **60,965,224** |

(g2): `alexnet_grouped` splits the layer into 2 groups (`feature_group_count=2`), the paper's
two-GPU layout in which conv2, conv4 and conv5 see only the maps on their own GPU (Fig. 2);
conv3 and the FC layers connect across GPUs. Counts: model_zoo.md §3.1.

Paper details kept (Sec. 3.3-3.4, 4.2, 5): ReLU everywhere; LRN (k=2, n=5, α=1e-4, β=0.75)
after the ReLU of conv1 and conv2, before the overlapping 3×3/2 max-pools; dropout 0.5 on the
outputs of fc6 and fc7; weights N(0, 0.01²), biases 1 in conv2, conv4, conv5, fc6 and fc7
(to give ReLUs positive inputs early on) and 0 elsewhere. `lrn=False` drops the normalisation
(the paper's ablation: +1.4% top-1 error).

Dense evaluation (as VGG Sec. 3.2): an input larger than 227 (pool5 map over 6×6) runs fc6 as
a 6×6 conv and fc7/fc8 as 1×1 convs with the same parameters (`WindowDense`) and averages the
class score map; 227 is the plain forward pass, and a smaller input raises `InputTooSmallError`.

`alexnet_tv` is torchvision's AlexNet, the 64-filter single-tower net of Krizhevsky 2014 ("One
weird trick for parallelizing convolutional neural networks"); input 224×224×3, any side ≥ 63
works (pad 2 in conv1, then an adaptive average pool to 6×6 with PyTorch's bins):

| layer | kernel / stride, pad            | output (224) |     params |
|-------|---------------------------------|--------------|-----------:|
| conv1 | 11×11/4 pad 2, 64; ReLU         | 55×55×64     |     23,296 |
| pool1 | 3×3/2 max                       | 27×27×64     |          0 |
| conv2 | 5×5/1 pad 2, 192; ReLU          | 27×27×192    |    307,392 |
| pool2 | 3×3/2 max                       | 13×13×192    |          0 |
| conv3 | 3×3/1 pad 1, 384; ReLU          | 13×13×384    |    663,936 |
| conv4 | 3×3/1 pad 1, 256; ReLU          | 13×13×256    |    884,992 |
| conv5 | 3×3/1 pad 1, 256; ReLU          | 13×13×256    |    590,080 |
| pool5 | 3×3/2 max, adaptive avg to 6×6  | 6×6×256      |          0 |
| fc6   | dropout 0.5, 9216 → 4096; ReLU  | 4096         | 37,752,832 |
| fc7   | dropout 0.5, 4096 → 4096; ReLU  | 4096         | 16,781,312 |
| fc8   | 4096 → 1000                     | 1000         |  4,097,000 |
| total |                                 |              | **61,100,840** |

No LRN; every layer has a bias; init is PyTorch's default, which torchvision keeps:
kaiming_uniform(a=√5) weights, U(±1/√fan_in), and U(±1/√fan_in) biases. Count: model_zoo.md §3.1.

Layer names (for `cnnjax.features`): the table's rows, `conv1` ... `fc8`, plus `drop6` and
`drop7`. A conv's or FC's feature is its output before the ReLU; `norm1`/`norm2` follow the
ReLU, and `drop6`/`drop7` are ReLU(fc6)/ReLU(fc7) (dropout is the identity in inference), the
"FC7 features" used for transfer. Evaluated densely, `fc6` ... `fc8` are maps (`fc8` the class
score map before its spatial average). `alexnet_tv` drops out the inputs of fc6 and fc7 instead,
as torchvision does: its `drop5` is the flattened 6×6 pooled map and `drop6` is ReLU(fc6); it
has no `norm1`, `norm2` or `drop7`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import (
    LRN,
    Conv,
    MaxPool,
    WindowDense,
    adaptive_avg_pool,
    flatten,
    global_avg_pool,
    require_window,
)
from cnnjax.models.registry import register_model

PAPER = "Krizhevsky, Sutskever & Hinton 2012"
WEIGHT_INIT = nn.initializers.normal(stddev=0.01)  # Sec. 5: zero-mean Gaussian, std 0.01
ZERO_BIAS = nn.initializers.zeros_init()
ONE_BIAS = nn.initializers.ones_init()  # Sec. 5: conv2, conv4, conv5 and the hidden FC layers
FC6_WINDOW = 6  # the pool5 map of a 227 input: 55 -> 27 -> 13 -> 6
MIN_INPUT = 227  # 223-226 give a 54×54 conv1 map and a 5×5 pool5 map

TV_PAPER = "Krizhevsky 2014 (one weird trick), as torchvision"
# PyTorch's default init, which torchvision's AlexNet keeps: kaiming_uniform(a=√5) weights, i.e.
# U(±1/√fan_in), and U(±1/√fan_in) biases.
TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class AlexNet(nn.Module):
    """AlexNet: five convolutions (LRN + pool after the first two), then FC 4096-4096-classes.

    `groups=2` gives the paper's two-GPU grouping of conv2, conv4 and conv5.
    """

    num_classes: int = 1000
    groups: int = 1
    lrn: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.groups not in (1, 2):
            raise ValueError(f"AlexNet groups must be 1 (single) or 2 (paper), not {self.groups}")
        image = x.shape[1:3]
        x = nn.relu(self._conv("conv1", 96, 11, stride=4)(x))
        x = MaxPool(3, 2, name="pool1")(self._norm(x, "norm1"))
        x = nn.relu(self._conv("conv2", 256, 5, pad=2, grouped=True, bias=ONE_BIAS)(x))
        x = MaxPool(3, 2, name="pool2")(self._norm(x, "norm2"))
        x = nn.relu(self._conv("conv3", 384, 3, pad=1)(x))
        x = nn.relu(self._conv("conv4", 384, 3, pad=1, grouped=True, bias=ONE_BIAS)(x))
        x = nn.relu(self._conv("conv5", 256, 3, pad=1, grouped=True, bias=ONE_BIAS)(x))
        x = MaxPool(3, 2, name="pool5")(x)
        require_window("AlexNet", "fc6", image, x.shape[1:3], FC6_WINDOW, MIN_INPUT)
        x = nn.relu(self._dense("fc6", 4096, bias=ONE_BIAS, window=FC6_WINDOW)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop6")(x)
        x = nn.relu(self._dense("fc7", 4096, bias=ONE_BIAS)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop7")(x)
        x = self._dense("fc8", self.num_classes)(x)
        return global_avg_pool(x) if x.ndim == 4 else x  # dense evaluation: average the scores

    def _conv(
        self,
        name: str,
        features: int,
        size: int,
        stride: int = 1,
        pad: int = 0,
        grouped: bool = False,
        bias: nn.initializers.Initializer = ZERO_BIAS,
    ) -> Conv:
        return Conv(
            features,
            (size, size),
            strides=stride,
            padding=pad,
            feature_group_count=self.groups if grouped else 1,
            kernel_init=WEIGHT_INIT,
            bias_init=bias,
            dtype=self.dtype,
            name=name,
        )

    def _dense(
        self,
        name: str,
        features: int,
        bias: nn.initializers.Initializer = ZERO_BIAS,
        window: int | None = None,
    ) -> nn.Dense:
        if window is None:
            return nn.Dense(
                features, kernel_init=WEIGHT_INIT, bias_init=bias, dtype=self.dtype, name=name
            )
        return WindowDense(
            features,
            window=window,
            kernel_init=WEIGHT_INIT,
            bias_init=bias,
            dtype=self.dtype,
            name=name,
        )

    def _norm(self, x: jax.Array, name: str) -> jax.Array:
        return LRN(name=name)(x) if self.lrn else x


@register_model("alexnet", input_shape=(227, 227, 3), num_classes=1000, paper=PAPER)
def alexnet(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """Single-tower AlexNet (96-256-384-384-256, no groups), 62,378,344 parameters."""
    return AlexNet(num_classes=num_classes, dtype=dtype, **overrides)


@register_model("alexnet_grouped", input_shape=(227, 227, 3), num_classes=1000, paper=PAPER)
def alexnet_grouped(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """The paper's two-GPU AlexNet (conv2/4/5 in 2 groups), 60,965,224 parameters."""
    return AlexNet(num_classes=num_classes, dtype=dtype, **{"groups": 2, **overrides})


def _torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default bias init U(±1/√fan_in), which needs the layer's fan-in."""
    bound = 1 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


class AlexNetTV(nn.Module):
    """torchvision's AlexNet: 64-192-384-256-256 convs, no LRN, adaptive 6×6 average pool, FCs."""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = MaxPool(3, 2, name="pool1")(self._conv(x, "conv1", 64, 11, stride=4, pad=2))
        x = MaxPool(3, 2, name="pool2")(self._conv(x, "conv2", 192, 5, pad=2))
        x = self._conv(x, "conv3", 384, 3, pad=1)
        x = self._conv(x, "conv4", 256, 3, pad=1)
        x = MaxPool(3, 2, name="pool5")(self._conv(x, "conv5", 256, 3, pad=1))
        x = flatten(adaptive_avg_pool(x, (6, 6)))
        for layer in (6, 7):  # torchvision drops out the *input* of fc6 and fc7
            x = nn.Dropout(self.dropout_rate, deterministic=not train, name=f"drop{layer - 1}")(x)
            x = nn.relu(self._dense(x, f"fc{layer}", 4096))
        return self._dense(x, "fc8", self.num_classes)

    def _conv(
        self, x: jax.Array, name: str, features: int, size: int, stride: int = 1, pad: int = 0
    ) -> jax.Array:
        """conv + bias + ReLU, PyTorch-initialised."""
        conv = Conv(
            features,
            (size, size),
            strides=stride,
            padding=pad,
            kernel_init=TORCH_KERNEL_INIT,
            bias_init=_torch_bias_init(size * size * x.shape[-1]),
            dtype=self.dtype,
            name=name,
        )
        return nn.relu(conv(x))

    def _dense(self, x: jax.Array, name: str, features: int) -> jax.Array:
        """FC layer with bias, PyTorch-initialised (no activation)."""
        return nn.Dense(
            features,
            kernel_init=TORCH_KERNEL_INIT,
            bias_init=_torch_bias_init(x.shape[-1]),
            dtype=self.dtype,
            name=name,
        )(x)


@register_model("alexnet_tv", input_shape=(224, 224, 3), num_classes=1000, paper=TV_PAPER)
def alexnet_tv(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """torchvision's AlexNet (one weird trick widths, adaptive pool), 61,100,840 parameters."""
    return AlexNetTV(num_classes=num_classes, dtype=dtype, **overrides)
