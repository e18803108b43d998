"""Grain input pipelines over the catalog datasets: deterministic, sharded per process, resumable.

Training (`train=True`), per process `k` of `n`::

    source -> seed(seed) -> shuffle -> repeat(num_epochs) -> random_map(augment) -> [k::n]
           -> batch(batch_size) [-> mp_prefetch(workers), through reused shared memory]
           -> Loader: take out undecodable images (counted), refill from the next batch

One global stream, the same for any process count: the shuffle is re-drawn each epoch from
(seed, epoch), and the augmentation of stream position i draws from grain's per-index
generator, a function of (seed, i). Global batch s is stream positions [s·B, (s+1)·B) and
process `k` reads its k-th block of batch_size rows, so the processes' shards are disjoint,
each epoch's union is the whole split, and the global batch has the same rows in the same
order for any `n` (so do per-row random draws in the step, such as dropout masks).

Evaluation (`train=False`), process `k` reads examples k, k+n, ... in order, padded to the
same number of batches on every process; `mask` is False for padding (and for undecodable
images), so summing `metric * mask` scores every example exactly once.

Text datasets (pipeline 'text': MR, TREC, SST-2, IMDB) run the same two paths; the map step
cleans and tokenizes each record's sentence and yields `image` = int32 token ids (B, L),
right-padded with 0, so the train and eval steps need no change (the key says input, not
pixels). The vocabulary comes from the training sentences only (`cnnjax.data.vocabulary`; for
a cross-validated set, the training folds), or is passed in (`vocabulary=`, e.g. the one saved
with a run, on resume); L is the longest training sentence unless `max_length=` sets it, and
longer sentences (eval ones too) are truncated to L. A cross-validated set (MR) needs `fold=`:
split 'train' reads the other folds, 'test' that fold, assigned by `fold_seed`. With
`dev_fraction=` split 'dev' is a seeded part of the training split held out for early stopping.

`batch_size` is always the per-process batch; the global batch is batch_size × processes.
The iterator state (`get_state`/`set_state`, or orbax via `grain.checkpoint.CheckpointSave`)
restores the exact next batch. With `workers > 0` the batches are built in grain worker
processes and the state is per worker. `carry_over_state` turns the states that every
process of a run saved into the state for another process count, worker count or batch
size: the global stream position, which is what makes a run resumable on any topology.
"""

from __future__ import annotations

import math
import os
from typing import Any

import grain
import numpy as np
from absl import logging

from cnnjax.data import text
from cnnjax.data.batch_slots import SlotReader, SlotWriter
from cnnjax.data.catalog import DatasetInfo, dataset_info
from cnnjax.data.preprocess import SKIPPED, Preprocessor, TextPreprocessor
from cnnjax.data.sources import (
    DevHoldout,
    FakeSource,
    FakeSpec,
    Fold,
    InMemorySource,
    PaddedShard,
    UnknownSplitError,
    open_text_source,
    open_tfds_source,
    resolve_dev,
    resolve_fold,
)
from cnnjax.data.vocabulary import training_text


class LoaderConfigError(ValueError):
    """An argument of make_loader is invalid; the message says which and what to pass."""


def _image_dtype(dtype: Any) -> Any:
    """np.float32 or ml_dtypes.bfloat16 from a name ('float32', 'bfloat16') or dtype-like."""
    import ml_dtypes

    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved == np.dtype(np.float32):
        return np.float32
    if resolved == np.dtype(ml_dtypes.bfloat16):
        return ml_dtypes.bfloat16
    raise LoaderConfigError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise LoaderConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        import jax

        return jax.process_index(), jax.process_count()
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise LoaderConfigError(
            f"shard must be (process_index, process_count), got {shard!r}"
        ) from None
    if count <= 0 or not 0 <= index < count:
        raise LoaderConfigError(f"shard must satisfy 0 <= index < count, got {shard!r}")
    return index, count


