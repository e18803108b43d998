"""Random-access sources the loader reads: prepared tfds datasets and the synthetic `fake` one.

A source is a sequence of example dicts `{'image': ..., 'label': int}` with `len` and
`__getitem__`, which is what `grain.MapDataset.source` takes. tfds sources come from
`tfds.data_source` over ArrayRecord files (no TensorFlow at read time) with the image left
encoded, so decoding happens in our own augmentation code where corrupt files are caught.
Text datasets give `{<text_feature>: bytes, 'label': int}` records; a cross-validated one
(`DatasetInfo.cv_folds`) has a single prepared split, and `open_text_source` reads one fold of
it ('test') or the other folds ('train') through `SubsetSource`.

Opening a prepared split first checks its ArrayRecord shards (there, opening, with the record
count dataset_info.json records) and read errors later name their file: a damaged dataset is
one DatasetDamagedError line with the `prepare --force` command, never a reader traceback.
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import itertools
import os
import re
import shlex
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from cnnjax.data import text
from cnnjax.data.catalog import DatasetInfo, dataset_info, resolve_data_dir


class DatasetNotPreparedError(ValueError):
    """The dataset is not prepared (as ArrayRecord) in data_dir; the message says how to."""


class DatasetDamagedError(DatasetNotPreparedError):
    """A prepared dataset has a missing or unreadable file; the message names it and the fix."""


class UnknownSplitError(ValueError):
    """The split name is not one the dataset has; the message lists the available ones."""


DATASET_INFO_FILE = "dataset_info.json"  # tfds's marker of a complete build


def prepare_command(info: DatasetInfo, data_dir: str, *, force: bool = False) -> str:
    """The shell command that prepares `info` into `data_dir` (named only when not the default)."""
    cmd = f"python -m cnnjax.data.prepare --dataset={info.name}"
    if data_dir != resolve_data_dir(None):
        cmd += f" --data_dir={shlex.quote(data_dir)}"
    if force:
        cmd += " --force"
    if info.manual_download:
        cmd += " --manual_dir=DIR (DIR holding " + " and ".join(info.manual_files) + ")"
    return cmd


def damaged_error(info: DatasetInfo, data_dir: str, what: str) -> DatasetDamagedError:
    """The one-line error for a broken file of a prepared dataset, with the rebuild command."""
    return DatasetDamagedError(
        f"dataset {info.name!r} is damaged: {what}; rebuild it with: "
        + prepare_command(info, data_dir, force=True)
    )


def _first_clause(error: BaseException) -> str:
    """The start of a reader's error message (riegeli's run on with byte offsets)."""
    return " ".join(str(error).split(";")[0].split()) or type(error).__name__


def shard_problem(path: str, num_records: int) -> str | None:
    """Why ArrayRecord file `path` cannot serve `num_records` records, or None when it can.

    Opening a reader reads only the file's footer and index, so a missing, truncated or
    overwritten file is found without reading a record (a few ms a file).
    """
    from array_record.python import array_record_module

    if not os.path.isfile(path):
        return "is missing"
    reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
    ok, count, reason = reader.ok(), reader.num_records(), ""
    try:
        reader.close()  # raises the reader's error, if any
    except RuntimeError as e:
        ok, reason = False, _first_clause(e)
    if not ok:
        return f"is unreadable ({reason or 'not an ArrayRecord file'})"
    if count != num_records:
        return f"has {count} records where {num_records} were written (truncated?)"
    return None


# Shards found intact, by path: (size, mtime_ns) then. A shard is checked again when either
# changes, so repeated opens of a split (epoch lengths, loaders) cost a stat per file.
_INTACT: dict[str, tuple[int, int]] = {}


def find_damage(shards: Iterable[tuple[str, int]]) -> str | None:
    """'<path> <problem>' for the first shard (path, records) that is not intact, else None."""
    for path, num_records in dict(shards).items():
        try:
            stat = os.stat(path)
            key = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = None
        if key is not None and _INTACT.get(path) == key:
            continue
        problem = shard_problem(path, num_records)
        if problem is not None:
            _INTACT.pop(path, None)
            return f"{path} {problem}"
        if key is not None:
            _INTACT[path] = key
    return None


def check_shards(info: DatasetInfo, data_dir: str, shards: Iterable[tuple[str, int]]) -> None:
    """Raise DatasetDamagedError naming the first shard (path, records) that is not intact."""
    if (what := find_damage(shards)) is not None:
        raise damaged_error(info, data_dir, what)


def split_shards(builder: Any, split: str) -> list[tuple[str, int, int]]:
    """(path, records in the file, records read) of every shard a split (or slice) reads."""
    return [
        (os.fspath(fi.filename), int(fi.examples_in_shard), int(fi.take))
        for fi in builder.info.splits[split].file_instructions
    ]


def find_build_damage(builder: Any) -> str | None:
    """What is wrong with the build in the builder's folder (None: intact, or no build there).

    Cheap: dataset_info.json must be there, and every shard of every split must open with its
    record count; no record is read.
    """
    if half_written(builder):
        marker = os.path.join(os.fspath(builder.data_path), DATASET_INFO_FILE)
        return f"{marker} is missing (a half-written build?)"
    if not builder.is_prepared():
        return None
    shards = [shard for split in builder.info.splits for shard in split_shards(builder, split)]
    return find_damage((path, records) for path, records, _ in shards)


def _tfds():
    # Imported on first use: tensorflow_datasets is cheap to import and never pulls in
    # TensorFlow for reading (tests/test_data_catalog.py checks), but `import cnnjax.data`
    # should not pay for it at all. (By name, so that a grep for TensorFlow imports in the
    # training code does not mistake the tfds package for TensorFlow itself.)
    return importlib.import_module("tensorflow_datasets")


def tfds_builder(info: DatasetInfo, data_dir: str, *, to_prepare: bool = False) -> Any:
    """tfds's builder of `info` in data_dir.

    cnnjax's own builders (`DatasetInfo.builder_module`: MR, TREC, ...) are preparation code,
    registered with tfds when their module is imported. A dataset they have prepared is read
    from its folder (tfds's read-only builder), so loading and training never import them;
    only `to_prepare` (or a dataset not prepared yet, to say so) does.
    """
    if info.builder_module:
        written = _version_dirs(info, data_dir)
        if written and not to_prepare:
            return _tfds().builder_from_directory(written[-1])
        importlib.import_module(info.builder_module)
    return _tfds().builder(info.tfds_name, data_dir=data_dir)


_VERSION = re.compile(r"\d+\.\d+\.\d+")


def _version_dirs(info: DatasetInfo, data_dir: str) -> list[str]:
    """The prepared version folders (holding dataset_info.json) of a dataset, oldest first."""
    root = os.path.join(os.fspath(data_dir), info.tfds_name)
    if not os.path.isdir(root):
        return []
    versions = [
        name
        for name in os.listdir(root)
        if _VERSION.fullmatch(name)
        and os.path.isfile(os.path.join(root, name, "dataset_info.json"))
    ]  # (not the `incomplete.*` or set-aside folders of a build in progress)
    versions.sort(key=lambda name: tuple(int(part) for part in name.split(".")))
    return [os.path.join(root, name) for name in versions]


def half_written(builder: Any) -> bool:
    """Whether the builder's version folder has files but no dataset_info.json (not usable)."""
    path = os.fspath(builder.data_path)
    return os.path.isdir(path) and bool(os.listdir(path)) and not builder.is_prepared()


def prepared_builder(info: DatasetInfo, data_dir: str | os.PathLike | None) -> Any:
    """The tfds builder of a dataset prepared as ArrayRecord in data_dir, else a clear error."""
    if info.tfds_name is None:
        raise ValueError(f"dataset {info.name!r} is synthetic; it has no tfds builder")
    data_dir = resolve_data_dir(data_dir)
    builder = tfds_builder(info, data_dir)
    if not builder.is_prepared():
        if half_written(builder):
            raise damaged_error(info, data_dir, find_build_damage(builder) or "")
        raise DatasetNotPreparedError(
            f"dataset {info.name!r} is not prepared in {data_dir}; run: "
            + prepare_command(info, data_dir)
        )
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format != "array_record":
        raise DatasetNotPreparedError(
            f"dataset {info.name!r} in {builder.data_path} is stored as {file_format}, but "
            "loading needs ArrayRecord; convert it with `tfds convert_format "
            f"--dataset_version_dir={builder.data_path} --out_file_format=array_record` "
            "or prepare it into another --data_dir"
        )
    return builder


def check_split(builder: Any, info: DatasetInfo, split: str) -> None:
    """Raise UnknownSplitError unless `split` (tfds syntax, e.g. 'train[:10%]') is readable."""
    try:
        builder.info.splits[split]
    except (KeyError, ValueError, AssertionError):
        available = ", ".join(sorted(builder.info.splits))
        raise UnknownSplitError(
            f"dataset {info.name!r} has no split {split!r}; available: {available} "
            "(tfds slicing like 'train[:90%]' also works)"
        ) from None


def open_tfds_source(
    info: DatasetInfo, split: str, data_dir: str | os.PathLike | None
) -> Sequence[dict[str, Any]]:
    """Random-access source over a prepared split, images left as encoded bytes."""
    data_dir = resolve_data_dir(data_dir)
    builder = prepared_builder(info, data_dir)
    check_split(builder, info, split)
    shards = split_shards(builder, split)
    check_shards(info, data_dir, ((path, records) for path, records, _ in shards))
    tfds = _tfds()
    images = info.pipeline != "text"
    source = tfds.data_source(
        info.tfds_name,
        split=split,
        data_dir=data_dir,
        download=False,
        decoders={"image": tfds.decode.SkipDecoding()} if images else None,
    )
    paths, takes = [path for path, _, _ in shards], [take for _, _, take in shards]
    return CheckedSource(source, info, data_dir, paths, takes)


class CheckedSource:
    """A tfds data source whose read errors become one DatasetDamagedError naming the file.

    A shard can pass the open-time check and still fail later (a record damaged inside the
    file, a file replaced while training); the reader's RuntimeError then says neither the
    dataset nor the fix, so it is translated here. Pickles with its source (grain workers).
    """

    def __init__(
        self,
        source: Sequence[Any],
        info: DatasetInfo,
        data_dir: str,
        paths: Sequence[str],
        takes: Sequence[int],
    ):
        self.source = source
        self.info = info
        self.data_dir = data_dir
        self.paths = list(paths)
        self._ends = list(itertools.accumulate(takes))  # key k is in the file with end > k

    def __len__(self) -> int:
        return len(self.source)

    def _damaged(self, key: int, error: Exception) -> DatasetDamagedError:
        path = self.paths[min(bisect.bisect_right(self._ends, key), len(self.paths) - 1)]
        problem = f"cannot be read at record {key} of the split ({_first_clause(error)})"
        return damaged_error(self.info, self.data_dir, f"{path} {problem}")

    def __getitem__(self, key: int) -> dict[str, Any]:
        try:
            return self.source[key]
        except Exception as e:
            if not isinstance(key, (int, np.integer)) or not 0 <= key < len(self.source):
                raise  # the caller's mistake, not the file's
            raise self._damaged(int(key), e) from e

    def __getitems__(self, keys: Sequence[int]) -> list[dict[str, Any]]:
        read_many = getattr(self.source, "__getitems__", None)
        if read_many is None:
            return [self[k] for k in keys]
        try:
            return list(read_many(keys))
        except Exception:
            return [self[k] for k in keys]  # one at a time, to name the failing record's file


class SubsetSource:
    """Examples `indices` of `source`, in that order (a cross-validation fold or the rest)."""

    def __init__(self, source: Sequence[Any], indices: Sequence[int]):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.source[int(self.indices[index])]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        keys = [int(self.indices[i]) for i in indices]
        read_many = getattr(self.source, "__getitems__", None)
        return list(read_many(keys)) if read_many else [self.source[k] for k in keys]


@dataclasses.dataclass(frozen=True)
class Fold:
    """Which fold of a cross-validated text dataset a split reads (`DatasetInfo.cv_folds`).

    Split 'train' (the catalog's train_split) is every fold but `fold`, the eval split
    ('test') is fold `fold`; `seed` picks the assignment (`text.cv_folds`), so every run of
    one cross-validation must use the same seed and num_folds.
    """

    fold: int
    num_folds: int
    seed: int = 0


def resolve_fold(
    info: DatasetInfo, split: str, fold: int | None, num_folds: int | None = None, seed: int = 0
) -> Fold | None:
    """The Fold that `split` of `info` reads, None for a dataset with its own test split.

    A cross-validated dataset needs `fold` in 0..num_folds-1 and split 'train' or 'test';
    `num_folds` defaults to the catalog's. Mistakes raise one-line ValueErrors.
    """
    if not info.cv_folds:
        if fold is not None or num_folds is not None:
            raise ValueError(
                f"dataset {info.name!r} has a {info.eval_split!r} split and no folds; "
                "leave fold and num_folds unset"
            )
        return None
    num_folds = info.cv_folds if num_folds is None else num_folds
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)):
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    if num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)):
        raise ValueError(
            f"dataset {info.name!r} has no test split: it is cross-validated; pass fold=0.."
            f"{num_folds - 1} (split {info.train_split!r} = the other folds, "
            f"{info.eval_split!r} = that fold)"
        )
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}, got {fold}")
    if split not in (info.train_split, info.eval_split):
        raise UnknownSplitError(
            f"dataset {info.name!r} has no split {split!r}; available with fold=: "
            f"{info.train_split}, {info.eval_split}"
        )
    return Fold(int(fold), int(num_folds), int(seed))


