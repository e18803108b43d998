"""Residual blocks of He et al. 2016 ("Deep Residual Learning for Image Recognition").

| block      | residual branch (conv-BN units)                | out | used by              |
|------------|------------------------------------------------|-----|----------------------|
| basic      | 3×3, stride s → 3×3                            | f   | ResNet-18/34, CIFAR  |
| bottleneck | 1×1 → 3×3, stride s (v1: on the 1×1) → 1×1     | 4f  | ResNet-50/101/152    |

The block output is ReLU(branch(x) + shortcut(x)). The shortcut is the identity when shapes
agree; otherwise option "B" projects with a 1×1 conv + BN (the ImageNet nets) and option "A"
subsamples and zero-pads the channels, adding no parameters (the CIFAR nets, paper Sec. 4.2).

`v1=False` is torchvision's "ResNet v1.5" (stride on the 3×3); `v1=True` is the paper/Caffe
placement. Both have the same parameters; v1.5 spends more multiply-adds (4.09 vs 3.86 GMACs
for ResNet-50, model_zoo.md §7.1).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cnnjax.layers.basic import CONV_OUTPUT, ConvBNAct, plain_conv_backward

Initializer = Callable[..., jax.Array]

# He init as torchvision's resnet.py (`kaiming_normal_(mode="fan_out")`) and the DenseNet authors'
# Lua code (liuzhuang13/DenseNet models/densenet.lua): N(0, 2 / (k·k·out_channels)), untruncated.
HE_NORMAL_FAN_OUT: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

SHORTCUT_KINDS = ("A", "B")
STACKED = "blocks"  # a scanned stage's repeated blocks, variables stacked on a leading axis
# A stage scans its repeated blocks only from this many on: on XLA:CPU a two-step loop costs
# more compile time than a third unrolled block (ResNet-152 with layer1/layer4 unrolled:
# 13.9-16.8 s against 17.7-19.7 s scanning all four stages; benchmarks/deep_compile.py).
MIN_SCANNED_REPEATS = 3


def check_shortcut_kind(kind: str) -> None:
    """Reject a shortcut option other than 'A' (zero-pad) or 'B' (projection) up front."""
    if kind not in SHORTCUT_KINDS:
        raise ValueError(
            f"unknown shortcut {kind!r}; use 'A' (zero-pad, parameter-free) or 'B' (1×1 projection)"
        )


def zero_pad_shortcut(x: jax.Array, features: int, strides: int = 1) -> jax.Array:
    """Option A shortcut: keep every `strides`-th pixel and append zero channels up to `features`.

    Parameter-free (He et al. 2016, Sec. 3.3 and 4.2). The input channels come first, the new
    zero channels last.
    """
    channels = x.shape[-1]
    if features < channels:
        raise ValueError(
            f"zero-pad shortcut cannot shrink {channels} channels to {features}; "
            "use shortcut='B' (projection) for that"
        )
    x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - channels)))


def residual_shortcut(
    x: jax.Array,
    features: int,
    strides: int,
    kind: str,
    train: bool,
    *,
    dtype: Any,
    kernel_init: Initializer,
) -> jax.Array:
    """Identity when the shape is kept, else option A (zero-pad) or B (1×1 conv + BN, 'shortcut').

    Must be called inside a compact method: the option-B projection becomes a submodule of the
    calling block.
    """
    if x.shape[-1] == features and strides == 1:
        return x
    if kind == "A":
        return zero_pad_shortcut(x, features, strides)
    projection = ConvBNAct(
        features, 1, strides, act=None, kernel_init=kernel_init, dtype=dtype, name="shortcut"
    )
    return projection(x, train)


def _last_bn_scale(zero_init_residual: bool) -> Initializer:
    # Goyal et al. 2017 / torchvision `zero_init_residual`: each block starts as the identity.
    return nn.initializers.zeros_init() if zero_init_residual else nn.initializers.ones_init()


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN units plus a shortcut (ResNet-18/34 and the CIFAR ResNets)."""

    features: int
    strides: int = 1
    shortcut: str = "B"
    zero_init_residual: bool = False
    kernel_init: Initializer = HE_NORMAL_FAN_OUT
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        unit = functools.partial(ConvBNAct, kernel_init=self.kernel_init, dtype=self.dtype)
        y = unit(self.features, 3, self.strides, padding=1, name="conv1")(x, train)
        y = unit(
            self.features,
            3,
            padding=1,
            act=None,
            bn_scale_init=_last_bn_scale(self.zero_init_residual),
            name="conv2",
        )(y, train)
        identity = residual_shortcut(
            x,
            self.features,
            self.strides,
            self.shortcut,
            train,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
        )
        return nn.relu(y + identity)


