"""VGG (Simonyan & Zisserman, ICLR 2015), configurations A, B, D, E (VGG-11/13/16/19), ± BN.

Table 1 of the paper, held as `CONFIGS` below. Every conv is 3×3/1 pad 1 + ReLU and every
stage ends in a 2×2/2 max-pool, so a 224×224×3 input leaves 7×7×512 = 25,088 features.

| stage      | output    | A (vgg11) | B (vgg13) | D (vgg16) | E (vgg19) |
|------------|-----------|-----------|-----------|-----------|-----------|
| conv1_*    | 224²×64   | 1 conv    | 2         | 2         | 2         |
| conv2_*    | 112²×128  | 1         | 2         | 2         | 2         |
| conv3_*    | 56²×256   | 2         | 2         | 3         | 4         |
| conv4_*    | 28²×512   | 2         | 2         | 3         | 4         |
| conv5_*    | 14²×512   | 2         | 2         | 3         | 4         |
| pool5      | 7²×512    |           |           |           |           |
| fc6-fc8    | 4096, 4096, classes | 3 FC | 3 FC  | 3 FC      | 3 FC      |
| params     |           | 132,863,336 | 133,047,848 | 138,357,544 | 143,667,240 |
| `_bn`      |           | 132,868,840 | 133,053,736 | 138,365,992 | 143,678,248 |

The classifier is fc6 25,088 → 4096 and fc7 4096 → 4096, each followed by ReLU and dropout
0.5, then fc8 4096 → classes.

Dense evaluation (Sec. 3.2): an input larger than 224 (pool5 map over 7×7) runs fc6 as a 7×7
conv and fc7/fc8 as 1×1 convs with the same parameters (`WindowDense`), then averages the class
score map; 224 is the plain forward pass, and a smaller input raises `InputTooSmallError`.
fc6's window is the paper's 7×7, or the whole pool5 map of a smaller image at init (a 32×32
CIFAR image: 1×1, fc6 512 → 4096, not in the paper); once built, it is read from the kernel.
`fc6_window=k` fixes it.

VGG-16 rows (model_zoo.md §5.1; totals = torchvision's `num_params`): conv1_1 1,792; conv1_2
36,928; conv2_1 73,856; conv2_2 147,584; conv3_1 295,168; conv3_2-3 590,080; conv4_1
1,180,160; conv4_2-3 and conv5_* 2,359,808; fc6 102,764,544 (74% of the net); fc7 16,781,312;
fc8 4,097,000.

The `_bn` variants (torchvision's; not in the paper) put BatchNorm between each conv and its
ReLU and keep the conv bias as torchvision does: +2 parameters and +2 running statistics per
conv channel (8,448 of each for VGG-16-BN). Param paths: `conv{stage}_{i}/conv`,
`conv{stage}_{i}/bn`, `fc6`, `fc7`, `fc8`.

Init: Glorot-uniform weights and zero biases (`weight_init="glorot"`, the default); the paper
(Sec. 3.1) notes that this init removes the need to pre-train the deeper nets from net A.
`weight_init="gaussian"` is the paper's N(0, 0.01²), with which it trained net A from scratch.

Layer names (for `cnnjax.features`): `conv{stage}_{i}` (a conv[-BN]-ReLU unit, after its ReLU;
`conv{stage}_{i}/conv` before it), `pool1` ... `pool5`, `fc6`, `fc7` (before their ReLU),
`drop6`, `drop7` (after it, dropout being the identity in inference), `fc8` (the class score
map before the spatial average when evaluated densely).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import ConvBNAct, MaxPool, WindowDense, global_avg_pool, require_window
from cnnjax.models.registry import register_model

PAPER = "Simonyan & Zisserman 2015"

# Table 1: the conv widths of each of the five stages (each stage is followed by a max-pool).
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
DEPTHS = {"A": 11, "B": 13, "D": 16, "E": 19}  # weight layers: convs + 3 FC
DOWNSAMPLING = 2**5  # five 2×2/2 pools: a 224 crop leaves the 7×7 pool5 map fc6 is trained on
FC6_WINDOW = 7  # the paper's fc6 input: 7×7×512 = 25,088 features

INITS = {
    "glorot": nn.initializers.xavier_uniform(),
    "gaussian": nn.initializers.normal(stddev=0.01),
}


class VGG(nn.Module):
    """VGG: stages of 3×3 convs (optionally conv-BN-ReLU) and 2×2 pools, then FC 4096-4096."""

    num_classes: int = 1000
    config: str = "D"
    batch_norm: bool = False
    weight_init: str = "glorot"
    dropout_rate: float = 0.5
    fc6_window: int | None = None  # pool5 side fc6 takes whole; None: see the module doc
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.config not in CONFIGS:
            raise ValueError(f"unknown VGG config {self.config!r}; use one of {', '.join(CONFIGS)}")
        if self.weight_init not in INITS:
            raise ValueError(
                f"unknown VGG weight_init {self.weight_init!r}; use one of {', '.join(INITS)}"
            )
        if self.fc6_window is not None and self.fc6_window < 1:
            raise ValueError(
                f"VGG fc6_window must be at least 1 (a 1×1 pool5 map), not {self.fc6_window}"
            )
        kernel_init, image = INITS[self.weight_init], x.shape[1:3]
        for stage, widths in enumerate(CONFIGS[self.config], start=1):
            for index, width in enumerate(widths, start=1):
                x = ConvBNAct(
                    width,
                    3,
                    padding=1,
                    norm=self.batch_norm,
                    use_bias=True,  # kept under BN too, as torchvision's vgg*_bn do
                    kernel_init=kernel_init,
                    dtype=self.dtype,
                    name=f"conv{stage}_{index}",
                )(x, train=train)
            x = MaxPool(2, 2, name=f"pool{stage}")(x)
        side = self._fc6_window(x.shape[1:3], x.shape[-1])
        require_window("VGG", "fc6", image, x.shape[1:3], side, side * DOWNSAMPLING)
        fc6 = WindowDense(4096, window=side, kernel_init=kernel_init, dtype=self.dtype, name="fc6")
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop6")(nn.relu(fc6(x)))
        x = nn.Dense(4096, kernel_init=kernel_init, dtype=self.dtype, name="fc7")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop7")(nn.relu(x))
        x = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype, name="fc8")(x)
        return global_avg_pool(x) if x.ndim == 4 else x  # dense evaluation: average the scores

    def _fc6_window(self, grid: tuple[int, int], channels: int) -> int:
        """fc6's window side: given, else that of its kernel, else (at init) min(7, the map)."""
        if self.fc6_window is not None:
            return self.fc6_window
        kernel = self.variables.get("params", {}).get("fc6", {}).get("kernel")
        if kernel is not None:
            return math.isqrt(kernel.shape[0] // channels)
        return min(FC6_WINDOW, *grid)


def _register(config: str, batch_norm: bool) -> None:
    name = f"vgg{DEPTHS[config]}" + ("_bn" if batch_norm else "")

    @register_model(name, input_shape=(224, 224, 3), num_classes=1000, paper=PAPER)
    def factory(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
        return VGG(
            num_classes=num_classes, dtype=dtype, config=config, batch_norm=batch_norm, **overrides
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"VGG config {config} ({name}){' with BN after every conv' * batch_norm}."


for _config in CONFIGS:
    for _batch_norm in (False, True):
        _register(_config, _batch_norm)
