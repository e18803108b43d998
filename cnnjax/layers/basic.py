"""Size-checked convolution and pooling layers, conv-BN-activation, LRN, PReLU and Maxout.

Every spatial layer checks that its input is large enough *before* XLA sees it, so a model
fed a too-small image fails with the output-size arithmetic of the offending layer instead of
an opaque shape error deep inside a compiled computation.

`WindowDense` is a fully-connected layer over a fixed H×W×C window that slides as a VALID
convolution over a larger map, with `nn.Dense`'s parameters: the dense evaluation of VGG
Sec. 3.2, which runs a net trained on fixed crops over a whole larger image.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from cnnjax import ops

Padding = int | str | Sequence[tuple[int, int]]
IntPair = int | tuple[int, int]

CONV_OUTPUT = "conv_output"  # checkpoint name of every ConvBNAct conv output (before BN)


class InputTooSmallError(ValueError):
    """A spatial layer received an input smaller than its window allows."""


def _pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _explicit_padding(
    padding: Padding, size: int, window: int, stride: int, dilation: int = 1
) -> tuple[int, int]:
    """(low, high) padding of one spatial axis, resolving 'SAME'/'VALID' like XLA does."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return (0, 0)
        if mode == "SAME":
            effective = (window - 1) * dilation + 1
            out = -(-size // stride)
            total = max((out - 1) * stride + effective - size, 0)
            return (total // 2, total - total // 2)
        raise ValueError(
            f"padding must be an int, 'SAME', 'VALID' or (low, high) pairs, got {padding!r}"
        )
    if isinstance(padding, int):
        return (padding, padding)
    raise TypeError("per-axis padding must be resolved by the caller")


def spatial_output_size(
    layer: str,
    size: int,
    window: int,
    stride: int,
    pad: tuple[int, int],
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of one axis: floor((n + p_lo + p_hi - d(f-1) - 1)/s) + 1; ceil for Caffe pools.

    Raises `InputTooSmallError` naming `layer` and the arithmetic when the window does not fit.
    """
    effective = (window - 1) * dilation + 1
    span = size + pad[0] + pad[1] - effective
    if span < 0:
        pad_text = f"{pad[0]}+{pad[1]}" if pad[0] != pad[1] else f"2·{pad[0]}"
        raise InputTooSmallError(
            f"layer {layer!r}: input of size {size} is too small for a {effective}-wide window "
            f"(stride {stride}, padding {pad_text}): "
            f"({size} - {effective} + {pad_text})/{stride} + 1 "
            f"< 1; feed a larger image"
        )
    steps = math.ceil(span / stride) if ceil_mode else span // stride
    if ceil_mode and steps * stride >= size + pad[0]:
        steps -= 1  # as in Caffe/PyTorch: the last window must start inside the input or left pad
    return steps + 1


def _layer_name(module: nn.Module) -> str:
    path = module.scope.path if module.scope is not None else ()
    return "/".join(path) or type(module).__name__


def _axis_pads(
    padding: Padding,
    shape: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (low, high) padding per spatial axis."""
    if isinstance(padding, str | int):
        return [
            _explicit_padding(padding, n, f, s, d)
            for n, f, s, d in zip(shape, window, strides, dilation, strict=True)
        ]
    return [(int(lo), int(hi)) for lo, hi in padding]


class Conv(nn.Conv):
    """`nn.Conv` (NHWC) that checks the spatial arithmetic first.

    Unlike `nn.Conv`, padding defaults to 0 ('VALID'), as in the papers and PyTorch; it may be
    an int, 'SAME'/'VALID' or explicit (low, high) pairs.
    """

    padding: Padding = 0

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        window = tuple(self.kernel_size)
        ndim = len(window)
        strides = _ntuple(self.strides or 1, ndim)
        dilation = _ntuple(self.kernel_dilation or 1, ndim)
        spatial = inputs.shape[-ndim - 1 : -1]
        pads = _axis_pads(self.padding, spatial, window, strides, dilation)
        name = _layer_name(self)
        groups = self.feature_group_count
        if inputs.shape[-1] % groups or self.features % groups:
            raise ValueError(
                f"layer {name!r}: groups={groups} must divide both the {inputs.shape[-1]} input "
                f"and the {self.features} output channels; pick a common divisor"
            )
        for n, f, s, p, d in zip(spatial, window, strides, pads, dilation, strict=True):
            spatial_output_size(name, n, f, s, p, d)
        return super().__call__(inputs)


def _ntuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(v),) * n if isinstance(v, int) else tuple(int(x) for x in v)


def _pool_pads(
    layer: str,
    spatial: Sequence[int],
    window: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    ceil_mode: bool,
) -> list[tuple[int, int]]:
    """Explicit pool padding; ceil mode adds the extra high padding Caffe's rounding implies."""
    pads = _axis_pads(padding, spatial, window, strides, (1, 1))
    resolved = []
    for n, f, s, (lo, hi) in zip(spatial, window, strides, pads, strict=True):
        out = spatial_output_size(layer, n, f, s, (lo, hi), ceil_mode=ceil_mode)
        extra = max((out - 1) * s + f - (n + lo + hi), 0)
        resolved.append((lo, hi + extra))
    return resolved


class _Pool(nn.Module):
    """Window, stride and padding of a size-checked pooling layer."""

    window: IntPair = 2
    stride: IntPair | None = None
    padding: Padding = 0
    ceil_mode: bool = False

    def geometry(self, x: jax.Array) -> tuple[tuple[int, int], tuple[int, int], list]:
        """(window, strides, explicit pads) for input `x`, after checking that it fits."""
        window, strides = _pair(self.window), _pair(self.stride or self.window)
        pads = _pool_pads(
            _layer_name(self), x.shape[1:3], window, strides, self.padding, self.ceil_mode
        )
        return window, strides, pads


class MaxPool(_Pool):
    """Max pooling with size checking; `ceil_mode=True` rounds the output up like Caffe."""

    def __call__(self, x: jax.Array) -> jax.Array:
        window, strides, pads = self.geometry(x)
        return nn.max_pool(x, window, strides, padding=pads)


class AvgPool(_Pool):
    """Average pooling with size checking; zero padding counts in the mean (PyTorch default)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        window, strides, pads = self.geometry(x)
        # As in Caffe/PyTorch, the given zero padding counts in the mean; ceil mode's overhang not.
        given = _axis_pads(self.padding, x.shape[1:3], window, strides, (1, 1))
        x = jnp.pad(x, ((0, 0), *given, (0, 0)))
        overhang = [(0, hi - g_hi) for (_, hi), (_, g_hi) in zip(pads, given, strict=True)]
        return nn.avg_pool(x, window, strides, padding=overhang, count_include_pad=False)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, C): mean over the spatial axes."""
    return jnp.mean(x, axis=(1, 2))


def flatten(x: jax.Array) -> jax.Array:
    """(N, ...) -> (N, prod(...)), row-major over H, W, C."""
    return x.reshape((x.shape[0], -1))


class WindowDense(nn.Dense):
    """`nn.Dense` over a flattened H×W×C window, slid as a VALID conv over a larger map.

    The params are `nn.Dense`'s on the row-major (H, W, C) flatten of one window: `kernel`
    (H·W·C, features) and `bias`. An (N, H, W, C) map of exactly `window` gives the plain
    `(N, features)`; a larger one gives `(N, H', W', features)`, one output per window position,
    the kernel being reshaped to (H, W, C, features). A smaller one raises `InputTooSmallError`.
    """

    window: IntPair = 1

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if inputs.ndim != 4:
            raise ValueError(
                f"layer {_layer_name(self)!r}: WindowDense takes an (N, H, W, C) map, "
                f"got shape {inputs.shape}; do not flatten it first"
            )
        (kh, kw), (h, w, channels) = _pair(self.window), inputs.shape[1:]
        if h < kh or w < kw:
            raise InputTooSmallError(
                f"layer {_layer_name(self)!r}: a {h}×{w} map is smaller than its {kh}×{kw} "
                f"window; feed a larger image"
            )
        if (h, w) == (kh, kw):
            return super().__call__(flatten(inputs))  # the plain path, exactly nn.Dense
        shape = (kh * kw * channels, self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = lax.conv_general_dilated(
            inputs,
            kernel.reshape(kh, kw, channels, self.features),
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        return y if bias is None else y + bias


def require_window(
    model: str, layer: str, image: Sequence[int], grid: Sequence[int], window: int, minimum: int
) -> None:
    """Raise `InputTooSmallError` when an `image` leaves a map `grid` smaller than `layer`'s window.

    For nets whose first FC layer is a `WindowDense`: the message names the layer, the image and
    the smallest side that works, which plain shape arithmetic inside the layer cannot know.
    """
    if grid[0] >= window and grid[1] >= window:
        return
    raise InputTooSmallError(
        f"{model} layer {layer!r}: input of size {image[0]}×{image[1]} is too small: it leaves "
        f"a {grid[0]}×{grid[1]} map for {layer}'s {window}×{window} window; feed at least "
        f"{minimum}×{minimum} (larger inputs are evaluated densely)"
    )


_PLAIN_BACKWARD = contextvars.ContextVar("cnnjax_plain_conv_backward", default=False)
_NHWC = ("NHWC", "HWIO", "NHWC")


@contextlib.contextmanager
def plain_conv_backward() -> Iterator[None]:
    """Within it, ConvBNAct convolutions built on the CPU backend use `conv_plain_backward`.

    For the scanned ResNet stages: inside an XLA while loop the CPU backend runs autodiff's
    transposed convolutions about 12× slower than unrolled, the plain ones at ~1.2×
    (benchmarks/scan_conv_backward.py). The value is read when the layers are traced.
    """
    token = _PLAIN_BACKWARD.set(True)
    try:
        yield
    finally:
        _PLAIN_BACKWARD.reset(token)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_nhwc(x: jax.Array, w: jax.Array, pads: tuple, precision: Any) -> jax.Array:
    return lax.conv_general_dilated(
        x, w, (1, 1), pads, dimension_numbers=_NHWC, precision=precision
    )


def _conv_nhwc_forward(x, w, pads, precision):
    return _conv_nhwc(x, w, pads, precision), (x, w)


def _conv_nhwc_backward(pads, precision, saved, dy):
    """dx: dy with the flipped, in/out-swapped kernel; dw: x correlated with dy over the batch."""
    x, w = saved
    flipped = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))
    back = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w.shape[:2], pads, strict=True))
    dx = lax.conv_general_dilated(
        dy, flipped, (1, 1), back, dimension_numbers=_NHWC, precision=precision
    )
    dw = lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)),  # (C_in, H, W, N): the batch is what is summed over
        jnp.transpose(dy, (1, 2, 0, 3)),  # (H', W', N, C_out) as the "kernel"
        (1, 1),
        pads,
        dimension_numbers=_NHWC,
        precision=precision,
    )
    return dx.astype(x.dtype), jnp.transpose(dw, (1, 2, 0, 3)).astype(w.dtype)