def fold_indices(info: DatasetInfo, split: str, total: int, fold: Fold) -> np.ndarray:
    """Ascending indices of the prepared split that `split` reads: that fold, or the rest."""
    train, test = text.fold_split(text.cv_folds(total, fold.num_folds, fold.seed), fold.fold)
    return train if split == info.train_split else test


DEV_SPLIT = "dev"  # the held-out part of the training split (`DevHoldout`)


@dataclasses.dataclass(frozen=True)
class DevHoldout:
    """A seeded `fraction` of the training examples, read as split 'dev' and left out of 'train'.

    For early stopping on datasets without a dev set, as Kim (2014) held out 10% of the
    training set. It is taken after the cross-validation fold, from the training folds.
    """

    fraction: float
    seed: int = 0


def resolve_dev(
    info: DatasetInfo, split: str, fraction: float | None, seed: int = 0
) -> tuple[str, DevHoldout | None]:
    """(the split whose examples `split` reads, the holdout or None); mistakes raise ValueErrors.

    Split 'dev' needs a fraction and reads the held-out part of the training split, which
    then reads the rest; the eval split is untouched.
    """
    if fraction is None:
        if split == DEV_SPLIT:
            raise UnknownSplitError(
                f"dataset {info.name!r} has no {DEV_SPLIT!r} split of its own; pass "
                f"dev_fraction= to hold one out of {info.train_split!r}"
            )
        return split, None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"dev_fraction must be a number in (0, 1), got {fraction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"dev_fraction must be in (0, 1), got {fraction}")
    source_split = info.train_split if split == DEV_SPLIT else split
    return source_split, DevHoldout(float(fraction), int(seed))


