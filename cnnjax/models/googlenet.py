"""GoogLeNet / Inception-v1 (Szegedy et al. 2015), as in the paper and as in torchvision.

Paper Table 1, input 224×224×3 (inception columns: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5,
pool proj):

| layer           | kernel / stride | output     | 1×1 | 3×3 red | 3×3 | 5×5 red | 5×5 | pool proj |
|-----------------|-----------------|------------|-----|---------|-----|---------|-----|-----------|
| conv1           | 7×7 / 2         | 112×112×64 |     |         |     |         |     |           |
| pool1 (+ LRN)   | 3×3 max / 2     | 56×56×64   |     |         |     |         |     |           |
| conv2 (+ LRN)   | 3×3 / 1         | 56×56×192  |     | 64      | 192 |         |     |           |
| pool2           | 3×3 max / 2     | 28×28×192  |     |         |     |         |     |           |
| inception_3a    |                 | 28×28×256  | 64  | 96      | 128 | 16      | 32  | 32        |
| inception_3b    |                 | 28×28×480  | 128 | 128     | 192 | 32      | 96  | 64        |
| pool3           | 3×3 max / 2     | 14×14×480  |     |         |     |         |     |           |
| inception_4a    | (→ aux1)        | 14×14×512  | 192 | 96      | 208 | 16      | 48  | 64        |
| inception_4b    |                 | 14×14×512  | 160 | 112     | 224 | 24      | 64  | 64        |
| inception_4c    |                 | 14×14×512  | 128 | 128     | 256 | 24      | 64  | 64        |
| inception_4d    | (→ aux2)        | 14×14×528  | 112 | 144     | 288 | 32      | 64  | 64        |
| inception_4e    |                 | 14×14×832  | 256 | 160     | 320 | 32      | 128 | 128       |
| pool4           | 3×3 max / 2     | 7×7×832    |     |         |     |         |     |           |
| inception_5a    |                 | 7×7×832    | 256 | 160     | 320 | 32      | 128 | 128       |
| inception_5b    |                 | 7×7×1024   | 384 | 192     | 384 | 48      | 128 | 128       |
| avg pool        | 7×7 / 1         | 1×1×1024   |     |         |     |         |     |           |
| dropout 40%, fc |                 | 1000       |     |         |     |         |     |           |

`googlenet` is the paper network: conv + bias + ReLU units, LRN (Caffe's size 5, alpha 1e-4,
beta 0.75, k 1) after pool1 and after conv2, true 5×5 branches, Caffe's ceil-mode pooling,
dropout 0.4 and two auxiliary heads (5×5/3 avg-pool, 1×1 conv 128, FC 1024, dropout 0.7, FC)
on 4a and 4d: 13,378,280 params, 6,998,552 without the heads. Init follows BVLC's
bvlc_googlenet prototxt: Caffe "xavier" filler (uniform, variance 1/fan_in = LeCun uniform) and
bias 0.2 for convs and hidden FCs, bias 0 for the classifiers.

`googlenet_bn` is torchvision's network (ported from TF-Slim): bias-free conv + BN(eps 1e-3)
units, no LRN, 3×3 instead of 5×5 in branch 3 (pytorch/vision#906), 2×2/2 pool4, dropout 0.2,
aux heads with adaptive pooling to 4×4 and conv-BN: 13,004,888 params, 6,624,904 without.
Init as torchvision: N(0, 0.01) weights (its truncation at ±2 is 200σ, i.e. none).

In training (`train=True`) with `aux_logits=True` the model returns `(logits, (aux1, aux2))`;
the paper adds the auxiliary losses with weight `AUX_LOSS_WEIGHT` = 0.3 (Sec. 5). In evaluation it
returns the logits only. The final 7×7 average pool is a global average pool, so other input
sizes work as long as every pool window fits.

Layer names (for `cnnjax.features`): `conv1`, `pool1`, `norm1`, `conv2_reduce`, `conv2`,
`norm2`, `pool2`, `inception_3a`, `inception_3b`, `pool3`, `inception_4a`, `inception_4b`,
`inception_4c`, `inception_4d`, `inception_4e`, `pool4`, `inception_5a`, `inception_5b`,
`Dropout_0` (the pooled 1024-d feature; dropout is the identity in inference), `fc` (`norm1`,
`norm2` only in `googlenet`). Conv units end with their ReLU;
an inception module's branches are `inception_3a/1x1`, `/3x3_reduce`, `/3x3`, `/5x5_reduce`,
`/5x5`, `/pool`, `/pool_proj`. The heads `aux1`, `aux2` run only in training.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.layers import (
    LRN,
    ConvBNAct,
    Inception,
    InceptionAux,
    MaxPool,
    global_avg_pool,
)
from cnnjax.layers.inception import GOOGLENET_BN_EPSILON
from cnnjax.models.registry import register_model

AUX_LOSS_WEIGHT = 0.3  # weight of each auxiliary classifier's loss in training (paper Sec. 5)

# #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (paper Table 1).
INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

# Caffe's LRN divides alpha by the window size; ops.local_response_norm uses AlexNet's form.
_CAFFE_LRN = {"size": 5, "k": 1.0, "alpha": 1e-4 / 5, "beta": 0.75}

# Caffe "xavier" (default FAN_IN): U(±sqrt(3 / fan_in)) = LeCun uniform (BVLC prototxt).
_PAPER_INIT = {
    "kernel_init": nn.initializers.lecun_uniform(),
    "bias_init": nn.initializers.constant(0.2),
}
# torchvision googlenet.py `_initialize_weights`: weights N(0, 0.01), biases (none in convs) 0.
_TORCHVISION_INIT = {
    "kernel_init": nn.initializers.normal(0.01),
    "bias_init": nn.initializers.zeros_init(),
}


class GoogLeNet(nn.Module):
    """GoogLeNet: stem, nine Inception modules, global pool, dropout, FC; optional aux heads.

    `batch_norm=False` is the paper network, `True` torchvision's BN variant (see module doc).
    """

    num_classes: int = 1000
    batch_norm: bool = False
    aux_logits: bool = True
    dropout_rate: float = 0.4
    aux_dropout_rate: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False
    ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        paper = not self.batch_norm
        init = _PAPER_INIT if paper else _TORCHVISION_INIT
        conv = functools.partial(
            ConvBNAct, norm=self.batch_norm, bn_epsilon=GOOGLENET_BN_EPSILON, dtype=self.dtype,
            **init,
        )
        pool = functools.partial(MaxPool, 3, 2, ceil_mode=True)  # Caffe/torchvision rounding

        def inception(name: str) -> nn.Module:
            return Inception(
                *INCEPTION_CHANNELS[name], five_by_five=paper, batch_norm=self.batch_norm,
                dtype=self.dtype, name=f"inception_{name}", **init,
            )

        def aux_head(name: str) -> nn.Module:
            return InceptionAux(
                self.num_classes, batch_norm=self.batch_norm, dropout_rate=self.aux_dropout_rate,
                dtype=self.dtype, name=name, **init,
            )

        # Heads run in training, and at init whatever `train` is, so their params always exist.
        run_aux = self.aux_logits and (train or self.is_initializing())

        x = conv(64, 7, 2, padding=3, name="conv1")(x, train)
        x = pool(name="pool1")(x)
        if paper:
            x = LRN(**_CAFFE_LRN, name="norm1")(x)
        x = conv(64, 1, name="conv2_reduce")(x, train)
        x = conv(192, 3, padding=1, name="conv2")(x, train)
        if paper:
            x = LRN(**_CAFFE_LRN, name="norm2")(x)
        x = pool(name="pool2")(x)
        x = inception("3a")(x, train)
        x = inception("3b")(x, train)
        x = pool(name="pool3")(x)
        x = inception("4a")(x, train)
        aux1 = aux_head("aux1")(x, train) if run_aux else None
        x = inception("4b")(x, train)
        x = inception("4c")(x, train)
        x = inception("4d")(x, train)
        aux2 = aux_head("aux2")(x, train) if run_aux else None
        x = inception("4e")(x, train)
        x = MaxPool(3 if paper else 2, 2, ceil_mode=True, name="pool4")(x)
        x = inception("5a")(x, train)
        x = inception("5b")(x, train)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(global_avg_pool(x))
        logits = nn.Dense(
            self.num_classes, kernel_init=init["kernel_init"], dtype=self.dtype, name="fc"
        )(x)
        if self.aux_logits and train:
            return logits, (aux1, aux2)
        return logits


@register_model(
    "googlenet",
    input_shape=(224, 224, 3),
    num_classes=1000,
    paper="Szegedy et al. 2015, Table 1 (BVLC Caffe definition)",
)
def googlenet(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """The paper's GoogLeNet with LRN, biases, true 5×5 branches, dropout 0.4 and aux heads."""
    return GoogLeNet(num_classes=num_classes, dtype=dtype, **overrides)


@register_model(
    "googlenet_bn",
    input_shape=(224, 224, 3),
    num_classes=1000,
    paper="Szegedy et al. 2015 as in torchvision (BN, TF-Slim port)",
)
def googlenet_bn(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """torchvision's GoogLeNet: conv-BN units, 3×3 in the "5×5" branch, dropout 0.2."""
    overrides.setdefault("dropout_rate", 0.2)
    return GoogLeNet(num_classes=num_classes, batch_norm=True, dtype=dtype, **overrides)