_conv_nhwc.defvjp(_conv_nhwc_forward, _conv_nhwc_backward)


def conv_plain_backward(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated` whose gradients, for a stride-1 2-D NHWC conv, are plain convs.

    The same arithmetic as autodiff's (equal gradients), written as NHWC/HWIO convolutions of
    explicitly flipped and transposed operands; any other convolution is passed to lax as is.
    """
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    plain = (
        lhs.ndim == 4
        and all(s == 1 for s in window_strides)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision,
        )  # fmt: skip
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_nhwc(lhs, rhs, pads, precision)


def _conv_function() -> Callable[..., jax.Array]:
    """The convolution a layer traced now uses (see `plain_conv_backward`)."""
    if _PLAIN_BACKWARD.get() and jax.default_backend() == "cpu":
        return conv_plain_backward
    return lax.conv_general_dilated


class ConvBNAct(nn.Module):
    """Convolution, optional BatchNorm, optional activation: the unit most CNNs repeat.

    The conv has a bias only when there is no BN after it (BN's beta makes it redundant), unless
    `use_bias` says otherwise. `bn_momentum=0.9, bn_epsilon=1e-5` equal PyTorch's BN defaults.
    """

    features: int
    kernel_size: IntPair
    strides: IntPair = 1
    padding: Padding = 0
    norm: bool = True
    act: Callable[[jax.Array], jax.Array] | None = nn.relu
    use_bias: bool | None = None
    groups: int = 1
    dilation: IntPair = 1
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
    bn_scale_init: Callable[..., jax.Array] = nn.initializers.ones_init()
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=self.padding,
            use_bias=(not self.norm) if self.use_bias is None else self.use_bias,
            feature_group_count=self.groups,
            kernel_dilation=_pair(self.dilation),
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            conv_general_dilated=_conv_function(),
            name="conv",
        )(x)
        x = checkpoint_name(x, CONV_OUTPUT)  # what remat="convs" keeps for the backward pass
        if self.norm:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                scale_init=self.bn_scale_init,
                dtype=self.dtype,
                name="bn",
            )(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LRN(nn.Module):
    """Local response normalisation across channels, AlexNet Sec. 3.3 (no parameters)."""

    size: int = 5
    k: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.local_response_norm(
            x, size=self.size, k=self.k, alpha=self.alpha, beta=self.beta
        )


class PReLU(nn.Module):
    """Parametric ReLU (He et al. 2015): one learned slope per channel, initialised to 0.25."""

    init_alpha: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(self.init_alpha), (x.shape[-1],))
        return ops.prelu(x, alpha.astype(x.dtype))


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): max over `pieces` consecutive channels of the input."""

    pieces: int

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.maxout(x, self.pieces)
