"""What a text run (Kim 2014) adds to an image run: vocabulary, padded length, variant, vectors.

A text dataset's vocabulary comes from its training split (for cross-validated sets, the
training folds) and is saved with the run as WORKDIR/text.json together with the padded
length and the embedding width; a resumed run checks that the data still gives the same
vocabulary. `--variant` picks Kim's CNN-rand / -static / -non-static / -multichannel;
`--word_vectors` (word2vec binary, GloVe or fastText text) fills the embedding of a fresh run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from cnnjax import data as cdata
from cnnjax.data.text import Vocabulary
from cnnjax.train.config import TrainConfig

TEXT_FILE = "text.json"
FOLD_SEED = 0  # the fold of each sentence: fixed per dataset, so the ten CV runs never overlap
DEV_SEED = 0  # which training sentences a --dev_fraction holds out (not --seed: fixed data)
DEFAULT_EMBED_DIM = 300  # Kim: word2vec's 300-d vectors
PRETRAINED_VARIANTS = ("static", "non-static", "multichannel")
VARIANTS = ("rand", *PRETRAINED_VARIANTS)


@dataclasses.dataclass(frozen=True)
class TextInputs:
    """The vocabulary, padded length and embedding width of a text run."""

    vocabulary: Vocabulary
    max_length: int
    embed_dim: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "vocabulary": json.loads(self.vocabulary.to_json()),
                "max_length": self.max_length,
                "embed_dim": self.embed_dim,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> TextInputs:
        raw = json.loads(text)
        vocabulary = Vocabulary.from_json(json.dumps(raw["vocabulary"]))
        return cls(vocabulary, int(raw["max_length"]), int(raw["embed_dim"]))


def is_text(config: TrainConfig) -> bool:
    """Whether the run's dataset is a text (token id) dataset."""
    return cdata.dataset_info(config.dataset).pipeline == "text"


def split_args(config: TrainConfig) -> dict[str, Any]:
    """`num_examples` / loader arguments selecting the run's CV fold and dev holdout (or {})."""
    args: dict[str, Any] = {}
    if config.fold is not None:
        args.update(fold=config.fold, fold_seed=FOLD_SEED)
    if config.dev_fraction:
        args.update(dev_fraction=config.dev_fraction, dev_seed=DEV_SEED)
    return args


def dev_split(config: TrainConfig) -> str | None:
    """The split that early stopping scores: the held-out part, the dataset's own, or None."""
    if config.dev_fraction:
        return cdata.DEV_SPLIT
    return cdata.dataset_info(config.dataset).dev_split


def variant(config: TrainConfig) -> str:
    """Kim's variant: the flag, else non-static with word vectors and rand without."""
    return config.variant or ("non-static" if config.word_vectors else "rand")


def saved_text_inputs(workdir: str | Path) -> TextInputs | None:
    """The text inputs a run saved, or None (an image run, or a run not started yet)."""
    path = Path(workdir) / TEXT_FILE
    if not path.is_file():
        return None
    try:
        return TextInputs.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is damaged ({e}); restore it or use a new --workdir") from None


def text_inputs(config: TrainConfig, embed_dim: int) -> TextInputs:
    """The run's text inputs from its training split; on resume, checked against the saved ones."""
    training = cdata.training_text(
        config.dataset, config.data_dir, fold=config.fold, seed=FOLD_SEED
    )
    vocabulary = training.vocabulary
    built = TextInputs(vocabulary, training.max_length, embed_dim)
    saved = saved_text_inputs(config.workdir)
    if saved is None:
        return built
    if saved.vocabulary.fingerprint != vocabulary.fingerprint:
        raise ValueError(
            f"{Path(config.workdir) / TEXT_FILE} holds another vocabulary than {config.dataset}'s "
            f"training split gives now ({len(saved.vocabulary)} vs {len(vocabulary)} words): the "
            "data or --fold changed since the run started; use the same data or a new --workdir"
        )
    return saved


def model_overrides(config: TrainConfig, text: TextInputs) -> dict[str, Any]:
    """create_model arguments of a text run: table size, width and Kim's variant."""
    shape = {
        "windows": tuple(config.windows) or None,
        "maps": config.feature_maps,
        "activation": config.activation or None,
        "pooling": config.pooling or None,
        "dropout_rate": config.dropout,
    }
    return {
        "vocab_size": len(text.vocabulary),
        "embed_dim": text.embed_dim,
        "mode": variant(config),
        **{name: value for name, value in shape.items() if value is not None},
    }