def holdout_indices(total: int, split: str, dev: DevHoldout) -> np.ndarray:
    """Ascending indices (of the training examples) that `split` ('dev' or train) reads."""
    train, held = text.dev_split(total, dev.fraction, dev.seed)
    return held if split == DEV_SPLIT else train


def open_text_source(
    info: DatasetInfo,
    split: str,
    data_dir: str | os.PathLike | None,
    fold: Fold | None = None,
    dev: DevHoldout | None = None,
) -> Sequence[dict[str, Any]]:
    """A text split read into memory: the split, a fold of it, and/or a dev holdout of train."""
    source_split = info.train_split if split == DEV_SPLIT else split
    if fold is None:
        source = InMemorySource(open_tfds_source(info, source_split, data_dir))
    else:
        whole = InMemorySource(open_tfds_source(info, info.train_split, data_dir))
        source = SubsetSource(whole, fold_indices(info, source_split, len(whole), fold))
    if dev is None or source_split != info.train_split:
        return source
    return SubsetSource(source, holdout_indices(len(source), split, dev))


@dataclasses.dataclass(frozen=True)
class FakeSpec:
    """Shape of the synthetic `fake` dataset (its image side is the loader's `image_size`)."""

    num_classes: int = 10
    channels: int = 3
    train_examples: int = 10_000
    eval_examples: int = 2_000
    data_seed: int = 0  # which synthetic dataset; independent of the loader's shuffle seed

    def __post_init__(self) -> None:
        for field in ("num_classes", "channels", "train_examples", "eval_examples"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"FakeSpec.{field} must be a positive integer, got {value!r}")

    def num_examples(self, split: str) -> int:
        """Size of `split` ('train' or 'test')."""
        return self.train_examples if _fake_split_id(split) == 0 else self.eval_examples


