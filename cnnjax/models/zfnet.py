"""ZFNet (Zeiler & Fergus, ECCV 2014, Fig. 3): AlexNet with a smaller, denser first layer.

Input 224×224×3. Pools round up (Caffe's ceil mode), which is what reproduces the figure's
110/55/26/13/6 map sizes.

| layer | kernel / stride, pad      | output    |     params |
|-------|---------------------------|-----------|-----------:|
| conv1 | 7×7/2 pad 1, 96           | 110×110×96|     14,208 |
| pool1 | ReLU, 3×3/2 max (ceil)    | 55×55×96  |          0 |
| norm1 | contrast norm (LRN)       | 55×55×96  |          0 |
| conv2 | 5×5/2, 256                | 26×26×256 |    614,656 |
| pool2 | ReLU, 3×3/2 max (ceil)    | 13×13×256 |          0 |
| norm2 | contrast norm (LRN)       | 13×13×256 |          0 |
| conv3 | 3×3/1 pad 1, 384          | 13×13×384 |    885,120 |
| conv4 | 3×3/1 pad 1, 384          | 13×13×384 |  1,327,488 |
| conv5 | 3×3/1 pad 1, 256          | 13×13×256 |    884,992 |
| pool5 | 3×3/2 max (ceil)          | 6×6×256   |          0 |
| fc6   | 9216 → 4096, dropout 0.5  | 4096      | 37,752,832 |
| fc7   | 4096 → 4096, dropout 0.5  | 4096      | 16,781,312 |
| fc8   | 4096 → 1000               | 1000      |  4,097,000 |
| total |                           |           | **62,357,608** |

The figure puts the contrast normalisation after each of the first two pools (the reverse of
AlexNet's order); the paper gives no constants for it, so AlexNet's LRN (k=2, n=5, α=1e-4,
β=0.75) is used. Sec. 3: weights initialised at 10⁻² (taken as N(0, 0.01²)), biases 0, dropout
0.5 on fc6/fc7, and conv filters whose RMS exceeds 0.1 renormalised to 0.1 after each update
(`renormalize_filters`). Count: model_zoo.md §4.

Dense evaluation (as VGG Sec. 3.2): an input whose pool5 map is over 6×6 (side ≥ 239) runs fc6
as a 6×6 conv and fc7/fc8 as 1×1 convs with the same parameters (`WindowDense`) and averages
the class score map; sides 207-238 give the plain forward pass, smaller ones raise
`InputTooSmallError`.

Layer names (for `cnnjax.features`): the table's rows, `conv1` ... `fc8`, plus `drop6` and
`drop7` (= ReLU(fc6), ReLU(fc7) in inference); convs and FCs are read before their ReLU.
Evaluated densely, `fc6` ... `fc8` are maps (`fc8` the class score map before its average).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax import ops
from cnnjax.layers import LRN, Conv, MaxPool, WindowDense, global_avg_pool, require_window
from cnnjax.models.registry import register_model

PAPER = "Zeiler & Fergus 2014"
WEIGHT_INIT = nn.initializers.normal(stddev=1e-2)  # Sec. 3: "weights initialized to 10^-2"
MAX_FILTER_RMS = 0.1  # Sec. 3: filters whose RMS exceeds 10^-1 are renormalised to it
FC6_WINDOW = 6  # the pool5 map of a 224 input (Fig. 3)
MIN_INPUT = 207  # the smallest side whose ceil-mode pools still leave a 6×6 pool5 map


class ZFNet(nn.Module):
    """ZFNet: 7×7/2 conv1 and 5×5/2 conv2 (ceil-mode pools, LRN), conv3-5, FC 4096-4096-classes."""

    num_classes: int = 1000
    lrn: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        image = x.shape[1:3]
        x = nn.relu(self._conv("conv1", 96, 7, stride=2, pad=1)(x))
        x = self._norm(MaxPool(3, 2, ceil_mode=True, name="pool1")(x), "norm1")
        x = nn.relu(self._conv("conv2", 256, 5, stride=2)(x))
        x = self._norm(MaxPool(3, 2, ceil_mode=True, name="pool2")(x), "norm2")
        x = nn.relu(self._conv("conv3", 384, 3, pad=1)(x))
        x = nn.relu(self._conv("conv4", 384, 3, pad=1)(x))
        x = nn.relu(self._conv("conv5", 256, 3, pad=1)(x))
        x = MaxPool(3, 2, ceil_mode=True, name="pool5")(x)
        require_window("ZFNet", "fc6", image, x.shape[1:3], FC6_WINDOW, MIN_INPUT)
        x = nn.relu(self._dense("fc6", 4096, window=FC6_WINDOW)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop6")(x)
        x = nn.relu(self._dense("fc7", 4096)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop7")(x)
        x = self._dense("fc8", self.num_classes)(x)
        return global_avg_pool(x) if x.ndim == 4 else x  # dense evaluation: average the scores

    def _conv(self, name: str, features: int, size: int, stride: int = 1, pad: int = 0) -> Conv:
        return Conv(
            features,
            (size, size),
            strides=stride,
            padding=pad,
            kernel_init=WEIGHT_INIT,
            dtype=self.dtype,
            name=name,
        )

    def _dense(self, name: str, features: int, window: int | None = None) -> nn.Dense:
        if window is None:
            return nn.Dense(features, kernel_init=WEIGHT_INIT, dtype=self.dtype, name=name)
        return WindowDense(
            features, window=window, kernel_init=WEIGHT_INIT, dtype=self.dtype, name=name
        )

    def _norm(self, x: jax.Array, name: str) -> jax.Array:
        return LRN(name=name)(x) if self.lrn else x


def renormalize_filters(params: Any, max_rms: float = MAX_FILTER_RMS) -> Any:
    """Shrink every conv filter whose RMS exceeds `max_rms` back to it (ZFNet Sec. 3).

    Apply to the params after each optimizer update. A filter is one output channel of a
    4-D (kh, kw, in, out) kernel; RMS ≤ r is the l2 ball of radius r·sqrt(kh·kw·in), so the
    projection is optax's, run per filter. Dense kernels and biases pass through unchanged.
    """

    return jax.tree.map(
        lambda leaf: ops.cap_filter_rms(leaf, max_rms) if leaf.ndim == 4 else leaf, params
    )


@register_model("zfnet", input_shape=(224, 224, 3), num_classes=1000, paper=PAPER)
def zfnet(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """ZFNet of Zeiler & Fergus Fig. 3, 62,357,608 parameters."""
    return ZFNet(num_classes=num_classes, dtype=dtype, **overrides)
