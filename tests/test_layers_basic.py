"""Size-checked conv/pool layers against brute-force window counting and naive pooling."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnjax.layers import AvgPool, Conv, ConvBNAct, InputTooSmallError, MaxPool, spatial_output_size


def _count_windows(n: int, f: int, s: int, p: int, ceil_mode: bool) -> int:
    """Enumerate window starts (PyTorch/Caffe definition) instead of using the closed form."""
    starts = 0
    i = 0
    while True:
        start = i * s  # in padded coordinates
        fits = start + f <= n + 2 * p
        # Ceil mode keeps a last window overhanging the padded input by less than one stride,
        # provided it starts inside the input or its left padding.
        partial_ok = ceil_mode and start < n + p and start + f <= n + 2 * p + s - 1
        if not (fits or partial_ok):
            return starts
        starts += 1
        i += 1


def test_output_size_matches_window_enumeration():
    for n, f, s, p, ceil_mode in itertools.product(
        [1, 5, 7, 13, 32, 55, 112, 227],
        [1, 2, 3, 5, 7, 11],
        [1, 2, 3, 4],
        [0, 1, 2, 3],
        [False, True],
    ):
        if n + 2 * p < f or p >= f:
            continue
        got = spatial_output_size("x", n, f, s, (p, p), ceil_mode=ceil_mode)
        assert got == _count_windows(n, f, s, p, ceil_mode), (n, f, s, p, ceil_mode)


def test_classic_sizes():
    assert spatial_output_size("conv1", 227, 11, 4, (0, 0)) == 55  # AlexNet conv1
    assert spatial_output_size("pool1", 55, 3, 2, (0, 0)) == 27  # overlapping pool
    assert spatial_output_size("conv1", 224, 7, 2, (1, 1)) == 110  # ZFNet conv1
    assert spatial_output_size("pool1", 110, 3, 2, (0, 0), ceil_mode=True) == 55
    assert spatial_output_size("pool2", 26, 3, 2, (0, 0), ceil_mode=True) == 13
    assert spatial_output_size("d", 32, 3, 1, (2, 2), dilation=2) == 32  # dilated 3x3 spans 5


def test_too_small_message_has_the_arithmetic():
    with pytest.raises(
        InputTooSmallError, match=r"layer 'conv1'.*size 8.*\(8 - 11 \+ 2·0\)/4 \+ 1 < 1"
    ):
        spatial_output_size("conv1", 8, 11, 4, (0, 0))


def test_conv_checks_before_xla():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Conv(4, (5, 5), strides=2, name="stem")(x)

    with pytest.raises(InputTooSmallError, match="layer 'stem'"):
        Net().init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    out = jax.eval_shape(
        lambda: Net().init_with_output(jax.random.key(0), jnp.zeros((1, 9, 9, 3)))[0]
    )
    assert out.shape == (1, 3, 3, 4)  # floor((9 - 5)/2) + 1 = 3: padding defaults to 0


def _naive_pool(x: np.ndarray, f: int, s: int, p: int, ceil_mode: bool, reduce) -> np.ndarray:
    n = x.shape[0]
    out = _count_windows(n, f, s, p, ceil_mode)
    padded = np.pad(x, p, constant_values=np.nan)
    res = np.empty((out, out))
    for i in range(out):
        for j in range(out):
            win = padded[i * s : i * s + f, j * s : j * s + f]
            res[i, j] = reduce(win)
    return res


@pytest.mark.parametrize(
    "n,f,s,p,ceil_mode",
    [
        (7, 3, 2, 0, True),
        (6, 3, 2, 0, True),
        (6, 3, 2, 1, False),
        (112, 3, 2, 0, True),
        (5, 2, 2, 0, False),
    ],
)
def test_max_pool_matches_naive_clipped_windows(n, f, s, p, ceil_mode):
    x = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    pool = MaxPool(f, s, padding=p, ceil_mode=ceil_mode)
    got = pool.apply({}, jnp.asarray(x)[None, :, :, None])[0, :, :, 0]
    np.testing.assert_allclose(got, _naive_pool(x, f, s, p, ceil_mode, np.nanmax), rtol=1e-6)


def test_avg_pool_counts_zero_padding():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    got = AvgPool(3, 1, padding=1).apply({}, jnp.asarray(x)[None, :, :, None])[0, :, :, 0]
    want = _naive_pool(x, 3, 1, 1, False, lambda w: np.nansum(w) / 9.0)  # padding counts as zeros
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_conv_bn_act_groups_dilation_and_bias_rule():
    unit = ConvBNAct(8, 3, strides=1, padding=2, groups=4, dilation=2)
    variables = unit.init(jax.random.key(0), jnp.zeros((2, 10, 10, 8)))
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 2, 8)  # 8 inputs / 4 groups
    assert "bias" not in variables["params"]["conv"]  # BN follows: its beta is the bias
    assert variables["batch_stats"]["bn"]["mean"].shape == (8,)
    out = unit.apply(variables, jnp.ones((2, 10, 10, 8)))
    assert out.shape == (2, 10, 10, 8)  # 3x3 dilated by 2 spans 5; padding 2 keeps the size
    plain = ConvBNAct(4, 3, norm=False, act=None).init(jax.random.key(0), jnp.zeros((1, 5, 5, 3)))
    assert plain["params"]["conv"]["bias"].shape == (4,)


def test_bn_uses_batch_statistics_in_training():
    unit = ConvBNAct(3, 1, norm=True, act=None, kernel_init=nn.initializers.ones)
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 2)) * 5 + 2
    variables = unit.init(jax.random.key(0), x)
    out, updates = unit.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    pre = np.asarray(x).sum(-1)  # 1x1 conv with all-ones kernel sums the two channels
    np.testing.assert_allclose(updates["batch_stats"]["bn"]["mean"], 0.1 * pre.mean(), rtol=1e-4)
    assert math.isclose(unit.bn_momentum, 0.9)