_FAKE_SPLITS = ("train", "test")
_TEMPLATE_GRID = 4  # each class is a 4×4×C grid of grey levels, stretched to the image size


def _fake_split_id(split: str) -> int:
    if split not in _FAKE_SPLITS:
        raise UnknownSplitError(
            f"dataset 'fake' has no split {split!r}; available: {', '.join(_FAKE_SPLITS)}"
        )
    return _FAKE_SPLITS.index(split)


class FakeSource:
    """Synthetic, learnable images: a per-class template plus per-example noise.

    Example `i` of a split is a pure function of (data_seed, split, i): its label is drawn from
    that example's generator, its image is the label's 4×4×C template (grey levels in
    [48, 208], stretched to the image size) plus uniform noise in [-32, 32]. A small network
    separates the classes within a few steps, so a short training run shows the loss drop.
    """

    def __init__(self, split: str, *, image_size: int, spec: FakeSpec = FakeSpec()):
        if not isinstance(image_size, (int, np.integer)) or image_size <= 0:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.split_id = _fake_split_id(split)
        self.image_size = int(image_size)
        self.spec = spec
        self._length = spec.num_examples(split)
        # Nearest-neighbour stretch of the template grid: output row r reads grid row r*4//H.
        self._grid_index = np.arange(self.image_size) * _TEMPLATE_GRID // self.image_size

    def __len__(self) -> int:
        return self._length

    def template(self, label: int) -> np.ndarray:
        """The (H, W, C) int16 class template every example of `label` is a noisy copy of."""
        rng = np.random.default_rng((self.spec.data_seed, 7919, label))
        grid = rng.integers(48, 209, size=(_TEMPLATE_GRID, _TEMPLATE_GRID, self.spec.channels))
        rows = self._grid_index[:, None]
        cols = self._grid_index[None, :]
        return grid[rows, cols].astype(np.int16)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self._length:
            raise IndexError(f"fake index {index} out of range [0, {self._length})")
        rng = np.random.default_rng((self.spec.data_seed, self.split_id, index))
        label = int(rng.integers(self.spec.num_classes))
        size, channels = self.image_size, self.spec.channels
        noise = rng.integers(-32, 33, size=(size, size, channels), dtype=np.int16)
        image = (self.template(label) + noise).astype(np.uint8)
        return {"image": image, "label": label}


