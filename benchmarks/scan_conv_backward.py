"""Why a scanned ResNet stage trains slowly on XLA:CPU: the backward convolutions in a loop.

    python -m benchmarks.scan_conv_backward

A stage of 9 residual blocks (two 3×3 convolutions each, 16 channels, 32², batch 8), its
gradient computed three ways, side by side in one run:

1. unrolled: a Python loop over the blocks (what `scan=False` compiles);
2. scanned: `jax.lax.scan` over stacked weights, the convolutions' backward from JAX's
   autodiff (what `scan=True` compiles today);
3. scanned, explicit backward: the same scan with a `custom_vjp` convolution whose input and
   kernel gradients are written as plain NHWC/HWIO convolutions of explicitly flipped and
   transposed operands (the same arithmetic: the gradients are equal).

Prints ms per gradient and each ratio to unrolled. On the 2-core CPU this was written on, (2)
was about 12× slower than (1) and (3) about 1.2×: inside an XLA while loop the CPU backend
runs autodiff's transposed convolutions slowly, not the loop itself. Issue 14's lead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
BLOCKS, CHANNELS, SIDE, BATCH = 9, 16, 32, 8


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


@jax.custom_vjp
def conv_explicit_backward(x: jax.Array, w: jax.Array) -> jax.Array:
    """A stride-1 SAME 3×3 convolution whose gradients are plain NHWC/HWIO convolutions."""
    return _conv(x, w)


def _forward(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _conv(x, w), (x, w)


def _backward(saved: tuple[jax.Array, jax.Array], dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = saved
    dx = _conv(dy, jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2)))
    # The kernel gradient correlates x with dy over the batch: batch plays the channel role.
    pad = [(w.shape[0] // 2, w.shape[0] // 2), (w.shape[1] // 2, w.shape[1] // 2)]
    dw = lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), (1, 1), pad,
        dimension_numbers=NHWC,
    )  # fmt: skip
    return dx, jnp.transpose(dw, (1, 2, 0, 3))


conv_explicit_backward.defvjp(_forward, _backward)


def _stage(conv: Callable, scan: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    def block(x: jax.Array, w: jax.Array) -> jax.Array:
        return jax.nn.relu(x + conv(jax.nn.relu(conv(x, w[0])), w[1]))

    def loss(weights: jax.Array, x: jax.Array) -> jax.Array:
        if scan:
            x, _ = lax.scan(lambda carry, w: (block(carry, w), None), x, weights)
        else:
            for i in range(weights.shape[0]):
                x = block(x, weights[i])
        return jnp.mean(x * x)

    return loss


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(BATCH, SIDE, SIDE, CHANNELS)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(BLOCKS, 2, 3, 3, CHANNELS, CHANNELS)) * 0.1, jnp.float32)
    sides = {
        "unrolled": jax.jit(jax.grad(_stage(_conv, scan=False))),
        "scanned": jax.jit(jax.grad(_stage(_conv, scan=True))),
        "scanned, explicit backward": jax.jit(jax.grad(_stage(conv_explicit_backward, True))),
    }
    reference = sides["unrolled"](w, x)
    for name, grad in sides.items():  # compile, and check every side computes the same gradient
        np.testing.assert_allclose(grad(w, x), reference, rtol=1e-4, atol=1e-5, err_msg=name)
    best = {name: float("inf") for name in sides}
    for _ in range(3):  # alternate the sides, keep each one's best
        for name, grad in sides.items():
            start = time.perf_counter()
            for _ in range(5):
                out = grad(w, x)
            jax.block_until_ready(out)
            best[name] = min(best[name], (time.perf_counter() - start) / 5)
    for name, seconds in best.items():
        ratio = seconds / best["unrolled"]
        print(f"{name:28s} {1e3 * seconds:8.1f} ms per gradient   {ratio:5.2f}× unrolled")


if __name__ == "__main__":
    main()