class BottleneckBlock(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4) conv-BN units plus a shortcut (ResNet-50/101/152).

    `features` is the bottleneck width; the block outputs `4 * features` channels.
    """

    features: int
    strides: int = 1
    v1: bool = False
    shortcut: str = "B"
    zero_init_residual: bool = False
    kernel_init: Initializer = HE_NORMAL_FAN_OUT
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_shortcut_kind(self.shortcut)
        unit = functools.partial(ConvBNAct, kernel_init=self.kernel_init, dtype=self.dtype)
        reduce_stride, conv_stride = (self.strides, 1) if self.v1 else (1, self.strides)
        out_features = self.features * self.expansion
        y = unit(self.features, 1, reduce_stride, name="conv1")(x, train)
        y = unit(self.features, 3, conv_stride, padding=1, name="conv2")(y, train)
        y = unit(
            out_features,
            1,
            act=None,
            bn_scale_init=_last_bn_scale(self.zero_init_residual),
            name="conv3",
        )(y, train)
        identity = residual_shortcut(
            x,
            out_features,
            self.strides,
            self.shortcut,
            train,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
        )
        return nn.relu(y + identity)


REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "none": None,  # keep every activation for the backward pass (fastest, most memory)
    "blocks": jax.checkpoint_policies.nothing_saveable,  # keep block inputs, recompute the rest
    "convs": jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT),  # recompute BN + ReLU
}


def check_remat(remat: str) -> None:
    """Reject a rematerialisation policy name other than those of REMAT_POLICIES, in one line."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"--remat={remat} is not a policy; use one of {', '.join(REMAT_POLICIES)}")


def _block_class(block: Callable[..., nn.Module]) -> tuple[type[nn.Module], dict[str, Any]]:
    """The module class of a block (or of a partial of one), and the options the partial fixes."""
    if isinstance(block, functools.partial):
        return block.func, dict(block.keywords)
    return block, {}


@functools.cache
def _scan_step(block_cls: type[nn.Module]) -> type[nn.Module]:
    """`block_cls` with nn.scan's step signature: (x, train) -> (block(x), None)."""

    class Step(block_cls):
        @nn.compact
        def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, None]:
            return super().__call__(x, train), None

    Step.__name__ = Step.__qualname__ = block_cls.__name__
    return Step


def rematted(block_cls: type[nn.Module], remat: str) -> type[nn.Module]:
    """`block_cls` recomputing in the backward pass what REMAT_POLICIES[remat] does not keep."""
    if remat == "none":
        return block_cls
    return nn.remat(block_cls, policy=REMAT_POLICIES[remat], static_argnums=(2,))


class ResidualStage(nn.Module):
    """`num_blocks` residual blocks; only the first one strides, the rest repeat one shape.

    `block` is a block class (or a `functools.partial` of one fixing its options); it is called
    as `block(features=..., strides=..., name=...)`. With `scan=True` (the default) the blocks
    after the first run under `nn.scan` when there are at least MIN_SCANNED_REPEATS of them:
    one traced block whatever the depth, so compile time stays flat, with their variables
    stacked on a leading axis under `blocks` (`stack_blocks`/`unstack_blocks` convert to and
    from the per-block names `block2`, ...). Shorter stages, and `scan=False`, are unrolled.
    `remat` names a policy of REMAT_POLICIES applied to every block.
    """

    block: Callable[..., nn.Module]
    num_blocks: int
    features: int
    strides: int = 1
    scan: bool = True
    remat: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_remat(self.remat)
        cls, options = _block_class(self.block)
        block = functools.partial(rematted(cls, self.remat), **options)
        x = block(features=self.features, strides=self.strides, name="block1")(x, train)
        repeats = self.num_blocks - 1
        if self.scan and repeats >= MIN_SCANNED_REPEATS:
            step = nn.scan(
                rematted(_scan_step(cls), self.remat),
                variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
                split_rngs={"params": True},
                in_axes=nn.broadcast,
                length=repeats,
            )
            with plain_conv_backward():  # XLA:CPU is slow at autodiff's convs in a loop
                x, _ = step(features=self.features, name=STACKED, **options)(x, train)
        else:
            for i in range(1, self.num_blocks):
                x = block(features=self.features, name=f"block{i + 1}")(x, train)
        return x


