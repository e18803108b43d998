"""LeNet-5 (LeCun et al. 1998) in its modern form, and the Keras book's small convnet.

LeNet-5, input 32×32×1 (a 28×28 digit padded by 2):

| layer | kernel / stride | output    | params |
|-------|-----------------|-----------|-------:|
| C1    | 5×5 conv, 6     | 28×28×6   |    156 |
| S2    | 2×2 pool /2     | 14×14×6   |      0 |
| C3    | 5×5 conv, 16    | 10×10×16  |  2,416 |
| S4    | 2×2 pool /2     | 5×5×16    |      0 |
| C5    | FC 400 → 120    | 120       | 48,120 |
| F6    | FC 120 → 84     | 84        | 10,164 |
| out   | FC 84 → 10      | 10        |    850 |
| total |                 |           | 61,706 |

The paper's trainable subsampling, partial C3 table and RBF output are replaced by max-pool,
full C3 and a linear classifier (the usual modern form); `activation=` and `pool=` select the
paper's tanh/average variants.

Layer names (for `cnnjax.features`; `python -m cnnjax.summary --model=lenet5 --layers`):
LeNet-5 `c1`, `s2`, `c3`, `s4`, `c5`, `f6`, `output`, the table's rows (`c1`, `c3`, `c5`, `f6`
before their activation); the small convnet `conv1`, `pool1`, `conv2`, `pool2`, `conv3`, `fc`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import AvgPool, Conv, MaxPool, flatten
from cnnjax.models.registry import register_model

ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
POOLS = {"max": MaxPool, "avg": AvgPool}


def _choice(kind: str, value: str, options: dict[str, Any]) -> Any:
    if value not in options:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(options)}")
    return options[value]


class LeNet5(nn.Module):
    """LeNet-5: two 5×5 conv + pool stages, then FC 120-84-classes."""

    num_classes: int = 10
    activation: str = "relu"
    pool: str = "max"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = _choice("activation", self.activation, ACTIVATIONS)
        pool = _choice("pool", self.pool, POOLS)
        x = act(Conv(6, (5, 5), padding=0, dtype=self.dtype, name="c1")(x))
        x = pool(2, 2, name="s2")(x)
        x = act(Conv(16, (5, 5), padding=0, dtype=self.dtype, name="c3")(x))
        x = pool(2, 2, name="s4")(x)
        x = flatten(x)
        x = act(nn.Dense(120, dtype=self.dtype, name="c5")(x))
        x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)


class SmallConvNet(nn.Module):
    """Chollet's *Deep Learning with Python* MNIST net: conv32-pool-conv64-pool-conv128-dense."""

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(Conv(32, (3, 3), dtype=self.dtype, name="conv1")(x))
        x = MaxPool(2, 2, name="pool1")(x)
        x = nn.relu(Conv(64, (3, 3), dtype=self.dtype, name="conv2")(x))
        x = MaxPool(2, 2, name="pool2")(x)
        x = nn.relu(Conv(128, (3, 3), dtype=self.dtype, name="conv3")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(flatten(x))


@register_model("lenet5", input_shape=(32, 32, 1), num_classes=10, paper="LeCun et al. 1998")
def lenet5(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    return LeNet5(num_classes=num_classes, dtype=dtype, **overrides)


@register_model(
    "small_convnet", input_shape=(28, 28, 1), num_classes=10, paper="Chollet 2017, ch. 5"
)
def small_convnet(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    return SmallConvNet(num_classes=num_classes, dtype=dtype, **overrides)
