"""Tests for cnnjax.ops against hand arithmetic and naive NumPy loops written here."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops

# ----------------------------------------------------------------------------------------------
# Independent reference implementations (plain loops, float64)
# ----------------------------------------------------------------------------------------------


def naive_correlate(x, k, stride=1, pads=((0, 0), (0, 0))):
    """x (H, W, C), k (kh, kw, C, K) -> (H', W', K) by looping over output positions."""
    x = np.pad(np.asarray(x, np.float64), (*pads, (0, 0)))
    k = np.asarray(k, np.float64)
    kh, kw, _, n_out = k.shape
    out_h = (x.shape[0] - kh) // stride + 1
    out_w = (x.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w, n_out))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            for o in range(n_out):
                out[i, j, o] = np.sum(patch * k[:, :, :, o])
    return out


def naive_pool(x, window, stride, pads, reduce):
    """(H, W) pooling over the real pixels of each (possibly partial) window; pads are (lo, hi)."""
    x = np.asarray(x, np.float64)
    (top, bottom), (left, right) = pads
    out_h = (x.shape[0] + top + bottom - window) // stride + 1
    out_w = (x.shape[1] + left + right - window) // stride + 1
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            r0, c0 = i * stride - top, j * stride - left
            patch = x[max(r0, 0) : r0 + window, max(c0, 0) : c0 + window]
            out[i, j] = reduce(patch)
    return out


def naive_lrn(x, size, k, alpha, beta):
    """Krizhevsky et al. 2012 Sec. 3.3, channel window clipped at both ends."""
    x = np.asarray(x, np.float64)
    n_channels = x.shape[-1]
    out = np.empty_like(x)
    for i in range(n_channels):
        lo, hi = max(0, i - size // 2), min(n_channels - 1, i + (size - 1) // 2)
        total = np.sum(x[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = x[..., i] / (k + alpha * total) ** beta
    return out


RNG = np.random.default_rng(0)

# ----------------------------------------------------------------------------------------------
# output_size and conv_params
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, f, stride, padding, expected",
    [
        (227, 11, 4, 0, 55),  # AlexNet conv1
        (7, 3, 1, 0, 5),
        (7, 3, 2, 0, 3),
        (32, 5, 1, 2, 32),
        (224, 3, 1, 1, 224),  # VGG conv3
        (7, 3, 1, "VALID", 5),
        (7, 3, 2, "same", 4),  # ceil(7 / 2)
        (224, 3, 1, "Same", 224),
    ],
)
def test_output_size_classic_numbers(n, f, stride, padding, expected):
    assert ops.output_size(n, f, stride, padding) == expected


def test_output_size_error_quotes_the_arithmetic():
    with pytest.raises(ValueError, match=r"\(7 - 3 \+ 2·0\)/3 \+ 1 = 2\.33") as info:
        ops.output_size(7, 3, 3)
    assert "3×3 filter at stride 3" in str(info.value)
    assert "7×7 input" in str(info.value)


def test_output_size_below_one_is_an_error():
    with pytest.raises(ops.FilterDoesNotFitError, match=r"\(3 - 7 \+ 2·1\)/1 \+ 1 = -1"):
        ops.output_size(3, 7, 1, 1)


@pytest.mark.parametrize("bad", [dict(stride=0), dict(padding=-1), dict(padding="full")])
def test_output_size_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match="must be"):
        ops.output_size(7, 3, **bad)


def test_conv_params():
    assert ops.conv_params(11, 3, 96) == 11 * 11 * 3 * 96 + 96 == 34_944  # AlexNet conv1
    assert ops.conv_params(3, 3, 64) == 1_792  # VGG conv3-64 on RGB
    assert ops.conv_params(3, 3, 64, bias=False) == 1_728
    assert ops.conv_params((1, 7), 192, 192, bias=False) == 7 * 192 * 192
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        ops.conv_params(3, 0, 64)
    with pytest.raises(ValueError, match=r"\(kh, kw\) pair"):
        ops.conv_params((3, 3, 3), 3, 64)


# ----------------------------------------------------------------------------------------------
# conv2d / convolve2d
# ----------------------------------------------------------------------------------------------


def test_conv2d_hand_computed_3x3():
    # The UFLDL "convolved feature" example: 5×5 binary image, 3×3 X-shaped kernel.
    image = np.array(
        [
            [1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1],
            [0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0],
        ]
    )
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    expected = np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    out = ops.conv2d(image, kernel)
    assert out.dtype == jnp.float32  # integer inputs compute in float32
    np.testing.assert_array_equal(out, expected)


def test_conv2d_and_convolve2d_differ_on_asymmetric_kernel():
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    kernel = np.array([[1, 2], [3, 4]], np.float32)
    # by hand: out[0, 0] = 1·1 + 2·2 + 3·4 + 4·5 = 37, and so on
    np.testing.assert_array_equal(ops.conv2d(x, kernel), [[37, 47], [67, 77]])
    # flipped kernel [[4, 3], [2, 1]]: out[0, 0] = 4·1 + 3·2 + 2·4 + 1·5 = 23
    np.testing.assert_array_equal(ops.convolve2d(x, kernel), [[23, 33], [53, 63]])
    np.testing.assert_array_equal(ops.convolve2d(x, kernel), ops.conv2d(x, kernel[::-1, ::-1]))


def test_convolve2d_flips_only_the_spatial_axes():
    x = RNG.normal(size=(6, 6, 2))
    kernel = RNG.normal(size=(3, 2, 2, 3))
    np.testing.assert_allclose(
        ops.convolve2d(x, kernel, padding=1),
        naive_correlate(x, kernel[::-1, ::-1], pads=((1, 1), (1, 1))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_conv2d_sums_over_depth():
    x = RNG.normal(size=(5, 6, 3))
    kernel = RNG.normal(size=(3, 3, 3))
    out = ops.conv2d(x, kernel)
    assert out.shape == (3, 4)
    per_channel = sum(np.asarray(ops.conv2d(x[..., c], kernel[..., c])) for c in range(3))
    np.testing.assert_allclose(out, per_channel, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, naive_correlate(x, kernel[..., None])[..., 0], rtol=1e-5)


def test_conv2d_k_output_maps_with_stride_and_padding():
    x = RNG.normal(size=(7, 9, 3))
    kernel = RNG.normal(size=(3, 3, 3, 4))
    out = ops.conv2d(x, kernel, stride=2, padding=1)
    # (7 - 3 + 2)/2 + 1 = 4, (9 - 3 + 2)/2 + 1 = 5
    assert out.shape == (4, 5, 4)
    np.testing.assert_allclose(
        out, naive_correlate(x, kernel, 2, ((1, 1), (1, 1))), rtol=1e-5, atol=1e-5
    )


def test_conv2d_zero_padding_by_hand():
    out = ops.conv2d(np.ones((3, 3)), np.ones((3, 3)), padding=1)
    # each output counts the real pixels under the window: corners 4, edges 6, centre 9
    np.testing.assert_array_equal(out, [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def test_conv2d_2d_kernel_on_channels_is_per_channel():
    x = RNG.normal(size=(5, 5, 3))
    kernel = RNG.normal(size=(3, 3))
    out = ops.conv2d(x, kernel)
    assert out.shape == (3, 3, 3)
    for c in range(3):
        np.testing.assert_allclose(
            out[..., c], naive_correlate(x[..., c : c + 1], kernel[:, :, None, None])[..., 0],
            rtol=1e-5, atol=1e-5,
        )


@pytest.mark.parametrize("size, f, stride", [(6, 3, 1), (7, 3, 2), (4, 2, 1), (8, 5, 3)])
def test_conv2d_same_keeps_size(size, f, stride):
    x = RNG.normal(size=(size, size))
    kernel = RNG.normal(size=(f, f))
    out = ops.conv2d(x, kernel, stride=stride, padding="SAME")
    expected_n = math.ceil(size / stride)
    assert out.shape == (expected_n, expected_n)
    # total padding (out - 1)·s + f - n, the odd pixel at the bottom/right
    total = max((expected_n - 1) * stride + f - size, 0)
    pads = ((total // 2, total - total // 2),) * 2
    reference = naive_correlate(x[..., None], kernel[:, :, None, None], stride, pads)[..., 0]
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_conv2d_bfloat16():
    x = jnp.asarray(RNG.normal(size=(6, 6, 2)), jnp.bfloat16)
    kernel = jnp.asarray(RNG.normal(size=(3, 3, 2, 2)), jnp.bfloat16)
    out = ops.conv2d(x, kernel)
    assert out.dtype == jnp.bfloat16
    reference = naive_correlate(np.asarray(x, np.float64), np.asarray(kernel, np.float64))
    np.testing.assert_allclose(np.asarray(out, np.float64), reference, rtol=0.05, atol=0.1)


def test_conv2d_filter_that_does_not_fit():
    with pytest.raises(ops.FilterDoesNotFitError, match=r"\(7 - 3 \+ 2·0\)/3 \+ 1 = 2\.33"):
        ops.conv2d(np.ones((7, 7)), np.ones((3, 3)), stride=3)
    # height (7 - 3)/2 + 1 = 3 fits; width (8 - 5)/2 + 1 = 2.5 does not
    with pytest.raises(ValueError, match=r"3×5 filter .* 7×8 input along its width: \(8 - 5"):
        ops.conv2d(np.ones((7, 8)), np.ones((3, 5)), stride=2)
    with pytest.raises(ValueError, match="at least 1"):
        ops.conv2d(np.ones((2, 2)), np.ones((3, 3)))


def test_conv2d_bad_shapes():
    with pytest.raises(ValueError, match="spans 2 channels but the input has 3"):
        ops.conv2d(np.ones((5, 5, 3)), np.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="without a batch axis"):
        ops.conv2d(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="kernel must be"):
        ops.conv2d(np.ones((5, 5)), np.ones(3))
    with pytest.raises(ValueError, match="padding must be"):
        ops.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding="full")


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------


def test_pools_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(ops.max_pool(x), [[5, 7], [13, 15]])
    # (0 + 1 + 4 + 5)/4 = 2.5, ...
    np.testing.assert_array_equal(ops.avg_pool(x), [[2.5, 4.5], [10.5, 12.5]])


def test_pools_same_keep_partial_windows():
    x = np.arange(25, dtype=np.float32).reshape(5, 5)
    # valid drops the last row and column
    np.testing.assert_array_equal(ops.max_pool(x), [[6, 8], [16, 18]])
    # same: ceil(5/2) = 3; the last row/column windows are 2×1, 1×2 and 1×1
    np.testing.assert_array_equal(
        ops.max_pool(x, padding="same"), [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    )
    # partial windows average only their real pixels: (4 + 9)/2 = 6.5, (20 + 21)/2 = 20.5
    np.testing.assert_array_equal(
        ops.avg_pool(x, padding="SAME"), [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]]
    )


@pytest.mark.parametrize("size, window, stride", [(7, 3, 2), (6, 3, 1), (8, 2, 3), (5, 5, 2)])
def test_pools_same_against_naive(size, window, stride):
    x = RNG.normal(size=(size, size))
    out_n = math.ceil(size / stride)
    total = max((out_n - 1) * stride + window - size, 0)
    pads = ((total // 2, total - total // 2),) * 2
    np.testing.assert_allclose(
        ops.max_pool(x, window, stride, "same"), naive_pool(x, window, stride, pads, np.max),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        ops.avg_pool(x, window, stride, "same"), naive_pool(x, window, stride, pads, np.mean),
        rtol=1e-5, atol=1e-6,
    )


def test_pools_int_padding():
    # avg: the added zeros count: corner window holds 1 real pixel of 4 -> 0.25
    np.testing.assert_array_equal(
        ops.avg_pool(np.ones((3, 3)), 2, 2, padding=1), [[0.25, 0.5], [0.5, 1.0]]
    )
    # max: padding never wins, even over negative values
    np.testing.assert_array_equal(ops.max_pool(-np.ones((3, 3)), 2, 2, padding=1), -np.ones((2, 2)))


def test_pools_per_channel_and_dtypes():
    x = RNG.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    out_max, out_avg = ops.max_pool(x, 3, 3), ops.avg_pool(x, 3, 3)
    assert out_max.dtype == jnp.uint8 and out_max.shape == (2, 2, 3)
    assert out_avg.dtype == jnp.float32 and out_avg.shape == (2, 2, 3)
    for c in range(3):
        pads = ((0, 0), (0, 0))
        np.testing.assert_array_equal(out_max[..., c], naive_pool(x[..., c], 3, 3, pads, np.max))
        np.testing.assert_allclose(
            out_avg[..., c], naive_pool(x[..., c], 3, 3, pads, np.mean), rtol=1e-6
        )


def test_pool_errors():
    with pytest.raises(ValueError, match=r"3 \+ 2·0 < 4"):
        ops.max_pool(np.ones((3, 3)), window=4)
    with pytest.raises(ValueError, match="more than half"):
        ops.avg_pool(np.ones((6, 6)), window=2, padding=2)
    with pytest.raises(ValueError, match="window must be a positive int"):
        ops.max_pool(np.ones((4, 4)), window=0)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------

POINTS = np.array([-3.0, -0.5, 0.0, 0.75, 2.0], np.float32)  # exact in float32


def test_pointwise_activations_match_their_formulas():
    sig = [1 / (1 + math.exp(-v)) for v in POINTS]
    np.testing.assert_allclose(ops.sigmoid(POINTS), sig, rtol=1e-6)
    np.testing.assert_allclose(ops.tanh(POINTS), [math.tanh(v) for v in POINTS], rtol=1e-6)
    np.testing.assert_array_equal(ops.relu(POINTS), [0, 0, 0, 0.75, 2.0])
    np.testing.assert_allclose(ops.leaky_relu(POINTS), [-0.03, -0.005, 0, 0.75, 2.0], rtol=1e-6)
    np.testing.assert_allclose(
        ops.leaky_relu(POINTS, alpha=0.2), [-0.6, -0.1, 0, 0.75, 2.0], rtol=1e-6
    )
    elu = [v if v > 0 else 1.5 * (math.exp(v) - 1) for v in POINTS]
    np.testing.assert_allclose(ops.elu(POINTS, alpha=1.5), elu, rtol=1e-6)


def test_prelu_per_channel():
    x = np.array([[-1.0, -2.0, 3.0], [4.0, -5.0, -6.0]], np.float32)
    alpha = np.array([0.1, 0.2, 0.3], np.float32)
    np.testing.assert_allclose(
        ops.prelu(x, alpha), [[-0.1, -0.4, 3.0], [4.0, -1.0, -1.8]], rtol=1e-6
    )
    np.testing.assert_allclose(ops.prelu(x, 0.25), [[-0.25, -0.5, 3], [4, -1.25, -1.5]])


def test_maxout_groups_consecutive_channels():
    x = np.array([[1.0, 5.0, 2.0, 3.0, 0.0, 4.0]])
    np.testing.assert_array_equal(ops.maxout(x, 3), [[5.0, 4.0]])  # max(1,5,2), max(3,0,4)
    np.testing.assert_array_equal(ops.maxout(x, 2), [[5.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match="choose pieces that divides 6"):
        ops.maxout(x, 4)
    with pytest.raises(ValueError, match="positive int"):
        ops.maxout(x, 0)


@pytest.mark.parametrize("size", [5, 3, 4])
def test_local_response_norm_against_naive_loop(size):
    x = RNG.normal(size=(2, 3, 7)).astype(np.float32) * 3
    # a large alpha so the clipped windows at the channel ends visibly matter
    args = dict(size=size, k=2.0, alpha=0.3, beta=0.75)
    np.testing.assert_allclose(
        ops.local_response_norm(x, **args), naive_lrn(x, **args), rtol=1e-5, atol=1e-6
    )


def test_local_response_norm_paper_defaults_by_hand():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    # channel 0 sees channels 0..2 (clipped): 1 / (2 + 1e-4·14)^0.75
    expected0 = 1.0 / (2 + 1e-4 * 14) ** 0.75
    np.testing.assert_allclose(ops.local_response_norm(x)[0], expected0, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# classic image kernels
# ----------------------------------------------------------------------------------------------


def test_kernel_table():
    np.testing.assert_allclose(ops.KERNELS["box_blur"], np.full((3, 3), 1 / 9), rtol=1e-6)
    assert ops.KERNELS["box_blur"].sum() == pytest.approx(1.0)
    binomial = np.array([math.comb(4, i) for i in range(5)], np.float64)  # 1 4 6 4 1
    gaussian = ops.KERNELS["gaussian"]
    assert gaussian.shape == (5, 5)
    assert gaussian.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(gaussian, np.outer(binomial, binomial) / 256, rtol=1e-6)
    assert ops.KERNELS["smooth"].sum() == pytest.approx(1.0)
    assert ops.KERNELS["sharpen"].sum() == pytest.approx(1.0)
    for name in ("outline", "sobel_top", "sobel_bottom", "sobel_left", "sobel_right"):
        assert ops.KERNELS[name].sum() == 0, name
    # setosa.io values quoted in the brief
    np.testing.assert_array_equal(ops.KERNELS["emboss"], [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    np.testing.assert_array_equal(ops.KERNELS["sobel_left"], [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(ops.KERNELS["sobel_top"], ops.KERNELS["sobel_left"].T)
    with pytest.raises(ValueError):
        ops.KERNELS["box_blur"][0, 0] = 1.0  # read-only


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3)])
def test_apply_kernel_uint8_keeps_dtype_and_shape(shape):
    image = RNG.integers(0, 256, size=shape).astype(np.uint8)
    for name in ops.KERNELS:
        out = ops.apply_kernel(image, name)
        assert out.dtype == jnp.uint8 and out.shape == shape, name
    np.testing.assert_array_equal(ops.apply_kernel(image, "identity"), image)


def test_box_blur_keeps_a_constant_image_constant():
    image = np.full((6, 8, 3), 90, np.uint8)
    out = np.asarray(ops.apply_kernel(image, "box_blur"))
    np.testing.assert_array_equal(out[1:-1, 1:-1], 90)  # interior
    np.testing.assert_array_equal(out, 90)  # and the border, thanks to edge replication


def test_apply_kernel_rounds_uint8():
    image = np.zeros((3, 3), np.uint8)
    image[1, 1] = 14
    assert int(ops.apply_kernel(image, "box_blur")[1, 1]) == 2  # 14/9 = 1.56 rounds to 2


def test_sobel_responds_only_at_a_vertical_edge():
    image = np.zeros((5, 8), np.float32)
    image[:, 4:] = 1.0  # dark left half, bright right half: edge between columns 3 and 4
    left = np.asarray(ops.apply_kernel(image, "sobel_left"))
    # columns 3 and 4 see the step: -(1 + 2 + 1)·1 = -4 from the kernel's right column
    expected = np.zeros((5, 8))
    expected[:, 3:5] = -4.0
    np.testing.assert_array_equal(left, expected)
    np.testing.assert_array_equal(ops.apply_kernel(image, "sobel_top"), np.zeros((5, 8)))
    # uint8 clips: +4·255 -> 255, -4·255 -> 0
    image_u8 = (image * 255).astype(np.uint8)
    right = np.asarray(ops.apply_kernel(image_u8, "sobel_right"))
    assert set(np.unique(right[:, 3:5])) == {255} and right[:, [0, 1, 2, 5, 6, 7]].max() == 0
    np.testing.assert_array_equal(ops.apply_kernel(image_u8, "sobel_left"), 0)


def test_apply_kernel_custom_kernel_matches_naive():
    image = RNG.normal(size=(5, 6, 2)).astype(np.float32)
    kernel = RNG.normal(size=(3, 3))
    out = ops.apply_kernel(image, kernel)
    assert out.dtype == jnp.float32 and out.shape == image.shape
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    for c in range(2):
        reference = naive_correlate(padded[..., c : c + 1], kernel[:, :, None, None])[..., 0]
        np.testing.assert_allclose(out[..., c], reference, rtol=1e-5, atol=1e-5)


def test_apply_kernel_errors():
    with pytest.raises(ValueError, match="unknown kernel 'blurry'.*box_blur.*sobel_left"):
        ops.apply_kernel(np.zeros((4, 4), np.uint8), "blurry")
    with pytest.raises(ValueError, match="uint8 or floating"):
        ops.apply_kernel(np.zeros((4, 4), np.int32), "box_blur")
    with pytest.raises(ValueError, match="2-D"):
        ops.apply_kernel(np.zeros((4, 4), np.uint8), np.ones((3, 3, 1)))
