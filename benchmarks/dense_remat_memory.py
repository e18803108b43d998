"""Does rematerialising a dense block lower its peak memory on this backend? Plain JAX, no flax.

    python -m benchmarks.dense_remat_memory

One DenseNet-BC-100 dense block without BN (16 layers, k = 12, bottleneck 48, 32², batch 64),
its gradient compiled three ways, side by side:

1. none: every layer concatenates the block's maps and keeps what autodiff saves;
2. checkpoint: each layer under `jax.checkpoint(policy=nothing_saveable)`, given the maps as
   separate pieces (the memory-efficient form of Pleiss et al. 2017), so only the pieces are
   kept for the backward pass;
3. recompute after the cotangent: a `custom_vjp` whose backward recomputes the layer from the
   pieces behind an optimization barrier shared with the incoming cotangent, so the
   recomputation cannot run before it is needed.

Prints XLA's peak estimate of each compiled gradient (arguments + outputs + temporaries −
aliased) and its convolutions before and after XLA's optimisations. On the 2-core CPU of
docs/benchmarks.md all three peaked at 1,435 MiB, and the 112 convolutions that (2) and (3)
emit (16 of them recomputations) came out of XLA:CPU as 96, as many as without remat: the
recomputation is merged back into the forward pass. With XLA's CSE pass disabled
(`XLA_FLAGS=--xla_disable_hlo_passes=cse`) the recomputation stays, but the peak still does not
move. So on XLA:CPU rematerialisation does not lower this peak, as DenseNet-121's `--remat`
rows in docs/benchmarks.md show; GPU memory is not measured here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.deep_compile import peak_bytes

NHWC = ("NHWC", "HWIO", "NHWC")
LAYERS, GROWTH, BOTTLENECK, INPUT, SIDE, BATCH = 16, 12, 48, 24, 32, 64


def dense_layer(pieces: Sequence[jax.Array], w1: jax.Array, w2: jax.Array) -> jax.Array:
    """ReLU-1×1 conv-ReLU-3×3 conv of the concatenated pieces: the layer's k new maps."""
    x = jnp.concatenate(pieces, -1)
    y = lax.conv_general_dilated(jax.nn.relu(x), w1, (1, 1), "SAME", dimension_numbers=NHWC)
    return lax.conv_general_dilated(jax.nn.relu(y), w2, (1, 1), "SAME", dimension_numbers=NHWC)


def recompute_after_cotangent(f: Callable) -> Callable:
    """`f` whose backward pass recomputes it from its inputs once the cotangent has arrived."""

    @jax.custom_vjp
    def wrapped(*args):
        return f(*args)

    def forward(*args):
        return f(*args), args

    def backward(args, cotangent):
        args, cotangent = lax.optimization_barrier((args, cotangent))
        return jax.vjp(f, *args)[1](cotangent)

    wrapped.defvjp(forward, backward)
    return wrapped


WRAPPERS: dict[str, Callable[[Callable], Callable]] = {
    "none": lambda f: f,
    "checkpoint": lambda f: jax.checkpoint(f, policy=jax.checkpoint_policies.nothing_saveable),
    "recompute after the cotangent": recompute_after_cotangent,
}


def block_loss(wrap: Callable[[Callable], Callable]) -> Callable:
    """Sum of squares of a dense block's output, each layer wrapped by `wrap`."""
    layer = wrap(dense_layer)

    def loss(weights: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
        pieces = [x]
        for w1, w2 in weights:
            pieces.append(layer(tuple(pieces), w1, w2))
        return jnp.sum(jnp.concatenate(pieces, -1) ** 2)

    return loss


def main() -> None:
    x = jnp.ones((BATCH, SIDE, SIDE, INPUT))
    weights = [
        (
            jnp.full((1, 1, INPUT + GROWTH * i, BOTTLENECK), 0.01),
            jnp.full((3, 3, BOTTLENECK, GROWTH), 0.01),
        )
        for i in range(LAYERS)
    ]
    for name, wrap in WRAPPERS.items():
        grad = jax.jit(jax.grad(block_loss(wrap), argnums=(0, 1)))
        lowered = grad.lower(weights, x)
        compiled = lowered.compile()
        emitted = lowered.as_text().count("stablehlo.convolution")
        kept = len(re.findall(r" convolution\(", compiled.as_text()))
        print(
            f"{name}: peak {peak_bytes(compiled) / 2**20:,.0f} MiB; "
            f"convolutions emitted {emitted}, after XLA's optimisations {kept}",
            flush=True,
        )


if __name__ == "__main__":
    main()