def load_vectors(config: TrainConfig, vocabulary: Vocabulary) -> Any:
    """The --word_vectors file's table for the vocabulary (unknown words U[-0.25, 0.25])."""
    from cnnjax.data.word_vectors import load_word_vectors

    tokens = [vocabulary.token(i) for i in range(len(vocabulary))]
    vectors = load_word_vectors(config.word_vectors, tokens, seed=config.seed)
    logging.info(
        "word vectors %s: %d of %d words found (%d-d); the rest U[-0.25, 0.25]",
        config.word_vectors,
        vectors.found,
        len(vocabulary) - 2,
        vectors.dim,
    )
    return vectors


def with_word_vectors(state: Any, table: np.ndarray) -> Any:
    """The train state with `table` in every embedding copy the variant has (Kim's init).

    Each copy gets a buffer of its own, placed as the initial table was: the train step donates
    the state, and one buffer in two slots (multichannel) cannot be donated twice.
    """
    import jax

    from cnnjax.models.textcnn import load_embeddings

    initial = state.variables()
    variables = jax.tree.map(
        lambda new, old: new if new is old else jax.device_put(np.asarray(new), old.sharding),
        load_embeddings(initial, table),
        initial,
    )
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return state.replace(params=variables["params"], model_state=model_state)


def _text_datasets() -> list[str]:
    return [name for name, info in cdata.DATASETS.items() if info.pipeline == "text"]


def check_text_config(config: TrainConfig) -> str | None:
    """The problem with a run's text flags, in one line, or None."""
    from cnnjax.models import model_spec

    text_model = len(model_spec(config.model).input_shape) == 1
    info = cdata.dataset_info(config.dataset)
    if info.pipeline == "text" and not text_model:
        return (
            f"--model={config.model} takes images, but {config.dataset} is a text dataset; "
            "use --model=textcnn"
        )
    if info.pipeline != "text" and text_model:
        return (
            f"--model={config.model} takes token ids, but {config.dataset} is an image dataset; "
            f"use a text dataset ({', '.join(_text_datasets())}) or an image model"
        )
    if info.pipeline != "text":
        if any(_text_flags(config).values()):
            given = ", ".join(f"--{name}" for name, value in _text_flags(config).items() if value)
            return f"{given}: text datasets only"
        return None
    if problem := _shape_problem(config):
        return problem
    if config.dev_fraction and info.dev_split:
        return (
            f"{config.dataset} has a dev split of its own ({info.dev_split!r}), which early "
            "stopping uses: drop --dev_fraction"
        )
    if config.early_stopping_patience and not dev_split(config):
        return (
            f"--early_stopping_patience needs a dev set: {config.dataset} has none of its own; "
            "hold one out with --dev_fraction=0.1 (Kim 2014)"
        )
    if config.variant and config.variant not in VARIANTS:
        return f"--variant={config.variant} is not valid: use one of {', '.join(VARIANTS)}"
    if variant(config) in PRETRAINED_VARIANTS and not config.word_vectors:
        return (
            f"--variant={variant(config)} starts from pretrained vectors: pass "
            "--word_vectors=PATH (e.g. GoogleNews-vectors-negative300.bin)"
        )
    if variant(config) == "rand" and config.word_vectors:
        return "--variant=rand learns its embedding from scratch: drop --word_vectors"
    folds = info.cv_folds
    if folds and config.fold is None:
        return f"{config.dataset} has no test split: pass --fold=0 ... {folds - 1} (10-fold CV)"
    if not folds and config.fold is not None:
        return f"{config.dataset} has a test split: drop --fold"
    if folds and not 0 <= config.fold < folds:
        return f"--fold={config.fold} is out of range: fold must be in 0 ... {folds - 1}"
    return None


def _text_flags(config: TrainConfig) -> dict[str, Any]:
    """The text-only fields, by flag name (a true value: the flag was given)."""
    return {
        "variant": config.variant,
        "word_vectors": config.word_vectors,
        "fold": config.fold is not None,
        "windows": config.windows,
        "feature_maps": config.feature_maps is not None,
        "activation": config.activation,
        "pooling": config.pooling,
        "dropout": config.dropout is not None,
        "dev_fraction": config.dev_fraction,
        "early_stopping_patience": config.early_stopping_patience,
    }


def _shape_problem(config: TrainConfig) -> str | None:
    """A bad --windows / --activation / --pooling value, in one line."""
    from cnnjax.models.textcnn import ACTIVATIONS, pooling_width

    windows = tuple(config.windows)
    if windows and (min(windows) < 1 or len(set(windows)) != len(windows)):
        return f"--windows={','.join(map(str, windows))}: give distinct window sizes >= 1"
    if config.activation and config.activation not in ACTIVATIONS:
        return f"--activation={config.activation}: use one of {', '.join(ACTIVATIONS)}"
    if config.pooling:
        try:
            pooling_width(config.pooling)
        except ValueError:
            return f"--pooling={config.pooling}: use max, avg or kmax-K (K >= 1)"
    return None
