"""Datasets for cnnjax: a catalog by name, tfds preparation, and grain loaders.

Images and Kim's sentence datasets alike; for text, `training_text` gives the training
vocabulary and padded length a loader uses (save them with a run and pass them back as
`make_loader(vocabulary=, max_length=)`).

`prepare` (which needs TensorFlow through tfds) is imported on first use, so
`import cnnjax.data` and loading never import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnjax.data.catalog import DATASETS, DatasetInfo, UnknownDatasetError, dataset_info
from cnnjax.data.loader import (
    Loader,
    LoaderConfigError,
    carry_over_state,
    eval_resize_size,
    loader_state_fits,
    make_loader,
)
from cnnjax.data.sources import (
    DEV_SPLIT,
    DatasetNotPreparedError,
    FakeSpec,
    UnknownSplitError,
    num_examples,
    steps_per_epoch,
)
from cnnjax.data.text import Vocabulary
from cnnjax.data.vocabulary import TrainingText, training_text

__all__ = [
    "DATASETS",
    "DEV_SPLIT",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "FakeSpec",
    "Loader",
    "LoaderConfigError",
    "carry_over_state",
    "eval_resize_size",
    "loader_state_fits",
    "UnknownDatasetError",
    "UnknownSplitError",
    "dataset_info",
    "make_loader",
    "num_examples",
    "prepare",
    "steps_per_epoch",
    "TrainingText",
    "training_text",
    "Vocabulary",
]


def __getattr__(name: str) -> Any:
    if name == "prepare":
        function = importlib.import_module("cnnjax.data.prepare").prepare
        # Importing the submodule bound the package attribute `prepare` to the module;
        # rebind it to the function so later lookups skip this hook.
        globals()["prepare"] = function
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
