"""AlexNet (Krizhevsky, Sutskever & Hinton, NeurIPS 2012), single tower and two-GPU grouped.

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

Layer names (for `cnnjax.features`): the table's rows, `conv1` ... `fc8`, plus `drop6` and
`drop7`. A conv's or FC's feature is its output before the ReLU; `norm1`/`norm2` follow the
ReLU, and `drop6`/`drop7` are ReLU(fc6)/ReLU(fc7) (dropout is the identity in inference), the
"FC7 features" used for transfer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import LRN, Conv, MaxPool, flatten
from cnnjax.models.registry import register_model

PAPER = "Krizhevsky, Sutskever & Hinton 2012"
WEIGHT_INIT = nn.initializers.normal(stddev=0.01)  # Sec. 5: zero-mean Gaussian, std 0.01
ZERO_BIAS = nn.initializers.zeros_init()
ONE_BIAS = nn.initializers.ones_init()  # Sec. 5: conv2, conv4, conv5 and the hidden FC layers


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
        x = nn.relu(self._conv("conv1", 96, 11, stride=4)(x))
        x = MaxPool(3, 2, name="pool1")(self._norm(x, "norm1"))
        x = nn.relu(self._conv("conv2", 256, 5, pad=2, grouped=True, bias=ONE_BIAS)(x))
        x = MaxPool(3, 2, name="pool2")(self._norm(x, "norm2"))
        x = nn.relu(self._conv("conv3", 384, 3, pad=1)(x))
        x = nn.relu(self._conv("conv4", 384, 3, pad=1, grouped=True, bias=ONE_BIAS)(x))
        x = nn.relu(self._conv("conv5", 256, 3, pad=1, grouped=True, bias=ONE_BIAS)(x))
        x = flatten(MaxPool(3, 2, name="pool5")(x))
        for layer in ("6", "7"):
            x = nn.relu(self._dense(f"fc{layer}", 4096, bias=ONE_BIAS)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train, name=f"drop{layer}")(x)
        return self._dense("fc8", self.num_classes)(x)

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
        self, name: str, features: int, bias: nn.initializers.Initializer = ZERO_BIAS
    ) -> nn.Dense:
        return nn.Dense(
            features, kernel_init=WEIGHT_INIT, bias_init=bias, dtype=self.dtype, name=name
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
