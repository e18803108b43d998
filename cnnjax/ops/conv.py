"""2-D convolution as a CNN course teaches it: output-size arithmetic, weight counts, conv2d.

Inputs carry no batch axis: an image is `(H, W)` or `(H, W, C)`. `conv2d` is the
cross-correlation every CNN layer computes (the kernel is *not* flipped); `convolve2d` is the
textbook convolution (kernel flipped in both spatial axes). Both run one
`jax.lax.conv_general_dilated` call after checking the size arithmetic

    n' = (n - f + 2p)/s + 1        (CS231n, "Convolutional Networks: Spatial arrangement")

so a filter that does not tile the (padded) input exactly raises `FilterDoesNotFitError` with
that arithmetic instead of silently dropping pixels.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Padding = int | str


class FilterDoesNotFitError(ValueError):
    """A filter/stride/padding combination does not tile the input a whole number of times."""


def positive_int(name: str, value: Any) -> int:
    """`value` as an int, or a ValueError naming `name` when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def normalize_padding(padding: Padding) -> int | str:
    """Validate `padding`: a non-negative int, or 'same'/'valid' (any case) returned lowercase."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("same", "valid"):
            raise ValueError(f"padding must be an int >= 0, 'same' or 'valid', got {padding!r}")
        return mode
    if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, 'same' or 'valid', got {padding!r}")
    return int(padding)


def same_padding(n: int, f: int, stride: int = 1) -> tuple[int, int]:
    """(low, high) zero padding giving ceil(n / stride) outputs; an odd pixel goes high, as XLA."""
    out = -(-n // stride)
    total = max((out - 1) * stride + f - n, 0)
    return total // 2, total - total // 2


def _format_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _axis_output_size(
    n: int, f: int, stride: int, pad: int, filter_text: str, input_text: str, where: str = ""
) -> int:
    """(n - f + 2p)/s + 1 for one axis, or `FilterDoesNotFitError` quoting the arithmetic."""
    span = n - f + 2 * pad
    value = span / stride + 1
    if value >= 1 and span % stride == 0:
        return span // stride + 1
    if value < 1:
        fix = "the result must be at least 1; use a smaller filter or more padding"
    else:
        fix = "the result must be a whole number; pick a stride s dividing n - f + 2p, or change p"
    raise FilterDoesNotFitError(
        f"a {filter_text} filter at stride {stride} does not fit a {input_text} input{where}: "
        f"({n} - {f} + 2·{pad})/{stride} + 1 = {_format_number(value)}; {fix}"
    )


def output_size(n: int, f: int, stride: int = 1, padding: Padding = 0) -> int:
    """Output length of a conv layer along one axis: (n - f + 2p)/s + 1.

    Raises `FilterDoesNotFitError` (a ValueError) with the arithmetic when the result is not a
    whole number or is below 1. `padding='valid'` means p = 0 (same rule); `'same'` pads so that
    the output is ceil(n / s), which always fits. This is the strict course rule: frameworks
    floor instead (ResNet's stem, (224 - 7 + 2·3)/2 + 1 = 112.5, gives 112 in PyTorch).
    """
    n, f, stride = positive_int("n", n), positive_int("f", f), positive_int("stride", stride)
    mode = normalize_padding(padding)
    if mode == "same":
        return math.ceil(n / stride)
    pad = 0 if mode == "valid" else mode
    return _axis_output_size(n, f, stride, pad, f"{f}×{f}", f"{n}×{n}")


def conv_params(f: int | tuple[int, int], in_channels: int, filters: int, bias: bool = True) -> int:
    """Learnable weights of a conv layer: f·f·in_channels·filters (+ one bias per filter).

    E.g. AlexNet conv1, 96 filters of 11×11×3: 11·11·3·96 + 96 = 34,944.
    """
    if isinstance(f, int | np.integer):
        f = (f, f)
    if not isinstance(f, tuple | list) or len(f) != 2:
        raise ValueError(f"f must be an int or a (kh, kw) pair, got {f!r}")
    kh, kw = f
    kh, kw = positive_int("filter height", kh), positive_int("filter width", kw)
    in_channels = positive_int("in_channels", in_channels)
    filters = positive_int("filters", filters)
    return kh * kw * in_channels * filters + (filters if bias else 0)


def _kernel_as_hwio(kernel: jax.Array, channels: int) -> tuple[jax.Array, int]:
    """Kernel as (kh, kw, in/groups, out) for `conv_general_dilated`, and the group count."""
    if kernel.ndim == 2:  # one 2-D filter slid over every channel separately (depthwise)
        return jnp.broadcast_to(kernel[:, :, None, None], (*kernel.shape, 1, channels)), channels
    if kernel.shape[2] != channels:
        raise ValueError(
            f"kernel of shape {kernel.shape} spans {kernel.shape[2]} channels but the input has "
            f"{channels}; filters must span the full input depth, so give the kernel "
            f"{channels} channels in axis 2"
        )
    return (kernel[..., None] if kernel.ndim == 3 else kernel), 1


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Padding = 0) -> jax.Array:
    """Cross-correlation of an image with a kernel (what a CNN conv layer computes, no bias).

    x: (H, W) or (H, W, C). kernel:
      (kh, kw)        on (H, W) -> (H', W'); on (H, W, C) it is applied to each channel on its
                      own (depthwise) -> (H', W', C);
      (kh, kw, C)     one filter spanning the full depth, summed over channels -> (H', W');
      (kh, kw, C, K)  K filters -> (H', W', K).
    padding: zeros added on every side (int), 'valid' (= 0) or 'same' (output ceil(n / stride)).
    Integer inputs compute in float32; the result has the promoted floating dtype.
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"conv2d takes an (H, W) or (H, W, C) image without a batch axis, got shape {x.shape}; "
            f"use jax.vmap for batches"
        )
    if kernel.ndim not in (2, 3, 4):
        raise ValueError(
            f"kernel must be (kh, kw), (kh, kw, C) or (kh, kw, C, K), got shape {kernel.shape}"
        )
    stride = positive_int("stride", stride)
    mode = normalize_padding(padding)
    image = x if x.ndim == 3 else x[:, :, None]
    (height, width, channels), (kh, kw) = image.shape, kernel.shape[:2]
    hwio, groups = _kernel_as_hwio(kernel, channels)
    keep_channel_axis = kernel.ndim == 4 or (kernel.ndim == 2 and x.ndim == 3)

    pads = []
    for axis, n, f in (("height", height, kh), ("width", width, kw)):
        if mode == "same":
            pads.append(same_padding(n, f, stride))
            continue
        pad = 0 if mode == "valid" else mode
        where = "" if (height == width and kh == kw) else f" along its {axis}"
        _axis_output_size(n, f, stride, pad, f"{kh}×{kw}", f"{height}×{width}", where)
        pads.append((pad, pad))

    dtype = jnp.result_type(image.dtype, hwio.dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.float32
    out = jax.lax.conv_general_dilated(
        image[None].astype(dtype),
        hwio.astype(dtype),
        window_strides=(stride, stride),
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision=jax.lax.Precision.HIGHEST,
    )[0]
    return out if keep_channel_axis else out[:, :, 0]


def convolve2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Padding = 0) -> jax.Array:
    """True 2-D convolution: `conv2d` with the kernel flipped in both spatial axes.

    Same shapes and arguments as `conv2d`. With an even kernel size and padding='same' the odd
    padding pixel still goes to the bottom/right, as in `conv2d`.
    """
    kernel = jnp.asarray(kernel)
    if kernel.ndim < 2:
        raise ValueError(f"kernel must have at least two spatial axes, got shape {kernel.shape}")
    return conv2d(x, jnp.flip(kernel, axis=(0, 1)), stride=stride, padding=padding)