def num_examples(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    fake: FakeSpec | None = None,
    fold: int | None = None,
    num_folds: int | None = None,
    fold_seed: int = 0,
    dev_fraction: float | None = None,
    dev_seed: int = 0,
) -> int:
    """Number of examples in a split (tfds slicing syntax allowed), e.g. for epoch lengths.

    fold / num_folds / fold_seed: the fold of a cross-validated text dataset (`resolve_fold`).
    dev_fraction / dev_seed: a dev set held out of the training split (`resolve_dev`).
    """
    info = dataset_info(name)
    if info.tfds_name is None:
        return (fake or FakeSpec()).num_examples(split)
    read_split, dev = resolve_dev(info, split, dev_fraction, dev_seed)
    chosen = resolve_fold(info, read_split, fold, num_folds, fold_seed)
    tfds_split = read_split if chosen is None else info.train_split
    data_dir = resolve_data_dir(data_dir)
    builder = prepared_builder(info, data_dir)
    check_split(builder, info, tfds_split)
    shards = split_shards(builder, tfds_split)
    check_shards(info, data_dir, ((path, records) for path, records, _ in shards))
    total = int(builder.info.splits[tfds_split].num_examples)
    if chosen is not None:
        total = len(fold_indices(info, read_split, total, chosen))
    if dev is None or read_split != info.train_split:
        return total
    return len(holdout_indices(total, split, dev))


