"""Activation functions and local response normalisation, as the papers define them."""

from __future__ import annotations

from numbers import Integral

import jax
import jax.numpy as jnp


def sigmoid(x: jax.Array) -> jax.Array:
    """1 / (1 + e^-x)."""
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def relu(x: jax.Array) -> jax.Array:
    """max(0, x)."""
    return jnp.maximum(x, 0)


def leaky_relu(x: jax.Array, alpha: float = 0.01) -> jax.Array:
    """x for x > 0, alpha·x otherwise (Maas et al. 2013)."""
    return jnp.where(x > 0, x, alpha * x)


def prelu(x: jax.Array, alpha: jax.Array | float) -> jax.Array:
    """Leaky ReLU with a learned slope `alpha` (scalar, or per channel on the last axis)."""
    return jnp.where(x > 0, x, alpha * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """x for x > 0, alpha·(e^x - 1) otherwise (Clevert et al. 2016)."""
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


def maxout(x: jax.Array, pieces: int) -> jax.Array:
    """Max over groups of `pieces` consecutive channels: (..., C) -> (..., C / pieces)."""
    channels = x.shape[-1]
    if isinstance(pieces, bool) or not isinstance(pieces, Integral) or pieces < 1:
        raise ValueError(f"maxout: pieces must be a positive int, got {pieces!r}")
    if channels % pieces:
        raise ValueError(
            f"maxout: {channels} channels do not split into groups of {pieces}; "
            f"choose pieces that divides {channels}"
        )
    return jnp.max(x.reshape(*x.shape[:-1], channels // pieces, pieces), axis=-1)


def local_response_norm(
    x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> jax.Array:
    """AlexNet's LRN over the channel (last) axis: b_i = a_i / (k + alpha·sum_j a_j^2)^beta.

    The sum runs over the `size` channels centred on i, clipped at the ends, exactly as in
    Krizhevsky et al. 2012, Sec. 3.3. Caffe and torch.nn.LocalResponseNorm divide alpha by
    `size`; pass `alpha=alpha_caffe / size` to reproduce them.
    """
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive int, got {size!r}")
    squares = jnp.square(x.astype(jnp.float32))
    half = size // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)]
    window = (1,) * (x.ndim - 1) + (size,)
    sums = jax.lax.reduce_window(
        jnp.pad(squares, pad), 0.0, jax.lax.add, window, (1,) * x.ndim, "VALID"
    )
    return (x / jnp.power(k + alpha * sums, beta).astype(x.dtype)).astype(x.dtype)
