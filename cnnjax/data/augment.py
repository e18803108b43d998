"""Per-example image decoding and augmentation (NumPy, simplejpeg, OpenCV), run in grain workers.

| pipeline            | steps                                                                   |
|---------------------|-------------------------------------------------------------------------|
| `imagenet_train`    | random-resized crop (area 8-100 %, log-uniform aspect 3/4-4/3) -> S x S |
|                     | (bilinear), horizontal flip p=0.5, optional AlexNet PCA lighting (0.1)  |
| `imagenet_eval`     | resize shorter side to R (256, antialiased bilinear), centre crop S     |
| `imagenet_ten_crop` | resize shorter side to R, 4 corners + centre, and their mirror images   |
| `cifar_train`       | 4-px zero pad, random 32 x 32 crop, flip                                |
| `pad_image`         | centred zero pad (MNIST 28 -> 32 for LeNet-5)                           |
| `normalize`         | (x / 255 - mean) / std per channel                                      |

Why these libraries (per-step costs in docs/benchmarks.md, from benchmarks/input_pipeline.py):
entropy decoding of the JPEG is most of the cost. Prepared ImageNet-style datasets store JPEGs
with a restart marker after every MCU (jpeg_regions, a lossless transcode), so a training crop
decodes only the MCUs that cover it: ~1.6x faster, with the same pixels. simplejpeg
(libjpeg-turbo's TurboJPEG API, bundled in its wheel) exposes libjpeg's fast IDCT and plain
chroma upsampling and its DCT scaling (1/2, 1/4, 1/8), used whenever the crop still covers the
output at >= 1 source pixel per output pixel, so the resize that follows is always a < 2x
reduction; together ~10 % faster than Pillow.
OpenCV's SIMD bilinear resize of the crop alone is ~5x faster than Pillow's. Non-JPEG inputs
(PNG, CMYK JPEGs) and JPEGs that libjpeg-turbo flags as damaged go through Pillow, which still
raises on truncation.

Every random choice comes from the `rng` argument (grain's per-example generator), so a
pipeline is a deterministic function of (seed, index) and resumes exactly.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageFile

from cnnjax.data import jpeg_regions

# Truncated files must raise, never decode to a partially grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# grain parallelises over processes; OpenCV's own thread pool would only oversubscribe the cores.
cv2.setNumThreads(1)

# AlexNet PCA lighting: eigen-decomposition of the ImageNet RGB covariance (Krizhevsky et al.
# 2012, sec. 4.1), with the values on the [0, 1] pixel scale as published in fb.resnet.torch
# (datasets/imagenet.lua, `pca.eigval` / `pca.eigvec`; columns of EIGVEC are the eigenvectors).
IMAGENET_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float64)
IMAGENET_PCA_EIGVEC = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ],
    dtype=np.float64,
)

Box = tuple[int, int, int, int]  # (top, left, height, width) in source pixels
_DCT_SCALES = (8, 4, 2, 1)  # the power-of-two reductions libjpeg-turbo does with fast SIMD IDCTs


class CorruptImageError(ValueError):
    """The image bytes cannot be decoded (corrupt, truncated or not an image)."""


def _corrupt(data: bytes, error: Exception) -> CorruptImageError:
    return CorruptImageError(
        f"cannot decode image ({len(data)} bytes): {error}; skip or re-encode this example"
    )


def _pillow_open(data: bytes) -> Image.Image:
    """Parse an image header with Pillow; raise CorruptImageError when it is not an image."""
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _corrupt(data, e) from e


def _pillow_decode(data: bytes, scale: int, gray: bool = False) -> np.ndarray:
    """Decode with Pillow (JPEG DCT-scaled by 1/scale via draft); RGB, or (H, W, 1) when gray."""
    img = _pillow_open(data)
    width, height = img.size
    if scale > 1 and img.format == "JPEG":
        img.draft("RGB", (max(1, width // scale), max(1, height // scale)))
    try:
        img.load()
        if gray:
            return np.asarray(img.convert("L"))[:, :, None]
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _corrupt(data, e) from e


def _image_size(data: bytes) -> tuple[int, int, str]:
    """(height, width, colour space) from the header: 'RGB'/'Gray' for plain JPEGs, else 'other'."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        width, height = _pillow_open(data).size
        return height, width, "other"
    if colorspace in ("CMYK", "YCCK"):  # Pillow handles Adobe's inverted CMYK
        return height, width, "other"
    return height, width, "Gray" if colorspace == "Gray" else "RGB"


