"""Network in Network (Lin, Chen & Yan, ICLR 2014), the CIFAR-10 model.

The authors' cuda-convnet/Caffe configuration (model_zoo.md §9); an "mlpconv" block is a
spatial conv followed by two 1×1 convs ("cccp" layers, a per-pixel MLP), each with ReLU.
Input 32×32×3; pools round up as Caffe does.

| block     | layers (Caffe names)                         | output   |  params |
|-----------|----------------------------------------------|----------|--------:|
| mlpconv1  | conv1 5×5 pad 2, 192; cccp1 160; cccp2 96    | 32×32×96 |  60,928 |
| pool1     | 3×3/2 max (ceil), dropout 0.5                | 16×16×96 |       0 |
| mlpconv2  | conv2 5×5 pad 2, 192; cccp3 192; cccp4 192   | 16×16×192| 535,104 |
| pool2     | 3×3/2 average (ceil), dropout 0.5            | 8×8×192  |       0 |
| mlpconv3  | conv3 3×3 pad 1, 192; cccp5 192; cccp6 10    | 8×8×10   | 370,954 |
| gap       | global average pool → logits                 | 10       |       0 |
| total     |                                              |          | **966,986** |

There is no fully connected layer: the last cccp layer has one map per class and global
average pooling turns each map into its logit. The authors' configurations put a ReLU after
every cccp layer, the class-map layer included (visible in their ImageNet Caffe model, relu12
on cccp8); we keep it, so the logits are non-negative.

Init: He-normal weights (fan-in, for ReLU) and zero biases, our choice; the original config
hand-tuned Gaussian scales per layer (cuda-convnet initW 0.001 for conv1, 0.01 for cccp1-2).
Param paths: `mlpconv1/conv`, `mlpconv1/cccp1`, `mlpconv1/cccp2`, ... (Caffe's conv1, cccp1,
cccp2, conv2, cccp3, ..., cccp6).

Layer names (for `cnnjax.features`): `mlpconv1`, `pool1`, `drop1`, `mlpconv2`, `pool2`, `drop2`,
`mlpconv3` (the ten class maps the global average turns into logits); mlpconv outputs follow
their last ReLU, their convs `mlpconv1/conv`, `/cccp1`, `/cccp2` come before it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import AvgPool, Conv, MaxPool, global_avg_pool
from cnnjax.models.registry import register_model

PAPER = "Lin, Chen & Yan 2014"
WEIGHT_INIT = nn.initializers.he_normal()


class MLPConv(nn.Module):
    """One mlpconv block: a k×k conv then two 1×1 convs ("cccp"), each followed by ReLU."""

    features: tuple[int, int, int]
    kernel_size: int
    padding: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size = (self.kernel_size, self.kernel_size)
        spatial, hidden, out = self.features
        x = nn.relu(self._conv(spatial, size, self.padding, "conv")(x))
        x = nn.relu(self._conv(hidden, (1, 1), 0, "cccp1")(x))
        return nn.relu(self._conv(out, (1, 1), 0, "cccp2")(x))

    def _conv(self, features: int, size: tuple[int, int], padding: int, name: str) -> Conv:
        return Conv(
            features, size, padding=padding, kernel_init=WEIGHT_INIT, dtype=self.dtype, name=name
        )


class NiN(nn.Module):
    """CIFAR-10 NiN: three mlpconv blocks, max/avg pools with dropout, global average pool."""

    num_classes: int = 10
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        mlpconv = functools.partial(MLPConv, dtype=self.dtype)
        dropout = functools.partial(nn.Dropout, self.dropout_rate, deterministic=not train)
        x = mlpconv((192, 160, 96), 5, padding=2, name="mlpconv1")(x)
        x = dropout(name="drop1")(MaxPool(3, 2, ceil_mode=True, name="pool1")(x))
        x = mlpconv((192, 192, 192), 5, padding=2, name="mlpconv2")(x)
        x = dropout(name="drop2")(AvgPool(3, 2, ceil_mode=True, name="pool2")(x))
        x = mlpconv((192, 192, self.num_classes), 3, padding=1, name="mlpconv3")(x)
        return global_avg_pool(x)


@register_model("nin", input_shape=(32, 32, 3), num_classes=10, paper=PAPER)
def nin(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """CIFAR-10 Network in Network, 966,986 parameters."""
    return NiN(num_classes=num_classes, dtype=dtype, **overrides)