def _image_size(info: DatasetInfo, image_size: int | None) -> int:
    """The output side: the catalog default, or a size the dataset's pipeline can produce."""
    size = info.image_size if image_size is None else _positive_int("image_size", image_size)
    if info.pipeline == "mnist" and size < info.image_size:
        raise LoaderConfigError(
            f"{info.name} images are {info.image_size}×{info.image_size}; image_size must be "
            f">= {info.image_size} (larger sizes zero-pad, e.g. 32 for LeNet-5)"
        )
    if info.pipeline == "cifar" and size != info.image_size:
        raise LoaderConfigError(
            f"{info.name} images are {info.image_size}×{info.image_size}; pass image_size="
            f"{info.image_size} or None"
        )
    return size


def _preprocessor(
    info: DatasetInfo,
    *,
    train: bool,
    image_size: int,
    channels: int,
    dtype: Any,
    ten_crop: bool,
    resize_size: int | None,
    lighting_sigma: float,
    normalize: bool,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocessor:
    if info.pipeline != "imagenet" and (ten_crop or resize_size is not None or lighting_sigma):
        raise LoaderConfigError(
            f"ten_crop, resize_size and lighting_sigma apply to the ImageNet-style datasets "
            f"(imagenet2012, imagenette), not {info.name!r}"
        )
    if ten_crop and train:
        raise LoaderConfigError("ten_crop is an evaluation view; pass train=False")
    if lighting_sigma < 0:
        raise LoaderConfigError(f"lighting_sigma must be >= 0, got {lighting_sigma}")
    if resize_size is not None and _positive_int("resize_size", resize_size) < image_size:
        raise LoaderConfigError(f"resize_size ({resize_size}) must be >= image_size ({image_size})")
    mean, std = _normalization(info, channels, mean, std)
    return Preprocessor(
        pipeline=info.pipeline,
        image_size=image_size,
        channels=channels,
        mean=mean,
        std=std,
        dtype=dtype,
        resize_size=eval_resize_size(info, image_size, resize_size),
        ten_crop=ten_crop,
        lighting_sigma=float(lighting_sigma),
        normalize=normalize,
    )


def eval_resize_size(info: DatasetInfo, image_size: int, resize_size: int | None = None) -> int:
    """Shorter side before the eval centre crop: `resize_size`, else the dataset's rule.

    The rule: 256 for crops up to 256 (224, AlexNet's 227), the same 8/7 ratio above (299 -> 342).
    """
    if resize_size is not None:
        return resize_size
    base = info.resize_size or image_size
    return base if image_size <= base else math.ceil(image_size * 8 / 7)


def _normalization(
    info: DatasetInfo,
    channels: int,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel: those given (one value or one per channel), else the dataset's."""
    mean, std = tuple(mean or info.mean), tuple(std or info.std)
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise LoaderConfigError(
                f"{name} has {len(values)} values for {channels}-channel images; pass one per "
                "channel (or one for all)"
            )
    if any(v <= 0 for v in std):
        raise LoaderConfigError(f"std must be positive in every channel, got {std}")
    return mean, std


def _available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _ensure_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app, take their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _rows(batch: dict[str, np.ndarray], keep: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {key: value[keep] for key, value in batch.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


class Loader(grain.DatasetIterator):
    """Iterator of dict batches: `image` (B, H, W, C), `label` int32 (B,), eval `mask` (B,).

    For a text dataset `image` is int32 token ids (B, L), and `vocabulary` and `max_length`
    (L) say how they were made (None for images): save them with a run.

    It reads the fixed-size batches grain builds and, for training, takes out the rows of
    undecodable images and refills the batch from the next ones, so every training batch
    holds `batch_size` real examples. `num_skipped` counts those images (each is logged).
    The state round-trips through `get_state`/`set_state` and orbax: it is the grain state
    before the batch that the leftover rows came from, plus their count.
    `num_batches` is the length of one eval pass (None for training streams).
    """

    def __init__(
        self,
        iterator: grain.DatasetIterator,
        *,
        info: DatasetInfo,
        split: str,
        batch_size: int,
        repack: bool,
        num_batches: int | None,
        vocabulary: text.Vocabulary | None = None,
        max_length: int | None = None,
    ):
        super().__init__(iterator)
        self.info = info
        self.split = split
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.num_skipped = 0
        self._repack = repack
        self._leftover: dict[str, np.ndarray] | None = None  # rows not yet returned
        self._leftover_state: dict[str, Any] | None = None  # grain state before their batch
        self._start = self.get_state()  # for rewind

    def rewind(self) -> None:
        """Back to the first batch: run an evaluation pass again without rebuilding the loader."""
        self.set_state(self._start)

    def _count_skipped(self, skipped: int) -> None:
        if skipped:
            self.num_skipped += skipped
            logging.warning(
                "%s/%s: skipped %d undecodable image(s), %d so far",
                self.info.name,
                self.split,
                skipped,
                self.num_skipped,
            )

    def _fetch(self, *, count: bool = True) -> dict[str, np.ndarray]:
        """Next grain batch with the undecodable rows taken out (and counted)."""
        raw = next(self._parent)
        flags = raw.pop(SKIPPED)
        if not flags.any():
            return raw
        if count:
            self._count_skipped(int(flags.sum()))
        return _rows(raw, flags == 0)

    def __next__(self) -> dict[str, np.ndarray]:
        if not self._repack:
            batch = next(self._parent)
            self._count_skipped(int(np.sum(batch.pop(SKIPPED))))
            return batch
        parts, have = [], 0
        while have < self.batch_size:
            if self._leftover is None:
                state = self._parent.get_state()
                self._leftover = self._fetch()  # StopIteration drops the partial last batch
                self._leftover_state = state
            rows = self._leftover
            take = min(self.batch_size - have, len(rows["label"]))
            parts.append(rows if take == len(rows["label"]) else _rows(rows, slice(0, take)))
            have += take
            rest = len(rows["label"]) - take
            self._leftover = _rows(rows, slice(take, None)) if rest else None
        return _concat(parts)

    def get_state(self) -> dict[str, Any]:
        if self._leftover is None:
            return {
                "pipeline": self._parent.get_state(),
                "leftover": 0,
                "num_skipped": self.num_skipped,
            }
        return {
            "pipeline": self._leftover_state,
            "leftover": len(self._leftover["label"]),
            "num_skipped": self.num_skipped,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["pipeline"])
        self.num_skipped = int(state["num_skipped"])
        self._leftover = self._leftover_state = None
        leftover = int(state["leftover"])
        if leftover:
            # Re-read the batch the leftover rows came from (already counted) and keep its tail.
            self._leftover_state = state["pipeline"]
            rows = self._fetch(count=False)
            self._leftover = _rows(rows, slice(len(rows["label"]) - leftover, None))


def _pipeline_position(state: dict[str, Any]) -> int:
    """Batches a grain pipeline state has consumed: in-process, or summed over its workers."""
    if "next_index" in state:
        return int(state["next_index"])
    return sum(int(worker["next_index"]) for worker in state["iterators_in_use_states"])


def _pipeline_state(position: int, workers: int) -> dict[str, Any]:
    """The grain pipeline state after `position` batches, in-process or over `workers` workers.

    mp_prefetch deals batches round-robin: worker w builds batches w, w + W, ..., so after
    `position` batches it has built ceil((position - w) / W) and the next one comes from
    worker position mod W. (tests/test_data_loader.py checks this against real iteration.)
    """
    if workers == 0:
        return {"next_index": position}
    return {
        "next_index_in_cycle": position % workers,
        "next_index_in_datasets": workers,
        "iterators_in_use_indices": list(range(workers)),
        "iterators_in_use_states": [
            {"next_index": max(0, -(-(position - w) // workers))} for w in range(workers)
        ],
        "exhausted": [0] * workers,
        "future_states": {},
    }


def loader_state_fits(state: dict[str, Any], *, workers: int) -> bool:
    """Whether a saved Loader state has the layout of a loader with `workers` workers."""
    pipeline = state["pipeline"]
    if workers == 0:
        return "next_index" in pipeline
    return len(pipeline.get("iterators_in_use_states", ())) == workers


def carry_over_state(
    saved: list[dict[str, Any]],
    *,
    saved_batch_size: int,
    batch_size: int,
    shard: tuple[int, int],
    workers: int,
) -> tuple[dict[str, Any], int]:
    """This process's training-loader state from the states of all processes of a saved run.

    `saved` holds one Loader state per process of the run that saved them (in process order),
    `saved_batch_size` is that run's global batch and `batch_size` this run's. The position
    carried over is in examples of the global stream: the furthest any saved process had read.
    Returns the state and how many examples that position could not account for exactly
    (rows of undecodable images and partly used batches: they may repeat or be left out).
    """
    positions = [_pipeline_position(state["pipeline"]) for state in saved]
    examples = max(positions) * saved_batch_size
    uncertain = sum(int(state["num_skipped"]) + int(state["leftover"]) for state in saved)
    uncertain += (max(positions) - min(positions)) * saved_batch_size
    position, remainder = divmod(examples, batch_size)
    state = {
        "pipeline": _pipeline_state(position, workers),
        "leftover": 0,
        "num_skipped": sum(int(s["num_skipped"]) for s in saved) if shard[0] == 0 else 0,
    }
    return state, uncertain + remainder


def _text_fold(
    info: DatasetInfo, split: str, fold: int | None, num_folds: int | None, fold_seed: int
) -> Fold | None:
    """The fold `split` reads (None: the dataset has a test split); mistakes are config errors."""
    if not 0 <= fold_seed < 2**32:
        raise LoaderConfigError(f"fold_seed must be in [0, 2**32), got {fold_seed}")
    try:
        return resolve_fold(info, split, fold, num_folds, fold_seed)
    except UnknownSplitError:
        raise
    except ValueError as e:
        raise LoaderConfigError(str(e)) from None


def _text_dev(
    info: DatasetInfo, split: str, fraction: float | None, seed: int
) -> tuple[str, DevHoldout | None]:
    """The split `split` reads and its dev holdout; mistakes are config errors."""
    if not 0 <= seed < 2**32:
        raise LoaderConfigError(f"dev_seed must be in [0, 2**32), got {seed}")
    try:
        return resolve_dev(info, split, fraction, seed)
    except UnknownSplitError:
        raise
    except ValueError as e:
        raise LoaderConfigError(str(e)) from None


def _text_inputs(
    info: DatasetInfo,
    split: str,
    data_dir: str | os.PathLike | None,
    *,
    vocabulary: text.Vocabulary | None,
    max_length: int | None,
    fold: Fold | None,
    dev: DevHoldout | None,
) -> tuple[Any, TextPreprocessor]:
    """The source of a text split and the preprocessor that turns it into padded token ids."""
    if vocabulary is not None and not isinstance(vocabulary, text.Vocabulary):
        raise LoaderConfigError(
            f"vocabulary must be a cnnjax.data.text.Vocabulary, got {type(vocabulary).__name__}"
        )
    length = None if max_length is None else _positive_int("max_length", max_length)
    source = open_text_source(info, split, data_dir, fold, dev)
    if vocabulary is None or length is None:
        kept = training_text(
            info.name,
            data_dir,
            fold=None if fold is None else fold.fold,
            num_folds=None if fold is None else fold.num_folds,
            seed=0 if fold is None else fold.seed,
        )
        vocabulary = kept.vocabulary if vocabulary is None else vocabulary
        length = kept.max_length if length is None else length
    preprocess = TextPreprocessor(vocabulary, length, info.clean, info.text_feature)
    return source, preprocess


def _check_text_arguments(info: DatasetInfo, images: dict[str, Any], texts: dict[str, Any]) -> None:
    """Refuse image-only arguments for a text dataset and text-only ones for an image dataset."""
    if info.pipeline == "text":
        given = [name for name, value in images.items() if value]
        kind = "image"
    else:
        given = [name for name, value in texts.items() if value is not None]
        kind = "text"
    if given:
        raise LoaderConfigError(
            f"{', '.join(given)} apply to {kind} datasets only, not {info.name!r}"
        )


def make_loader(
    name: str,
    split: str,
    *,
    batch_size: int,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    seed: int = 0,
    num_epochs: int | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 0,
    dtype: Any = "float32",
    ten_crop: bool = False,
    resize_size: int | None = None,
    lighting_sigma: float = 0.0,
    read_threads: int | None = None,
    fake: FakeSpec | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    vocabulary: text.Vocabulary | None = None,
    max_length: int | None = None,
    fold: int | None = None,
    num_folds: int | None = None,
    fold_seed: int = 0,
    dev_fraction: float | None = None,
    dev_seed: int = 0,
    normalize: bool = True,
) -> Loader:
    """Grain iterator of batches of dataset `name`, split `split` (see module doc).

    batch_size: per-process batch. train: shuffle + augment + repeat, else one padded,
    masked pass in order. shard: (process_index, process_count), default the JAX process.
    num_epochs: None repeats forever (training only). workers: 0 in-process, > 0 grain
    worker processes. dtype: 'float32' or 'bfloat16' images. image_size: output side (MNIST
    pads, e.g. 32 for LeNet-5; the crop side for ImageNet). ten_crop / resize_size /
    lighting_sigma: ImageNet-style views. read_threads: grain threads (batches in flight) per
    process, default one per available core (at most 16) in-process and 1 per worker.
    fake: shape of the synthetic `fake` dataset. mean / std: the per-channel normalisation on
    the [0, 1] scale (default: the dataset's statistics), e.g. that of imported weights.
    normalize: True gives normalised images in `dtype`; False raw uint8 pixels (plus, with
    lighting_sigma, the per-image RGB offset under `preprocess.LIGHTING`), 4x fewer bytes to
    move, for a consumer that normalises them itself (the training steps do, on the device).

    Text datasets only (`image` is then int32 token ids (B, L); dtype does not apply):
    vocabulary: the token ids (default: built from the training sentences). max_length: L
    (default: the longest training sentence; longer sentences are truncated). fold /
    num_folds / fold_seed: the held-out fold of a cross-validated set (MR; fold required),
    the fold count (default the catalog's, 10) and the seed of the fold assignment, which
    every fold's run must share (it is not `seed`, the shuffle seed). dev_fraction /
    dev_seed: hold a seeded fraction of the training split (after the fold) out as split
    'dev', for early stopping (Kim: 0.1); the training split then reads the rest. The
    vocabulary and default length still come from the whole training split.
    """
    info = dataset_info(name)
    batch_size = _positive_int("batch_size", batch_size)
    shard_index, shard_count = _check_shard(shard)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise LoaderConfigError(f"workers must be an integer >= 0, got {workers!r}")
    if num_epochs is not None:
        num_epochs = _positive_int("num_epochs", num_epochs)
        if not train and num_epochs != 1:
            raise LoaderConfigError("evaluation is a single pass; leave num_epochs=None")
    if not 0 <= seed < 2**32:
        raise LoaderConfigError(f"seed must be in [0, 2**32), got {seed}")
    if fake is not None and info.tfds_name is not None:
        raise LoaderConfigError(f"fake= only applies to the 'fake' dataset, not {name!r}")
    image_dtype = _image_dtype(dtype)
    _check_text_arguments(
        info,
        dict(
            image_size=image_size,
            ten_crop=ten_crop,
            resize_size=resize_size,
            lighting_sigma=lighting_sigma,
            mean=mean,
            std=std,
        ),
        dict(
            vocabulary=vocabulary,
            max_length=max_length,
            fold=fold,
            num_folds=num_folds,
            dev_fraction=dev_fraction,
        ),
    )
    if info.pipeline == "text":
        read_split, dev = _text_dev(info, split, dev_fraction, dev_seed)
        source, preprocess = _text_inputs(
            info,
            split,
            data_dir,
            vocabulary=vocabulary,
            max_length=max_length,
            fold=_text_fold(info, read_split, fold, num_folds, fold_seed),
            dev=dev,
        )
    else:
        source, preprocess = _image_inputs(
            info,
            split,
            data_dir,
            train=train,
            image_size=image_size,
            dtype=image_dtype,
            ten_crop=ten_crop,
            resize_size=resize_size,
            lighting_sigma=lighting_sigma,
            fake=fake,
            normalize=normalize and workers == 0,
            mean=mean,
            std=std,
        )
    # Grain prefetches whole batches: one thread per batch in flight, and as many batches
    # buffered as threads (ImageNet at 256 × 224² float32 is 154 MB a batch). Worker processes
    # are the parallelism when workers > 0, so each runs one thread by default. In-process,
    # one thread per available core: decoding releases the GIL, but more threads than cores
    # only fight over it (2 cores, ImageNet crops: 2 threads 2,852 img/s, 4 2,416, 16 1,568).
    if read_threads is None:
        threads = 1 if workers > 0 else min(_available_cores(), 16)
    else:
        threads = _positive_int("read_threads", read_threads)
    read_options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2, threads))

    if train:
        if len(source) < shard_count:
            raise LoaderConfigError(
                f"{name}/{split} has {len(source)} examples, fewer than the {shard_count} "
                "processes; use fewer processes or a larger split"
            )
        # Global batch s is stream positions [sB, (s+1)B); process k reads its k-th block of
        # `batch_size` rows, so the global batch has the same rows in the same order for any
        # process count (row-wise randomness such as dropout masks follows the row). A finite
        # stream keeps its last partial batch, whose rows may complete one after skipped images.
        stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
        examples = stream.random_map(preprocess.train)
        batches = examples.batch(batch_size, drop_remainder=num_epochs is None)
        batches = batches[shard_index::shard_count]
        num_batches = None
    else:
        padded = PaddedShard(source, shard_index, shard_count, batch_size)
        examples = grain.MapDataset.source(padded).map(preprocess.eval)
        batches = examples.batch(batch_size, drop_remainder=True)
        num_batches = padded.num_batches
    # Batching before to_iter_dataset makes a whole batch one grain task (and mp_prefetch
    # workers hand over whole batches): several times less overhead than prefetching single
    # examples, and batch k is the same for any number of workers.
    stream = batches.to_iter_dataset(read_options)
    if workers > 0:
        _ensure_flags_parsed()
        # Batches cross from the workers through reused shared-memory slots (batch_slots).
        stream = stream.map(SlotWriter())
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(workers)))
        stream = stream.map(SlotReader())
        if normalize:
            stream = stream.map(preprocess.normalize_batch)
    textual = isinstance(preprocess, TextPreprocessor)
    return Loader(
        iter(stream),
        info=info,
        split=split,
        batch_size=batch_size,
        repack=train,
        num_batches=num_batches,
        vocabulary=preprocess.vocabulary if textual else None,
        max_length=preprocess.length if textual else None,
    )


def _image_inputs(
    info: DatasetInfo,
    split: str,
    data_dir: str | os.PathLike | None,
    *,
    train: bool,
    image_size: int | None,
    dtype: Any,
    ten_crop: bool,
    resize_size: int | None,
    lighting_sigma: float,
    fake: FakeSpec | None,
    normalize: bool,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> tuple[Any, Preprocessor]:
    """The source of an image split and the preprocessor of its train or eval view."""
    size = _image_size(info, image_size)
    spec = fake or FakeSpec()
    channels = spec.channels if info.tfds_name is None else info.channels
    preprocess = _preprocessor(
        info,
        train=train,
        image_size=size,
        channels=channels,
        dtype=dtype,
        ten_crop=ten_crop,
        resize_size=resize_size,
        lighting_sigma=lighting_sigma,
        # Worker processes hand batches over through shared memory: send raw pixels (uint8,
        # 4x smaller than float32) and normalise after the hand-over.
        normalize=normalize,
        mean=mean,
        std=std,
    )
    if info.tfds_name is None:
        source = FakeSource(split, image_size=size, spec=spec)
    else:
        source = open_tfds_source(info, split, data_dir)
        if info.pipeline in ("mnist", "cifar"):  # small splits: read whole, decode per example
            source = InMemorySource(source)
    return source, preprocess
