"""Max and average pooling of one image, `(H, W)` or `(H, W, C)` (each channel on its own).

Output length per axis, as in PyTorch/TensorFlow pooling:
  'valid' / int p:  floor((n + 2p - f)/s) + 1   (rows/columns left over at the end are dropped);
  'same':           ceil(n / s)                  (partial windows at the border are kept).
Padding never wins a max (it is -inf). For the mean, int padding counts as zeros (PyTorch's
`count_include_pad=True`) while 'same' averages only the real pixels of a partial window
(TensorFlow's 'SAME').
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.ops.conv import Padding, normalize_padding, positive_int, same_padding


def _pool_pads(
    op: str, shape: tuple[int, ...], window: int, stride: int, mode: int | str
) -> list[tuple[int, int]]:
    """(low, high) padding per spatial axis, after checking the window fits the padded input."""
    if mode == "same":
        return [same_padding(n, window, stride) for n in shape]
    pad = 0 if mode == "valid" else mode
    if 2 * pad > window:
        raise ValueError(
            f"{op}: padding {pad} is more than half the {window}×{window} window, so a window "
            f"could hold only padding; use padding <= {window // 2}"
        )
    for n in shape:
        if n + 2 * pad < window:
            raise ValueError(
                f"{op}: a {window}×{window} window does not fit a {shape[0]}×{shape[1]} input "
                f"with padding {pad}: {n} + 2·{pad} < {window}; shrink the window or add padding"
            )
    return [(pad, pad)] * 2


def _check_image(op: str, x: jax.Array) -> None:
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{op} takes an (H, W) or (H, W, C) image without a batch axis, got shape {x.shape}; "
            f"use jax.vmap for batches"
        )


def max_pool(
    x: jax.Array, window: int = 2, stride: int = 2, padding: Padding = "valid"
) -> jax.Array:
    """Maximum over each `window`×`window` patch, stepping `stride`; keeps the input dtype."""
    x = jnp.asarray(x)
    _check_image("max_pool", x)
    window, stride = positive_int("window", window), positive_int("stride", stride)
    pads = _pool_pads("max_pool", x.shape[:2], window, stride, normalize_padding(padding))
    image = x if x.ndim == 3 else x[:, :, None]
    out = nn.max_pool(image, (window, window), (stride, stride), padding=pads)
    return out if x.ndim == 3 else out[:, :, 0]


def avg_pool(
    x: jax.Array, window: int = 2, stride: int = 2, padding: Padding = "valid"
) -> jax.Array:
    """Mean over each `window`×`window` patch, stepping `stride`; integer input gives float32.

    With padding='same' a partial window at the border is averaged over its real pixels only;
    with int padding the added zeros count in the mean.
    """
    x = jnp.asarray(x)
    _check_image("avg_pool", x)
    window, stride = positive_int("window", window), positive_int("stride", stride)
    mode = normalize_padding(padding)
    pads = _pool_pads("avg_pool", x.shape[:2], window, stride, mode)
    image = x if x.ndim == 3 else x[:, :, None]
    if not jnp.issubdtype(image.dtype, jnp.inexact):
        image = image.astype(jnp.float32)
    out = nn.avg_pool(
        image, (window, window), (stride, stride), padding=pads, count_include_pad=mode != "same"
    ).astype(image.dtype)
    return out if x.ndim == 3 else out[:, :, 0]