def _is_stage(node: Any, key: str) -> bool:
    return isinstance(node, dict) and key in node


def _stack_stage(stage: Any, min_repeats: int) -> Any:
    if not _is_stage(stage, "block2"):
        return stage
    count = sum(1 for k in stage if re.fullmatch(r"block\d+", k))
    if count - 1 < min_repeats:
        return stage  # a short stage, which ResidualStage unrolls
    blocks = [stage[f"block{i}"] for i in range(2, count + 1)]
    rest = {k: v for k, v in stage.items() if not re.fullmatch(r"block\d+", k)}
    return {"block1": stage["block1"], STACKED: jax.tree.map(_stack, *blocks), **rest}


def _unstack_stage(stage: Any) -> Any:
    if not _is_stage(stage, STACKED):
        return stage
    stacked = stage[STACKED]
    count = jax.tree.leaves(stacked)[0].shape[0]
    out = {k: v for k, v in stage.items() if k != STACKED}
    for i in range(count):
        out[f"block{i + 2}"] = jax.tree.map(lambda a, i=i: _take(a, i), stacked)
    return out


def _stack(*leaves: Any) -> Any:
    first = leaves[0]
    if isinstance(first, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(
            (len(leaves), *first.shape), first.dtype, sharding=first.sharding
        )
    return (
        np.stack([np.asarray(a) for a in leaves])
        if isinstance(first, np.ndarray)
        else jnp.stack(leaves)
    )


def _take(leaf: Any, i: int) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype, sharding=leaf.sharding)
    return leaf[i]


def has_stacked_blocks(tree: Any) -> bool:
    """Whether any residual stage in `tree` holds its repeated blocks stacked (scanned layout)."""
    found = jax.tree.leaves(
        jax.tree.map(lambda n: _is_stage(n, STACKED), tree, is_leaf=lambda n: _is_stage(n, STACKED))
    )
    return any(f is True for f in found)


def stack_blocks(tree: Any, min_repeats: int = MIN_SCANNED_REPEATS) -> Any:
    """Per-block variables (`block2`, `block3`, ...) stacked under `blocks`, in any pytree.

    The scanned layout of `ResidualStage` (stages with fewer than `min_repeats` repeated
    blocks stay per block); the inverse of `unstack_blocks`. Works on variables,
    train states (optimizer states included) and their abstract shapes alike.
    """
    return jax.tree.map(
        functools.partial(_stack_stage, min_repeats=min_repeats),
        tree,
        is_leaf=lambda n: _is_stage(n, "block2"),
    )


def unstack_blocks(tree: Any) -> Any:
    """Stacked `blocks` variables split into per-block `block2`, `block3`, ... (unrolled layout)."""
    return jax.tree.map(_unstack_stage, tree, is_leaf=lambda n: _is_stage(n, STACKED))


def unrolled(model: nn.Module, variables: Any = None) -> tuple[nn.Module, Any]:
    """The same network with every stage unrolled (per-block names), and `variables` to match.

    What per-block tools (features, summary, the torchvision names) work on; a model without
    scanned stages comes back as it is.
    """
    if not getattr(model, "scan", False):
        return model, variables
    return model.clone(scan=False), None if variables is None else unstack_blocks(variables)


def in_layout_of(model: nn.Module, variables: Any) -> Any:
    """`variables` in any layout (stacked or per-block stages) converted to the one `model` uses."""
    per_block = unstack_blocks(variables)
    return stack_blocks(per_block) if getattr(model, "scan", False) else per_block
