"""Tests of cnnjax.data.augment against hand arithmetic and independent reference computations."""

from __future__ import annotations

import io
import math

import cv2
import ml_dtypes
import numpy as np
import pytest
from PIL import Image

from cnnjax.data import augment, jpeg_regions

# fb.resnet.torch datasets/imagenet.lua, typed in again so a typo in the module cannot pass.
EIGVAL = [0.2175, 0.0188, 0.0045]
EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def encode(pixels: np.ndarray, fmt: str = "JPEG", quality: int = 95) -> bytes:
    out = io.BytesIO()
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    img.save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise, uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def smooth(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [128 + 100 * np.sin(xx / width * 6), 128 + 100 * np.cos(yy / height * 5), xx * 0 + 90]
    return np.stack(planes, -1).astype(np.uint8)


# --- random-resized crop ------------------------------------------------------------------------


def test_train_output_shape_and_dtype():
    data = encode(textured(60, 80))
    out = augment.imagenet_train(data, np.random.default_rng(0), image_size=32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    lit = augment.imagenet_train(data, np.random.default_rng(0), image_size=32, lighting_sigma=0.1)
    assert lit.shape == (32, 32, 3) and lit.dtype == np.float32


@pytest.mark.parametrize("height,width", [(375, 500), (500, 333), (64, 64)])
def test_crop_box_area_and_aspect_within_ranges(height, width):
    rng = np.random.default_rng(1)
    area_lo, area_hi, aspect_lo, aspect_hi = 0.08, 1.0, 3 / 4, 4 / 3
    fallback = augment.center_crop_box(height, width, (aspect_lo, aspect_hi))
    fractions = []
    for _ in range(3000):
        box = augment.sample_crop_box(height, width, rng)
        top, left, h, w = box
        assert top >= 0 and top + h <= height and left >= 0 and left + w <= width
        if box == fallback and h * w == height * width:
            continue
        # w = round(sqrt(A r)), h = round(sqrt(A / r)): the unrounded sizes lie within +-0.5.
        area = height * width
        assert (w - 0.5) * (h - 0.5) <= area_hi * area
        assert (w + 0.5) * (h + 0.5) >= area_lo * area
        assert (w - 0.5) / (h + 0.5) <= aspect_hi and (w + 0.5) / (h - 0.5) >= aspect_lo
        fractions.append(h * w / area)
    # The draws cover the range rather than collapsing onto one size (for 500x333, aspect
    # >= 3/4 caps the area at 333 * 444 / (500 * 333) = 0.888).
    assert min(fractions) < 0.12 and max(fractions) > 0.85


def test_crop_box_falls_back_to_clamped_centre_crop():
    # A 10x1000 strip: no box with aspect <= 4/3 and area >= 8 % fits (h <= 10 forces w <= 13).
    box = augment.sample_crop_box(10, 1000, np.random.default_rng(0))
    w = round(10 * 4 / 3)
    assert box == (0, (1000 - w) // 2, 10, w) == (0, 493, 10, 13)
    # A tall strip clamps the other way: h = round(w / (3/4)).
    assert augment.center_crop_box(1000, 10, (3 / 4, 4 / 3)) == ((1000 - 13) // 2, 0, 13, 10)


def test_train_is_deterministic_in_the_rng():
    data = encode(textured(90, 120))
    first = augment.imagenet_train(data, np.random.default_rng(5), image_size=48)
    again = augment.imagenet_train(data, np.random.default_rng(5), image_size=48)
    other = augment.imagenet_train(data, np.random.default_rng(6), image_size=48)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_train_flip_is_a_mirror_image_with_probability_half():
    # Whole-image crop at the source size (area 1, aspect = 1): the output is the image or its
    # mirror, exactly (lossless PNG, same-size resize).
    pixels = textured(40, 40)
    data = encode(pixels, "PNG")
    flips = 0
    for seed in range(200):
        out = augment.imagenet_train(
            data, np.random.default_rng(seed), image_size=40, area_range=(1, 1), aspect_range=(1, 1)
        )
        if np.array_equal(out, pixels):
            continue
        np.testing.assert_array_equal(out, np.flip(pixels, axis=1))
        flips += 1
    assert 70 <= flips <= 130  # Binomial(200, 0.5): outside this range with p < 1e-4


def test_fused_scaled_decode_matches_full_decode_then_crop():
    # 1200x1600 source, 64-px output: the crop allows 1/4 or 1/8 DCT scaling. The result must
    # match decoding everything, cropping the same box and resizing.
    pixels = smooth(1200, 1600)
    data = encode(pixels)
    rng = np.random.default_rng(3)
    out = augment.imagenet_train(data, rng, image_size=64)
    replay = np.random.default_rng(3)  # documented draw order: crop box, then flip
    top, left, h, w = augment.sample_crop_box(1200, 1600, replay)
    flip = replay.random() < 0.5
    full = augment.decode_image(data)[top : top + h, left : left + w]
    expected = np.asarray(Image.fromarray(full).resize((64, 64), Image.Resampling.BILINEAR))
    if flip:
        expected = expected[:, ::-1]
    assert np.abs(out.astype(int) - expected).mean() < 1.5  # measured 0.3-0.55


def restart_jpeg(pixels: np.ndarray) -> bytes:
    """A JPEG with a restart marker after every MCU, as prepared datasets store them."""
    ok, buf = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("size", [32, 112])
def test_region_decode_gives_the_same_crops_as_whole_decode(size, indexed, monkeypatch):
    """Restart-marked JPEGs decode only the crop's MCUs; the views must not change at all.

    600x800 with 32- and 112-px outputs exercises every DCT reduction (1/8 ... 1) as well;
    the MCUs are found by scanning, or from the index that `prepare` stores.
    """
    data = restart_jpeg(textured(600, 800, seed=5))
    if indexed:
        data = jpeg_regions.add_mcu_index(data)
    assert jpeg_regions.restart_layout(data).indexed == indexed
    regions = [
        augment.imagenet_train(data, np.random.default_rng(s), image_size=size) for s in range(12)
    ]
    monkeypatch.setattr(jpeg_regions, "restart_layout", lambda _: None)  # force whole decodes
    for seed, region in enumerate(regions):
        whole = augment.imagenet_train(data, np.random.default_rng(seed), image_size=size)
        np.testing.assert_array_equal(region, whole)


def test_region_decode_touches_only_the_crop(monkeypatch):
    """The JPEG handed to the decoder is the MCU-aligned region around the crop box."""
    data = restart_jpeg(textured(320, 480, seed=6))
    decoded_sizes = []
    real = augment._simplejpeg_decode

    def spy(jpeg, height, width, *args, **kwargs):
        decoded_sizes.append((height, width))
        return real(jpeg, height, width, *args, **kwargs)

    monkeypatch.setattr(augment, "_simplejpeg_decode", spy)
    augment.imagenet_train(data, np.random.default_rng(7), image_size=64)
    top, left, h, w = augment.sample_crop_box(320, 480, np.random.default_rng(7))
    # 4:2:0 (OpenCV's default) has 16x16 MCUs
    region_h = math.ceil((top + h) / 16) * 16 - top // 16 * 16
    region_w = math.ceil((left + w) / 16) * 16 - left // 16 * 16
    assert decoded_sizes == [(region_h, region_w)]
    assert region_h * region_w < 320 * 480


@pytest.mark.parametrize("indexed", [False, True])
def test_damaged_restart_jpeg_is_decoded_whole_or_reported(indexed):
    """Garbage inside the MCU data never crashes: a view comes out or CorruptImageError."""
    data = restart_jpeg(textured(160, 160, seed=8))
    data = bytearray(jpeg_regions.add_mcu_index(data) if indexed else data)
    layout = jpeg_regions.restart_layout(bytes(data))
    for i in range(len(layout.starts) // 2, len(layout.starts) // 2 + 4):
        data[layout.starts[i] : layout.starts[i] + 6] = b"\x13\x37\xff\x00\xab\xcd"
    assert jpeg_regions.restart_layout(bytes(data)).indexed == indexed  # markers still intact
    outcomes = set()
    for seed in range(8):
        try:
            out = augment.imagenet_train(bytes(data), np.random.default_rng(seed), image_size=32)
            assert out.shape == (32, 32, 3)
            outcomes.add("view")
        except augment.CorruptImageError:
            outcomes.add("reported")
    assert outcomes


# --- PCA lighting -------------------------------------------------------------------------------


def test_lighting_offset_matches_hand_computation():
    alpha = np.random.default_rng(7).normal(0.0, 0.1, 3)
    expected = [255 * sum(EIGVEC[i][j] * alpha[j] * EIGVAL[j] for j in range(3)) for i in range(3)]
    got = augment.lighting_offset(np.random.default_rng(7), 0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_train_lighting_adds_a_constant_rgb_offset():
    data = encode(textured(60, 80))
    plain_rng = np.random.default_rng(11)
    plain = augment.imagenet_train(data, plain_rng, image_size=32).astype(np.float32)
    lit = augment.imagenet_train(data, np.random.default_rng(11), image_size=32, lighting_sigma=0.1)
    diff = lit - plain
    # Lighting draws last, so the plain run's generator is now where lighting drew alpha.
    alpha = plain_rng.normal(0.0, 0.1, 3)
    for c in range(3):
        offset = 255 * sum(EIGVEC[c][j] * alpha[j] * EIGVAL[j] for j in range(3))
        np.testing.assert_allclose(diff[..., c], offset, atol=1e-4)


# --- evaluation views ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,scale", [("PNG", 1), ("JPEG", 4)])
def test_eval_centre_square_lands_in_the_centre(fmt, scale):
    # Source 300x400 (x scale): a white square of side 60 centred on a black image, and a grey
    # marker square in the top-left of the centre crop's area. Shorter side 300 -> 80 and a
    # centre 64 crop see the central 240x240 of the source, so the white square occupies output
    # pixels [24, 40) and the marker (source rows/cols 40+30..40+60) pixels [8, 16).
    pixels = np.zeros((300 * scale, 400 * scale, 3), np.uint8)
    c_y, c_x, half = 150 * scale, 200 * scale, 30 * scale
    pixels[c_y - half : c_y + half, c_x - half : c_x + half] = 255
    y0, x0 = 30 * scale + 30 * scale, 80 * scale + 30 * scale
    pixels[y0 : y0 + 30 * scale, x0 : x0 + 30 * scale] = 128
    out = augment.imagenet_eval(encode(pixels, fmt), image_size=64, resize_size=80)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[26:38, 26:38].min() > 220
    assert out[10:14, 10:14].mean() == pytest.approx(128, abs=12)
    for ring in (out[:6], out[-20:], out[:, -20:], out[20:, :6]):
        assert ring.max() < 40


def test_ten_crop_corners_centre_and_flips():
    pixels = textured(90, 120, seed=2)
    data = encode(pixels, "PNG")
    crops = augment.imagenet_ten_crop(data, image_size=40, resize_size=60)
    assert crops.shape == (10, 40, 40, 3) and crops.dtype == np.uint8
    # torchvision Resize(60) of 120x90: shorter side 60, longer int(60 * 120 / 90) = 80.
    resized = np.asarray(Image.fromarray(pixels).resize((80, 60), Image.Resampling.BILINEAR))
    windows = [(0, 0), (0, 40), (20, 0), (20, 40), (10, 20)]  # TL, TR, BL, BR, centre
    for i, (top, left) in enumerate(windows):
        np.testing.assert_array_equal(crops[i], resized[top : top + 40, left : left + 40])
        np.testing.assert_array_equal(crops[i + 5], crops[i][:, ::-1])


def test_eval_rejects_crop_larger_than_resize():
    with pytest.raises(ValueError, match="resize_size"):
        augment.imagenet_eval(encode(textured(40, 40)), image_size=64, resize_size=32)


# --- CIFAR / MNIST ------------------------------------------------------------------------------


def test_cifar_crop_is_a_window_of_the_zero_padded_image():
    image = np.random.default_rng(0).integers(1, 256, (32, 32, 3), dtype=np.uint8)
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = image
    seen = set()
    for seed in range(40):
        out = augment.cifar_train(image, np.random.default_rng(seed))
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        matches = [
            (t, left, flip)
            for t in range(9)
            for left in range(9)
            for flip in (False, True)
            if np.array_equal(
                out,
                padded[t : t + 32, left : left + 32][:, ::-1]
                if flip
                else padded[t : t + 32, left : left + 32],
            )
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10 and {flip for _, _, flip in seen} == {False, True}


def test_pad_image_centres_with_zeros():
    image = np.full((28, 28, 1), 7, np.uint8)
    out = augment.pad_image(image, 32)
    assert out.shape == (32, 32, 1)
    np.testing.assert_array_equal(out[2:30, 2:30], image)
    assert out.sum() == image.sum()
    odd = augment.pad_image(np.ones((27, 28, 1), np.uint8), (32, 33))
    assert odd.shape == (32, 33, 1)
    # (32 - 27) = 5 rows: 2 above, 3 below; (33 - 28) = 5 columns: 2 left, 3 right.
    assert odd[2:29, 2:30].all() and odd.sum() == 27 * 28
    with pytest.raises(ValueError, match="at least the image size"):
        augment.pad_image(image, 20)


def test_normalize_against_formula():
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    got = augment.normalize(image, mean, std)
    for c in range(3):
        expected = (image[..., c].astype(np.float64) / 255 - mean[c]) / std[c]
        np.testing.assert_allclose(got[..., c], expected, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32
    bf16 = augment.normalize(image, mean, std, dtype=ml_dtypes.bfloat16)
    assert bf16.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(bf16.astype(np.float32), got, rtol=1e-2, atol=1e-2)
    gray = augment.normalize(image[..., :1], [0.5], [0.25])
    np.testing.assert_allclose(gray[..., 0], (image[..., 0] / 255 - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        augment.normalize(image, [0.5, 0.5], [1.0, 1.0])


# --- decoding -----------------------------------------------------------------------------------


def test_decode_keeps_grayscale_single_channel():
    gray = textured(30, 40)[..., :1]
    for fmt in ("JPEG", "PNG"):
        out = augment.decode_image(encode(gray, fmt))
        assert out.shape == (30, 40, 1) and out.dtype == np.uint8
    assert augment.imagenet_train(encode(gray), np.random.default_rng(0), image_size=16).shape == (
        16,
        16,
        3,
    )
    np.testing.assert_array_equal(augment.decode_image(encode(gray, "PNG")), gray)


def test_decode_cmyk_jpeg_goes_to_rgb():
    rgb = smooth(30, 40)
    out = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(out, "JPEG", quality=95)
    decoded = augment.decode_image(out.getvalue())
    assert decoded.shape == (30, 40, 3)
    assert np.abs(decoded.astype(int) - rgb).mean() < 12


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda jpeg: jpeg[: len(jpeg) // 2],  # truncated mid-scan
        lambda jpeg: jpeg[:200],  # truncated in the headers
        lambda jpeg: b"\x00not an image at all",
        lambda jpeg: b"",
    ],
)
def test_corrupt_images_raise(make_bad):
    bad = make_bad(encode(textured(120, 160)))
    for fn in (
        augment.decode_image,
        lambda b: augment.imagenet_train(b, np.random.default_rng(0), image_size=32),
        lambda b: augment.imagenet_eval(b, image_size=32, resize_size=40),
        lambda b: augment.imagenet_ten_crop(b, image_size=32, resize_size=40),
    ):
        with pytest.raises(augment.CorruptImageError, match="cannot decode image"):
            fn(bad)
    assert issubclass(augment.CorruptImageError, ValueError)


def test_truncated_png_raises():
    png = encode(textured(64, 64), "PNG")
    with pytest.raises(augment.CorruptImageError):
        augment.decode_image(png[: len(png) * 2 // 3])


def test_bad_ranges_raise():
    data = encode(textured(20, 20))
    with pytest.raises(ValueError, match="area_range"):
        augment.imagenet_train(data, np.random.default_rng(0), area_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="aspect_range"):
        augment.imagenet_train(data, np.random.default_rng(0), aspect_range=(0, 1))
    with pytest.raises(ValueError, match="image_size"):
        augment.imagenet_train(data, np.random.default_rng(0), image_size=0)


def test_dct_scale_is_largest_power_of_two_allowed():
    assert [augment._dct_scale(a) for a in (0.5, 1.0, 1.99, 2.0, 3.9, 4.0, 7.9, 8.0, 30.0)] == [
        1,
        1,
        1,
        2,
        2,
        4,
        4,
        8,
        8,
    ]
    assert math.isclose(sum(EIGVAL), float(augment.IMAGENET_PCA_EIGVAL.sum()))
