"""A tiny ImageNet in the real ILSVRC2012 manual-download format, for tests and smoke runs.

`write_tiny_imagenet(manual_dir)` writes the two archives the tfds `imagenet2012` builder
reads from `manual_dir`:

* `ILSVRC2012_img_train.tar`: one `<synset>.tar` per class, each holding JPEGs named
  `<synset>_<n>.JPEG` (the label is the member name without `.tar`);
* `ILSVRC2012_img_val.tar`: flat `ILSVRC2012_val_%08d.JPEG` files, numbered from 1. tfds
  labels them with its bundled validation_labels.txt, whose i-th line is the synset of image i.

Images are small JPEGs with a distinct colour per file (so tests can tell them apart); chosen
files are replaced by bytes no decoder accepts, to exercise the skip-and-count path.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from collections.abc import Callable

import numpy as np
from PIL import Image

# Real synset ids: the first three classes of ILSVRC2012 (tench, goldfish, great white shark).
DEFAULT_SYNSETS = ("n01440764", "n01443537", "n01484850")
CORRUPT_BYTES = b"\xff\xd8\xff\xe0 this is not a JPEG stream"


@dataclasses.dataclass(frozen=True)
class TinyImageNet:
    """What was written: every file's bytes by split and member name, and the corrupt names."""

    train: dict[str, bytes]  # 'n01440764_3.JPEG' -> bytes
    validation: dict[str, bytes]  # 'ILSVRC2012_val_00000001.JPEG' -> bytes
    corrupt: frozenset[str]


def _jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    """A JPEG of (width, height) `size`: a random flat colour plus mild noise."""
    width, height = size
    colour = rng.integers(0, 256, size=3)
    noise = rng.integers(-12, 13, size=(height, width, 3))
    pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def write_tiny_imagenet(
    manual_dir: str | os.PathLike,
    *,
    synsets: tuple[str, ...] = DEFAULT_SYNSETS,
    train_per_class: int = 4,
    num_validation: int = 6,
    corrupt: tuple[str, ...] = (),
    seed: int = 0,
    make_jpeg: Callable[[np.random.Generator], bytes] | None = None,
) -> TinyImageNet:
    """Write ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into manual_dir.

    Image sizes vary between 40 and 72 pixels a side, unless `make_jpeg(rng)` makes the
    images (e.g. full-size ones for benchmarks). Names in `corrupt` (train or validation
    member names) get undecodable bytes instead of a JPEG.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(manual_dir, exist_ok=True)

    def image(name: str) -> bytes:
        if make_jpeg is not None:
            data = make_jpeg(rng)
        else:
            data = _jpeg(rng, (int(rng.integers(40, 73)), int(rng.integers(40, 73))))
        return CORRUPT_BYTES if name in corrupt else data

    train: dict[str, bytes] = {}
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for synset in synsets:
            inner_buffer = io.BytesIO()
            with tarfile.open(fileobj=inner_buffer, mode="w") as inner:
                for n in range(train_per_class):
                    name = f"{synset}_{n + 1}.JPEG"
                    train[name] = image(name)
                    _add(inner, name, train[name])
            _add(outer, f"{synset}.tar", inner_buffer.getvalue())

    validation: dict[str, bytes] = {}
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as val:
        for n in range(num_validation):
            name = f"ILSVRC2012_val_{n + 1:08d}.JPEG"
            validation[name] = image(name)
            _add(val, name, validation[name])

    unknown = set(corrupt) - set(train) - set(validation)
    if unknown:
        raise ValueError(f"corrupt names {sorted(unknown)} are not files of the tiny ImageNet")
    return TinyImageNet(train=train, validation=validation, corrupt=frozenset(corrupt))
