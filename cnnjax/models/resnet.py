"""ResNets (He et al. 2016): the ImageNet family (torchvision v1.5) and the CIFAR family.

ImageNet ResNets, input 224×224×3 (paper Table 1). Basic block = [3×3 f, 3×3 f]; bottleneck =
[1×1 f, 3×3 f, 1×1 4f]; the first block of layer2-4 strides by 2 and projects its shortcut
("option B"):

| stage  | output  | ResNet-18 / 34 (basic)   | ResNet-50 / 101 / 152 (bottleneck)   |
|--------|---------|--------------------------|--------------------------------------|
| conv1  | 112×112 | 7×7 conv 64, stride 2    | 7×7 conv 64, stride 2                |
| pool1  | 56×56   | 3×3 max-pool, stride 2   | 3×3 max-pool, stride 2               |
| layer1 | 56×56   | f=64:  ×2 / ×3           | f=64:  ×3 / ×3 / ×3                  |
| layer2 | 28×28   | f=128: ×2 / ×4           | f=128: ×4 / ×4 / ×8                  |
| layer3 | 14×14   | f=256: ×2 / ×6           | f=256: ×6 / ×23 / ×36                |
| layer4 | 7×7     | f=512: ×2 / ×3           | f=512: ×3 / ×3 / ×3                  |
| fc     | 1×1     | global avg pool, FC 1000 | global avg pool, FC 1000             |
| params |         | 11,689,512 / 21,797,672  | 25,557,032 / 44,549,160 / 60,192,808 |

CIFAR ResNets, input 32×32×3 (paper Sec. 4.2; depth 6n+2, zero-pad "option A" shortcuts):

| layer  | output | filters | blocks        |
|--------|--------|---------|---------------|
| conv1  | 32×32  | 3×3, 16 |               |
| layer1 | 32×32  | 16      | n basic       |
| layer2 | 16×16  | 32      | n basic, /2   |
| layer3 | 8×8    | 64      | n basic, /2   |
| fc     | 1×1    | global avg pool, FC 10 |  |

n = 3, 5, 7, 9, 18, 200 gives ResNet-20/32/44/56/110/1202 with 269,722 / 464,154 / 658,586 /
853,018 / 1,727,962 / 19,421,274 params (model_zoo.md §7.2).

All convs are bias-free and followed by BN (momentum 0.9, eps 1e-5 = PyTorch defaults), with He
fan-out normal init as torchvision; the FC keeps Flax's default init. Overrides: `v1=True`
(stride on the bottleneck's first 1×1, paper/Caffe), `zero_init_residual=True` (last BN gamma
of every block starts at 0), `shortcut='A'|'B'`, `scan` (default True: the blocks after each
stage's first run under nn.scan, variables stacked, in stages of more than 3 blocks; see
`ResidualStage`; False unrolls them),
`remat='blocks'|'convs'` (rematerialisation policy).

Inputs too small for a layer raise `InputTooSmallError`; note that every ResNet layer is padded
so that any input of at least 1×1 fits (as in torchvision): ResNet-50 on 16×16 runs, with
layer3 and layer4 at 1×1.

Layer names (for `cnnjax.features`): the tables' rows, `conv1` (conv-BN-ReLU), `pool1`
(ImageNet only), the stages `layer1` ... `layer4`, `fc`; inside a stage the blocks
`layer3/block2` (after the block's final ReLU) and their units `layer3/block2/conv1`,
`.../conv2` (`conv3` in bottlenecks; the last unit before the addition) and `.../shortcut`
(projections). `python -m cnnjax.summary --model=resnet50 --layers --depth=2` lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import (
    HE_NORMAL_FAN_OUT,
    BasicBlock,
    BottleneckBlock,
    ConvBNAct,
    MaxPool,
    ResidualStage,
    global_avg_pool,
)
from cnnjax.layers.residual import check_shortcut_kind
from cnnjax.models.registry import register_model

IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)

# Blocks per stage, paper Table 1.
IMAGENET_STAGES: dict[int, tuple[tuple[int, ...], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)


class ResNet(nn.Module):
    """ImageNet ResNet: 7×7/2 stem, 3×3/2 max-pool, four residual stages, global pool, FC."""

    stage_sizes: Sequence[int]
    bottleneck: bool
    num_classes: int = 1000
    v1: bool = False
    shortcut: str = "B"
    zero_init_residual: bool = False
    scan: bool = True
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        x = ConvBNAct(
            64, 7, 2, padding=3, kernel_init=HE_NORMAL_FAN_OUT, dtype=self.dtype, name="conv1"
        )(x, train)
        x = MaxPool(3, 2, padding=1, name="pool1")(x)
        block = functools.partial(BottleneckBlock, v1=self.v1) if self.bottleneck else BasicBlock
        block = functools.partial(
            block,
            shortcut=self.shortcut,
            zero_init_residual=self.zero_init_residual,
            dtype=self.dtype,
        )
        stages = zip(self.stage_sizes, IMAGENET_WIDTHS, strict=True)
        for i, (num_blocks, width) in enumerate(stages):
            stride = 1 if i == 0 else 2
            x = ResidualStage(
                block, num_blocks, width, stride, self.scan, self.remat, name=f"layer{i + 1}"
            )(x, train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(global_avg_pool(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2: 3×3 conv 16, three stages of n basic blocks, pool, FC."""

    blocks_per_stage: int
    num_classes: int = 10
    shortcut: str = "A"
    zero_init_residual: bool = False
    scan: bool = True
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        x = ConvBNAct(
            CIFAR_WIDTHS[0],
            3,
            padding=1,
            kernel_init=HE_NORMAL_FAN_OUT,
            dtype=self.dtype,
            name="conv1",
        )(x, train)
        block = functools.partial(
            BasicBlock,
            shortcut=self.shortcut,
            zero_init_residual=self.zero_init_residual,
            dtype=self.dtype,
        )
        for i, width in enumerate(CIFAR_WIDTHS):
            x = ResidualStage(
                block,
                self.blocks_per_stage,
                width,
                1 if i == 0 else 2,
                self.scan,
                self.remat,
                name=f"layer{i + 1}",
            )(x, train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(global_avg_pool(x))


def cifar_blocks_per_stage(depth: int) -> int:
    """n for a CIFAR ResNet of depth 6n+2 (20 -> 3, 110 -> 18)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, ...), got {depth}")
    return (depth - 2) // 6


def _register_imagenet(depth: int) -> None:
    stages, bottleneck = IMAGENET_STAGES[depth]

    @register_model(
        f"resnet{depth}",
        input_shape=(224, 224, 3),
        num_classes=1000,
        paper="He et al. 2016, Table 1 (torchvision v1.5)",
    )
    def factory(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
        return ResNet(stages, bottleneck, num_classes=num_classes, dtype=dtype, **overrides)


def _register_cifar(depth: int) -> None:
    n = cifar_blocks_per_stage(depth)

    @register_model(
        f"resnet{depth}",
        input_shape=(32, 32, 3),
        num_classes=10,
        paper="He et al. 2016, Sec. 4.2 (CIFAR-10)",
    )
    def factory(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
        return CifarResNet(n, num_classes=num_classes, dtype=dtype, **overrides)


for _depth in IMAGENET_STAGES:
    _register_imagenet(_depth)
for _depth in CIFAR_DEPTHS:
    _register_cifar(_depth)
