"""DenseNet-BC (Huang et al. 2017): ImageNet DenseNet-121/169/201/264 and CIFAR DenseNet-BC-100.

ImageNet, input 224×224×3, growth rate k = 32, bottleneck 4k, compression θ = 0.5 (paper
Table 1; a dense layer is [BN-ReLU-1×1 conv 4k, BN-ReLU-3×3 conv k]):

| stage        | output  | 121        | 169        | 201        | 264        |
|--------------|---------|------------|------------|------------|------------|
| conv1        | 112×112 | 7×7 conv 2k, stride 2, BN, ReLU                   |
| pool1        | 56×56   | 3×3 max-pool, stride 2                            |
| denseblock1  | 56×56   | ×6         | ×6         | ×6         | ×6         |
| transition1  | 28×28   | BN-ReLU-1×1 conv θC, 2×2 avg-pool /2              |
| denseblock2  | 28×28   | ×12        | ×12        | ×12        | ×12        |
| transition2  | 14×14   | as transition1                                    |
| denseblock3  | 14×14   | ×24        | ×32        | ×48        | ×64        |
| transition3  | 7×7     | as transition1                                    |
| denseblock4  | 7×7     | ×16        | ×32        | ×32        | ×48        |
| final_norm   | 7×7     | BN, ReLU, global avg pool, FC 1000                |
| channels     |         | 1024       | 1664       | 1920       | 2688       |
| params       |         | 7,978,856  | 14,149,480 | 20,013,928 | 33,337,704 |

CIFAR DenseNet-BC (L=100, k=12), input 32×32×3: 3×3 conv 2k = 24 (no BN after it), then three
dense blocks of 16 layers with transitions after the first two, final BN-ReLU, global pool,
FC 10. Channels 24 → 216 → 108 → 300 → 150 → 342; 769,162 params (model_zoo.md §8.2).

Convs are bias-free with He fan-out normal init (the authors' Lua code: N(0, sqrt(2/(k·k·out))));
BN uses PyTorch's momentum/eps. Overrides: `growth_rate` (the stem follows as 2k unless
`stem_features` is given), `dropout_rate` (after every conv but the first, paper Sec. 4.2),
`bn_size`, `compression`, `remat='blocks'|'convs'` (rematerialised dense layers: the
memory-efficient DenseNet of Pleiss et al. 2017, torchvision's `memory_efficient`; the block's
maps are concatenated inside each layer's checkpoint, so memory grows linearly with depth).

The dense layers are not scanned: each one reads a wider concatenation than the last, so their
parameters differ in shape. Scanning them through a preallocated block buffer (each layer's
parameters zero-padded to the block's final width inside the step, so counts and layout stay)
was measured (benchmarks/densenet_scan.py, DenseNet-121's four blocks, batch 2, CPU): it
compiles in 0.36× the unrolled time but steps 1.71× slower, the padding alone adding 1.33× the
convolutions' multiply-adds; splitting each block into 2-3 segments gives 0.48-0.53× and
1.54-1.33×. It does not pay, so the layers stay unrolled.

Layer names (for `cnnjax.features`): `conv1`, `pool1` (ImageNet stem only), `denseblock1` ...
`denseblock4` (the concatenated maps; three in DenseNet-BC), `transition1` ... `transition3`,
`final_norm` (before the last ReLU), `fc`; inside a block the layers `denseblock2/denselayer5`,
with their BN-ReLU-conv units `.../conv1` (1×1) and `.../conv2` (3×3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import (
    HE_NORMAL_FAN_OUT,
    Conv,
    ConvBNAct,
    DenseBlock,
    MaxPool,
    Transition,
    compressed_channels,
    global_avg_pool,
)
from cnnjax.models.registry import register_model

STEMS = ("imagenet", "cifar")

# Layers per dense block, paper Table 1 (ImageNet) and Sec. 3 (CIFAR: (L - 4) / 6 per block).
IMAGENET_BLOCKS = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}


class DenseNet(nn.Module):
    """DenseNet(-BC): stem, dense blocks joined by compressing transitions, BN-ReLU, pool, FC."""

    block_sizes: Sequence[int]
    growth_rate: int = 32
    stem: str = "imagenet"  # 'imagenet': 7×7/2 conv-BN-ReLU + 3×3/2 max-pool; 'cifar': 3×3 conv
    stem_features: int | None = None  # default 2 · growth_rate
    bn_size: int = 4
    compression: float = 0.5
    dropout_rate: float = 0.0
    num_classes: int = 1000
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in STEMS:
            raise ValueError(f"unknown DenseNet stem {self.stem!r}; use one of {', '.join(STEMS)}")
        compressed_channels(1, self.compression)  # validates θ before any layer is built
        stem_features = self.stem_features or 2 * self.growth_rate
        if self.stem == "imagenet":
            x = ConvBNAct(
                stem_features,
                7,
                2,
                padding=3,
                kernel_init=HE_NORMAL_FAN_OUT,
                dtype=self.dtype,
                name="conv1",
            )(x, train)
            x = MaxPool(3, 2, padding=1, name="pool1")(x)
        else:
            x = Conv(
                stem_features,
                (3, 3),
                padding=1,
                use_bias=False,
                kernel_init=HE_NORMAL_FAN_OUT,
                dtype=self.dtype,
                name="conv1",
            )(x)
        for i, num_layers in enumerate(self.block_sizes):
            x = DenseBlock(
                num_layers,
                self.growth_rate,
                self.bn_size,
                self.dropout_rate,
                dtype=self.dtype,
                remat=self.remat,
                name=f"denseblock{i + 1}",
            )(x, train)
            if i < len(self.block_sizes) - 1:
                x = Transition(
                    self.compression,
                    self.dropout_rate,
                    dtype=self.dtype,
                    name=f"transition{i + 1}",
                )(x, train)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            name="final_norm",
        )(x)
        x = global_avg_pool(nn.relu(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


def _register_imagenet(depth: int) -> None:
    @register_model(
        f"densenet{depth}",
        input_shape=(224, 224, 3),
        num_classes=1000,
        paper="Huang et al. 2017, Table 1 (DenseNet-BC, k=32)",
    )
    def factory(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
        return DenseNet(IMAGENET_BLOCKS[depth], num_classes=num_classes, dtype=dtype, **overrides)


for _depth in IMAGENET_BLOCKS:
    _register_imagenet(_depth)


@register_model(
    "densenet161",
    input_shape=(224, 224, 3),
    num_classes=1000,
    paper="Huang et al. 2017, Table 1 note (DenseNet-BC, k=48), as torchvision",
)
def densenet161(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """DenseNet-161: k = 48, blocks 6-12-36-24, stem 2k = 96; 28,681,000 parameters."""
    overrides.setdefault("growth_rate", 48)
    return DenseNet((6, 12, 36, 24), num_classes=num_classes, dtype=dtype, **overrides)


@register_model(
    "densenet_bc_100",
    input_shape=(32, 32, 3),
    num_classes=10,
    paper="Huang et al. 2017, Table 2 (DenseNet-BC, L=100, k=12)",
)
def densenet_bc_100(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """DenseNet-BC-100 for CIFAR: 3 blocks of (100 - 4) / 6 = 16 bottleneck layers, k = 12."""
    overrides.setdefault("growth_rate", 12)
    return DenseNet((16, 16, 16), stem="cifar", num_classes=num_classes, dtype=dtype, **overrides)
