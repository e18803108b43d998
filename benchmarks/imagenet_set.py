"""A prepared ImageNet-style set of synthetic full-size JPEGs, for the input and GPU benchmarks."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

JPEG_QUALITY = 90  # with the noise level below this gives ~100 KB per 500x375 image


def synthetic_jpeg(rng: np.random.Generator, width: int = 500, height: int = 375) -> bytes:
    """A natural-looking JPEG: smooth colour gradients, blurred shapes and sensor-like noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(-1, 1, 3)
        planes.append(128 + 60 * np.sin(fx * xx / 40 + fy * yy / 50 + 6 * phase))
    img = Image.fromarray(np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 15))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 200)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(img.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32)
    pixels += rng.normal(0.0, 20.0, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=JPEG_QUALITY
    )
    return out.getvalue()


def prepare_set(root: Path, num_train: int) -> tuple[str, str]:
    """A prepared imagenet2012 with `num_train` synthetic 500x375 JPEGs: (data_dir, JPEG pickle)."""
    import cnnjax.data as cdata
    from cnnjax.data.testing import write_tiny_imagenet

    per_class = -(-num_train // 3)
    files = write_tiny_imagenet(
        root / "manual",
        train_per_class=per_class,
        num_validation=3,
        make_jpeg=synthetic_jpeg,
    )
    cdata.prepare("imagenet2012", data_dir=root / "data", manual_dir=root / "manual")
    with open(root / "original", "wb") as f:
        pickle.dump(list(files.train.values()), f)
    return str(root / "data"), str(root / "original")