def _dct_scale(allowed: float) -> int:
    """Largest libjpeg power-of-two reduction not exceeding `allowed` (>= 1)."""
    return next(s for s in _DCT_SCALES if s <= max(allowed, 1.0))


def _simplejpeg_decode(data: bytes, height: int, width: int, scale: int, fast: bool) -> np.ndarray:
    """libjpeg-turbo decode reduced by 1/scale (ceil(height / scale) rows); ValueError if damaged.

    fast = libjpeg's fast integer IDCT (JDCT_IFAST) and plain (non-"fancy") chroma upsampling,
    ~5 % faster for ~1 LSB of accuracy; only the training crops use it, where the augmentation
    swamps such differences.
    """
    return simplejpeg.decode_jpeg(
        data,
        colorspace="RGB",
        fastdct=fast,
        fastupsample=fast,
        min_height=-(-height // scale),
        min_width=-(-width // scale),
    )


def _decode(
    data: bytes, kind: str, height: int, width: int, scale: int = 1, fast: bool = False
) -> np.ndarray:
    """Decode to uint8 RGB, reduced by 1/scale (see _simplejpeg_decode for `fast`)."""
    if kind != "other":
        try:
            return _simplejpeg_decode(data, height, width, scale, fast)
        except ValueError:
            pass  # damaged: Pillow tolerates recoverable damage and raises on truncation
    return _pillow_decode(data, scale)


def _decode_around(
    data: bytes, kind: str, height: int, width: int, box: Box, scale: int
) -> tuple[np.ndarray, int, int, int]:
    """Decode (fast, reduced by 1/scale) a part of the image holding `box`.

    With a restart marker after every MCU (prepared datasets, see jpeg_regions) only the MCUs
    covering the box are decoded; otherwise the whole image. The pixels are identical either
    way. Returns them, the part's top-left corner in source pixels, and the reduction used
    (1 for formats that decode only at full size, e.g. PNG).
    """
    layout = jpeg_regions.restart_layout(data) if kind != "other" else None
    if layout is not None:
        region = jpeg_regions.crop_jpeg(data, layout, *box)
        try:
            pixels = _simplejpeg_decode(region.jpeg, region.height, region.width, scale, True)
            return pixels, region.top, region.left, scale
        except ValueError:
            pass  # damaged entropy data: the whole-image path below handles (or reports) it
    pixels = _decode(data, kind, height, width, scale, fast=True)
    return pixels, 0, 0, (scale if pixels.shape[0] < height or pixels.shape[1] < width else 1)


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to uint8 (H, W, C): RGB, or 1 channel for grayscale sources."""
    height, width, kind = _image_size(data)
    if kind == "Gray":
        try:
            return simplejpeg.decode_jpeg(data, colorspace="GRAY")
        except ValueError:
            return _pillow_decode(data, 1, gray=True)
    if kind == "other":
        img = _pillow_open(data)
        if img.mode in ("L", "1", "I;16", "I", "F"):
            return _pillow_decode(data, 1, gray=True)
    return _decode(data, kind, height, width)


def sample_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Box:
    """Inception-style random crop box (top, left, h, w) of a height x width image.

    Area fraction ~ U(area_range), aspect w/h log-uniform in aspect_range, `attempts` tries
    (Szegedy et al. 2015, sec. 6; torchvision RandomResizedCrop), then a centre crop of the
    whole image with its aspect clamped into aspect_range.
    """
    area = height * width
    log_lo, log_hi = math.log(aspect_range[0]), math.log(aspect_range[1])
    for _ in range(attempts):
        target_area = area * rng.uniform(area_range[0], area_range[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return center_crop_box(height, width, aspect_range)


def center_crop_box(height: int, width: int, aspect_range: tuple[float, float]) -> Box:
    """Largest centred box whose aspect w/h is clamped into aspect_range (the fallback crop)."""
    aspect = width / height
    if aspect < aspect_range[0]:
        w, h = width, int(round(width / aspect_range[0]))
    elif aspect > aspect_range[1]:
        w, h = int(round(height * aspect_range[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_ranges(area_range: Sequence[float], aspect_range: Sequence[float]) -> None:
    lo, hi = area_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got {tuple(area_range)}")
    lo, hi = aspect_range
    if not 0 < lo <= hi:
        raise ValueError(f"aspect_range must satisfy 0 < lo <= hi, got {tuple(aspect_range)}")


def lighting_offset(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """AlexNet PCA lighting: RGB offset eigvec @ (alpha * eigval), alpha ~ N(0, sigma^2), on 0-255.

    fb.resnet.torch adds this to [0, 1] images; we scale it by 255 for 0-255 pixels.
    """
    alpha = rng.normal(0.0, sigma, size=3)
    return (255.0 * IMAGENET_PCA_EIGVEC @ (alpha * IMAGENET_PCA_EIGVAL)).astype(np.float32)


def imagenet_train(
    image_bytes: bytes,
    rng: np.random.Generator,
    *,
    image_size: int = 224,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    lighting_sigma: float = 0.0,
) -> np.ndarray:
    """ImageNet training view: random-resized crop, flip p=0.5, optional PCA lighting.

    Returns (image_size, image_size, 3) uint8, or float32 on the 0-255 scale with lighting on.
    Random draws, in order: crop box, flip, lighting alpha.
    """
    _check_size("image_size", image_size)
    _check_ranges(area_range, aspect_range)
    if lighting_sigma < 0:
        raise ValueError(f"lighting_sigma must be >= 0, got {lighting_sigma}")
    height, width, kind = _image_size(image_bytes)
    top, left, h, w = sample_crop_box(
        height, width, rng, area_range=area_range, aspect_range=aspect_range
    )
    flip = rng.random() < 0.5
    scale = _dct_scale(min(h, w) / image_size)
    pixels, part_top, part_left, scale = _decode_around(
        image_bytes, kind, height, width, (top, left, h, w), scale
    )
    # The crop box on the decoded grid: decoded pixel i covers source pixels
    # [i*scale, (i+1)*scale) of the part, whose offsets are whole MCUs (multiples of scale).
    y0, x0 = (top - part_top) // scale, (left - part_left) // scale
    y1 = min(pixels.shape[0], math.ceil((top - part_top + h) / scale))
    x1 = min(pixels.shape[1], math.ceil((left - part_left + w) / scale))
    out = cv2.resize(pixels[y0:y1, x0:x1], (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    if flip:
        out = cv2.flip(out, 1)
    if lighting_sigma == 0:
        return out
    return out.astype(np.float32) + lighting_offset(rng, lighting_sigma)


def resize_shorter_side(pixels: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize (Pillow) of an (H, W, 3) image so its shorter side is `size`.

    The longer side becomes int(size * long / short), as torchvision's Resize(int) does.
    """
    height, width = pixels.shape[:2]
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_h, new_w) == (height, width):
        return pixels
    resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def _decode_shorter_side(image_bytes: bytes, resize_size: int) -> np.ndarray:
    """Decode at full size, then resize: the eval view of torchvision's PIL path, bit for bit.

    No DCT-reduced decode here (training crops use it): a reduced decode followed by a small
    resize is another low-pass filter: up to 120 levels (mean ~10) off on large images
    (docs/preprocessing.md), and pretrained weights are scored as they were evaluated.
    """
    height, width, kind = _image_size(image_bytes)
    pixels = _decode(image_bytes, kind, height, width)
    return resize_shorter_side(pixels, resize_size)


def _check_eval_sizes(image_size: int, resize_size: int) -> None:
    _check_size("image_size", image_size)
    _check_size("resize_size", resize_size)
    if image_size > resize_size:
        raise ValueError(
            f"image_size ({image_size}) must be <= resize_size ({resize_size}); "
            "raise resize_size or lower image_size"
        )


def imagenet_eval(
    image_bytes: bytes, *, image_size: int = 224, resize_size: int = 256
) -> np.ndarray:
    """ImageNet evaluation view: shorter side to resize_size, centre crop image_size; uint8."""
    _check_eval_sizes(image_size, resize_size)
    pixels = _decode_shorter_side(image_bytes, resize_size)
    height, width = pixels.shape[:2]
    top = int(round((height - image_size) / 2))
    left = int(round((width - image_size) / 2))
    return np.ascontiguousarray(pixels[top : top + image_size, left : left + image_size])


def imagenet_ten_crop(
    image_bytes: bytes, *, image_size: int = 224, resize_size: int = 256
) -> np.ndarray:
    """AlexNet/ZFNet test-time 10-crop, uint8 (10, S, S, 3) after resizing the shorter side.

    Order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre; 5-9 are the
    horizontal flips of 0-4 (torchvision TenCrop order).
    """
    _check_eval_sizes(image_size, resize_size)
    pixels = _decode_shorter_side(image_bytes, resize_size)
    height, width = pixels.shape[:2]
    s = image_size
    top = int(round((height - s) / 2))
    left = int(round((width - s) / 2))
    corners = [(0, 0), (0, width - s), (height - s, 0), (height - s, width - s), (top, left)]
    crops = np.stack([pixels[t : t + s, c : c + s] for t, c in corners])
    return np.concatenate([crops, crops[:, :, ::-1]])


def cifar_train(image: np.ndarray, rng: np.random.Generator, *, pad: int = 4) -> np.ndarray:
    """CIFAR training view: zero pad by `pad`, random crop back to (H, W), flip p=0.5.

    Random draws, in order: top, left, flip.
    """
    if image.ndim != 3:
        raise ValueError(f"cifar_train expects an (H, W, C) image, got shape {image.shape}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    top = int(rng.integers(0, 2 * pad + 1))
    left = int(rng.integers(0, 2 * pad + 1))
    out = padded[top : top + height, left : left + width]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def pad_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Zero-pad an (H, W, C) image, centred, to size x size (or (height, width))."""
    target_h, target_w = (size, size) if isinstance(size, (int, np.integer)) else size
    if image.ndim != 3:
        raise ValueError(f"pad_image expects an (H, W, C) image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height > target_h or width > target_w:
        raise ValueError(
            f"cannot pad a {height}x{width} image to {target_h}x{target_w}; "
            "the target size must be at least the image size"
        )
    top, left = (target_h - height) // 2, (target_w - width) // 2
    pads = ((top, target_h - height - top), (left, target_w - width - left), (0, 0))
    return np.pad(image, pads)


def normalize(
    image: np.ndarray,
    mean: Sequence[float] | np.ndarray,
    std: Sequence[float] | np.ndarray,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Per-channel (x / 255 - mean) / std, computed in float32 and cast to dtype (e.g. bfloat16)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    channels = image.shape[-1]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise ValueError(
            f"mean/std have {mean.size}/{std.size} entries but the image has {channels} "
            "channels; pass one value per channel"
        )
    if np.any(std == 0):
        raise ValueError("std must be non-zero in every channel")
    scaled = image.astype(np.float32) * np.float32(1 / 255)
    return ((scaled - mean) / std).astype(dtype)
