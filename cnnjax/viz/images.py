"""Inputs for the visualisations: a dataset example by index, or any image file, prepared as
the run's evaluation pipeline prepares its inputs; and the dataset's class names.

Image files are read with Pillow and made to look like the run's data: MNIST-family runs get
a grey image resized to 28×28 and zero-padded to the input side (as the digits are; note these
datasets are light objects on black), CIFAR and synthetic runs a resize to the input side,
ImageNet-style runs the evaluation view (shorter side resized, centre crop). Then the run's
per-channel normalisation (the dataset's, or that of imported weights).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnjax import data as cdata
from cnnjax.data import augment
from cnnjax.train.config import TrainConfig

MAX_LOADER_BATCH = 64  # examples decoded per step while seeking an index


@dataclasses.dataclass(frozen=True)
class Example:
    """One model input and what to show for it."""

    image: np.ndarray  # (H, W, C) float32, normalised: what the model takes
    pixels: np.ndarray  # (H, W, C) uint8: the same picture for display
    label: int | None  # the dataset label; None for an image file
    source: str  # where it came from, for titles


def input_side(config: TrainConfig) -> int:
    """The input height = width the run trained at."""
    from cnnjax.train.run_inputs import resolve_image_size

    return resolve_image_size(config, cdata.dataset_info(config.dataset))


def _fake_spec(config: TrainConfig) -> cdata.FakeSpec | None:
    from cnnjax.train.run_inputs import fake_spec

    return fake_spec(config)


def _normalization(config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from cnnjax.train.run_inputs import normalization

    return normalization(config, cdata.dataset_info(config.dataset))


def _preprocessing_args(config: TrainConfig) -> dict:
    from cnnjax.train.run_inputs import preprocessing_args

    return preprocessing_args(config)


def to_pixels(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Undo the per-channel normalisation: (H, W, C) float -> uint8 on 0-255."""
    values = (np.asarray(image, np.float32) * np.asarray(std) + np.asarray(mean)) * 255.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def dataset_example(config: TrainConfig, index: int = 0, split: str | None = None) -> Example:
    """Example `index` of the run's evaluation split (or `split`), as its eval loader gives it."""
    info = cdata.dataset_info(config.dataset)
    split = split or info.eval_split
    fake = _fake_spec(config)
    count = cdata.num_examples(config.dataset, split, config.data_dir, fake=fake)
    if not 0 <= index < count:
        raise ValueError(f"--index={index} is outside the {count} examples of {info.name} {split}")
    batch_size = min(index + 1, MAX_LOADER_BATCH)
    loader = cdata.make_loader(
        config.dataset,
        split,
        batch_size=batch_size,
        train=False,
        data_dir=config.data_dir,
        image_size=input_side(config),
        fake=fake,
        **_preprocessing_args(config),  # the run's normalisation and eval resize
    )
    batch = next(itertools.islice(loader, index // batch_size, None))
    row = index % batch_size
    image = np.asarray(batch["image"][row], np.float32)
    return Example(
        image=image,
        pixels=to_pixels(image, *_normalization(config)),
        label=int(batch["label"][row]),
        source=f"{info.name} {split} #{index}",
    )


def image_file(path: str | Path, config: TrainConfig) -> Example:
    """Any image file Pillow reads, prepared as the run's inputs (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {str(path)!r}")
    info = cdata.dataset_info(config.dataset)
    fake = _fake_spec(config)
    channels = fake.channels if fake is not None else info.channels
    side = input_side(config)
    try:
        with Image.open(path) as img:
            picture = img.convert("L" if channels == 1 else "RGB")
            picture.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read {str(path)!r} as an image ({e})") from None
    if info.pipeline == "imagenet":
        resize = augment.resize_shorter_side(
            np.asarray(picture), cdata.eval_resize_size(info, side, config.resize_size)
        )
        # The centre crop of augment.imagenet_eval.
        top, left = (round((n - side) / 2) for n in resize.shape[:2])
        pixels = resize[top : top + side, left : left + side]
    elif info.pipeline == "mnist":
        native = info.image_size
        small = picture.resize((native, native), Image.Resampling.BILINEAR)
        pixels = augment.pad_image(np.asarray(small).reshape(native, native, 1), side)
    else:
        pixels = np.asarray(picture.resize((side, side), Image.Resampling.BILINEAR))
    pixels = np.ascontiguousarray(pixels).reshape(side, side, channels)
    image = augment.normalize(pixels, *_normalization(config))
    return Example(image=image, pixels=pixels, label=None, source=path.name)


def class_names(config: TrainConfig) -> list[str]:
    """The label names of the run's dataset (from tfds), else '0', '1', ..."""
    info = cdata.dataset_info(config.dataset)
    count = config.num_classes or info.num_classes
    if info.tfds_name is not None and count == info.num_classes:
        from cnnjax.data.sources import prepared_builder

        try:
            names = prepared_builder(info, config.data_dir).info.features["label"].names
        except (cdata.DatasetNotPreparedError, KeyError, AttributeError):
            names = None
        if names and len(names) == count:
            return list(names)
    return [str(i) for i in range(count)]