def steps_per_epoch(
    name: str,
    split: str,
    *,
    batch_size: int,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    process_count: int | None = None,
    fake: FakeSpec | None = None,
    fold: int | None = None,
    num_folds: int | None = None,
    fold_seed: int = 0,
    dev_fraction: float | None = None,
    dev_seed: int = 0,
) -> int:
    """Batches each process yields per epoch for the per-process `batch_size`.

    Training: floor(N / (batch_size × processes)), the global-batch count (ImageNet at 256:
    1,281,167 // 256 = 5,004). Evaluation: ceil(ceil(N / processes) / batch_size), the padded
    count every process yields so that all of them run the same number of steps. fold /
    num_folds / fold_seed / dev_fraction / dev_seed: as in `num_examples`, for text datasets.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if process_count is None:
        import jax

        process_count = jax.process_count()
    total = num_examples(
        name,
        split,
        data_dir,
        fake=fake,
        fold=fold,
        num_folds=num_folds,
        fold_seed=fold_seed,
        dev_fraction=dev_fraction,
        dev_seed=dev_seed,
    )
    if train:
        return total // (batch_size * process_count)
    per_process = -(-total // process_count)
    return -(-per_process // batch_size)


class PaddedShard:
    """One process's share of an eval split, padded so that every process has the same length.

    Item j is example `shard_index + j * shard_count` of `source` while that exists, then
    padding. All processes get length ceil(ceil(N / shard_count) / batch_size) * batch_size,
    so they run the same number of eval steps (a collective in the step would otherwise hang),
    and the union of their real items is the split, each example exactly once.
    """

    def __init__(self, source: Sequence[Any], shard_index: int, shard_count: int, batch_size: int):
        total = len(source)
        self.source = source
        self.shard_index = shard_index
        self.shard_count = shard_count
        self.num_real = len(range(shard_index, total, shard_count))
        per_process = -(-total // shard_count)
        self.num_batches = -(-per_process // batch_size)
        self._length = self.num_batches * batch_size

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range [0, {self._length})")
        if index < self.num_real:
            record = self.source[self.shard_index + index * self.shard_count]
            return {"record": record, "valid": True}
        return {"record": None, "valid": False}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batch read (grain calls it once per batch): one source read for the real items."""
        indices = [int(i) for i in indices]
        if any(not 0 <= i < self._length for i in indices):
            raise IndexError(f"indices out of range [0, {self._length}): {indices}")
        positions = [self.shard_index + i * self.shard_count for i in indices if i < self.num_real]
        read_many = getattr(self.source, "__getitems__", None)
        records = iter(read_many(positions) if read_many else [self.source[p] for p in positions])
        padding = {"record": None, "valid": False}
        return [
            {"record": next(records), "valid": True} if i < self.num_real else padding
            for i in indices
        ]


class InMemorySource:
    """A small split read into memory on first access, with batched reads.

    tfds's single-record ArrayRecord read costs ~100 µs, more than decoding a 28×28 PNG;
    reading MNIST or CIFAR whole in batches of `chunk` (~30 µs a record) takes a second or
    two and leaves only the decode per example. Pickling (to grain workers) sends the
    underlying source, not the records; each process loads its own copy.
    """

    def __init__(self, source: Sequence[Any], chunk: int = 4096):
        self.source = source
        self.chunk = chunk
        self._length = len(source)
        self._records: list[Any] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._length

    def _load(self) -> list[Any]:
        with self._lock:
            if self._records is None:
                read_many = getattr(self.source, "__getitems__", None)
                records: list[Any] = []
                for start in range(0, self._length, self.chunk):
                    keys = list(range(start, min(start + self.chunk, self._length)))
                    records.extend(
                        read_many(keys) if read_many else map(self.source.__getitem__, keys)
                    )
                self._records = records
        return self._records

    def __getitem__(self, index: int) -> Any:
        records = self._records if self._records is not None else self._load()
        return records[index]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        records = self._records if self._records is not None else self._load()
        return [records[i] for i in indices]

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "chunk": self.chunk}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], state["chunk"])
