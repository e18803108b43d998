"""What a run's configuration implies about its inputs: image side, synthetic-data spec, loaders.

The runner, `cnnjax.evaluate`, `cnnjax.visualize` and `cnnjax.viz` all build a run's inputs
the same way from its TrainConfig; this is their one home.
"""

from __future__ import annotations

from typing import Any

from cnnjax import data as cdata
from cnnjax.models import model_spec
from cnnjax.train.config import TrainConfig

EVAL_BATCH_PER_DEVICE = 64


def resolve_image_size(config: TrainConfig, info: cdata.DatasetInfo) -> int:
    """Input side: the flag; else the model's for ImageNet/MNIST-family/fake data; else native."""
    if config.image_size:
        return config.image_size
    model_side = model_spec(config.model).input_shape[0]
    if (
        info.pipeline in ("imagenet", "mnist", "fake")
        and len(model_spec(config.model).input_shape) == 3
    ):
        return model_side
    return info.image_size


def fake_spec(config: TrainConfig) -> cdata.FakeSpec | None:
    """For the synthetic dataset: the model's channels and the run's classes."""
    if config.dataset != "fake":
        return None
    channels = model_spec(config.model).input_shape[-1]
    return cdata.FakeSpec(num_classes=config.num_classes, channels=channels)


def normalization(
    config: TrainConfig, info: cdata.DatasetInfo
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The run's per-channel (mean, std): its own (imported weights, --mean/--std) or the data's."""
    return (config.mean or info.mean, config.std or info.std)


def device_normalization(
    config: TrainConfig, info: cdata.DatasetInfo
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """What the steps normalise `make_run_loader`'s raw pixels with; None for token ids."""
    return None if info.pipeline == "text" else normalization(config, info)


def preprocessing_args(config: TrainConfig) -> dict[str, Any]:
    """`make_loader` arguments for the run's own preprocessing (normalisation, eval resize)."""
    imagenet = cdata.dataset_info(config.dataset).pipeline == "imagenet"
    return {
        "mean": config.mean or None,
        "std": config.std or None,
        "resize_size": config.resize_size if imagenet else None,
    }


def make_run_loader(
    config: TrainConfig,
    split: str,
    *,
    train: bool,
    batch_size: int,
    image_size: int,
    text: Any = None,
) -> cdata.Loader:
    """The run's loader for `split`: dataset, data_dir, seed, workers, view options.

    Images come as raw uint8 pixels, for `Steps(normalization=device_normalization(...))` to
    normalise on the device. `text` (a `text_run.TextInputs`): a text run's vocabulary and
    padded length.
    """
    if text is not None:
        from cnnjax.train.text_run import split_args

        return cdata.make_loader(
            config.dataset,
            split,
            batch_size=batch_size,
            train=train,
            data_dir=config.data_dir,
            seed=config.seed,
            workers=config.workers,
            vocabulary=text.vocabulary,
            max_length=text.max_length,
            **split_args(config),
        )
    return cdata.make_loader(
        config.dataset,
        split,
        batch_size=batch_size,
        train=train,
        data_dir=config.data_dir,
        image_size=image_size,
        seed=config.seed,
        ten_crop=config.ten_crop and not train,
        workers=config.workers,
        dtype=config.dtype,
        fake=fake_spec(config),
        normalize=False,
        **preprocessing_args(config),
    )
