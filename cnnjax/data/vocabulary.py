"""A text dataset's vocabulary and padded length, from its TRAINING sentences only.

`training_text(name, data_dir, fold=...)` reads the training split (for a cross-validated set
such as MR, the training folds of `fold`), cleans each sentence as the catalog says
(`DatasetInfo.clean`) and builds `cnnjax.data.text.Vocabulary` from the tokens: words seen only
in the eval split or the held-out fold map to OOV (id 1). Its `max_length` is the token count
of the longest training sentence, the length the loader pads to by default (Kim's max_l).

It reads and cleans the whole training split once per process (a few seconds for IMDB's 25,000
reviews) and keep the result, keyed by the dataset's build, so a train and an eval loader made
one after the other share it. Reading needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from cnnjax.data import sources, text
from cnnjax.data.catalog import DatasetInfo, dataset_info, resolve_data_dir
from cnnjax.data.preprocess import sentence_tokens


class NotATextDatasetError(ValueError):
    """A vocabulary was asked of an image dataset."""


@dataclasses.dataclass(frozen=True)
class TrainingText:
    """What the training sentences of one dataset (or fold) determine."""

    vocabulary: text.Vocabulary
    max_length: int  # tokens in the longest training sentence (at least 1)
    num_sentences: int


def text_info(name: str) -> DatasetInfo:
    """The catalog entry of text dataset `name`; an image dataset raises NotATextDatasetError."""
    info = dataset_info(name)
    if info.pipeline != "text":
        raise NotATextDatasetError(f"dataset {name!r} holds images, not sentences")
    return info


def _build_stamp(info: DatasetInfo, data_dir: str) -> int:
    """mtime of the build's dataset_info.json: a rebuilt dataset gets a fresh summary."""
    folder = os.fspath(sources.prepared_builder(info, data_dir).data_path)
    return os.stat(os.path.join(folder, sources.DATASET_INFO_FILE)).st_mtime_ns


@functools.lru_cache(maxsize=16)
def _summarise(
    name: str, data_dir: str, fold: sources.Fold | None, min_count: int, stamp: int
) -> TrainingText:
    """Read and tokenize the training sentences once (`stamp` keys the cache to the build)."""
    del stamp
    info = dataset_info(name)
    source = sources.open_text_source(info, info.train_split, data_dir, fold)
    records = source.__getitems__(list(range(len(source))))
    longest = 0

    def token_lists():
        nonlocal longest
        for record in records:
            tokens = sentence_tokens(record[info.text_feature], info.clean)
            longest = max(longest, len(tokens))
            yield tokens

    vocabulary = text.build_vocabulary(token_lists(), min_count)
    return TrainingText(vocabulary, max(longest, 1), len(records))


def training_text(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    fold: int | None = None,
    num_folds: int | None = None,
    seed: int = 0,
    min_count: int = 1,
) -> TrainingText:
    """Vocabulary, longest sentence and count of the training sentences of `name` (or a fold).

    fold / num_folds / seed: for a cross-validated set, the held-out fold (required), the
    number of folds (default the catalog's) and the seed of the fold assignment; the
    vocabulary then sees the other folds only. min_count: words rarer than this map to OOV.
    """
    info = text_info(name)
    chosen = sources.resolve_fold(info, info.train_split, fold, num_folds, seed)
    data_dir = resolve_data_dir(data_dir)
    return _summarise(name, data_dir, chosen, min_count, _build_stamp(info, data_dir))
