"""Looking inside text models (Kim 2014's CNN): top n-grams per filter, word saliency.

`top_ngrams`: for every filter of every window size h, the h-grams of a set of sentences that
activate it most, as Kim (2014) and Zhang & Wallace (2017) analyse it. Each sentence gives each
filter one candidate, the n-gram where its max-over-time pooling picks the value (ReLU of the
conv at the argmax position); the best distinct n-grams over the set are listed with their
activation. A filter that never fires (pooled value 0 everywhere) lists none. The model pads
h_max - 1 ids of 0 on each side itself, so position p of `conv_h{h}` covers tokens
p - (h_max - 1) ... p + h - h_max of the sentence; tokens outside it, and the loader's right
padding, show as '<pad>'. `ngram_table` / `write_ngrams` give the result as a markdown table.

`word_saliency`: gradient × input on the embeddings for one sentence: per token, the sum over
embedding dimensions of d logit / d embedding · embedding, for the predicted class or `label`.
The embedding is the one the convolutions see: the table row (rand, non-static), the frozen row
(static) or the sum of both copies (multichannel); padding rows are 0 and score 0.
`plot_word_saliency` draws the words with their scores as coloured bars.

`python -m cnnjax.visualize --what=ngrams|words` uses these on a text run's evaluation split.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cnnjax.data.text import PAD_ID, Vocabulary
from cnnjax.features import features
from cnnjax.models.textcnn import TextCNN
from cnnjax.viz.plotting import DEFAULT_DPI, pyplot, save_figure

TEXT_SUFFIXES = (".txt", ".md")
EVAL_BATCH = 256
MAX_LOADER_BATCH = 64  # examples decoded per step while seeking an index


@dataclasses.dataclass(frozen=True)
class NGram:
    """One n-gram that drives a filter: its tokens, activation and where it was found."""

    tokens: tuple[str, ...]  # '<pad>' where the window covers padding
    activation: float  # ReLU(conv) there: the filter's max-over-time value for that sentence
    example: int  # index of the sentence among all rows of the batches given
    start: int  # sentence position of the first token (negative inside the model's left padding)

    @property
    def text(self) -> str:
        """The tokens joined by spaces."""
        return " ".join(self.tokens)


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One sentence of a text run's evaluation split, as its eval loader gives it."""

    ids: np.ndarray  # (max_length,) int32, right-padded with 0: what the model takes
    label: int
    source: str  # where it came from, for titles


def _check_text_model(model: Any) -> TextCNN:
    """The model, which must be Kim's text CNN."""
    if not isinstance(model, TextCNN):
        raise ValueError(
            f"text visualisations need a textcnn model, got {type(model).__name__}; image models "
            "have filters, activations and saliency instead"
        )
    return model


def left_padding(model: TextCNN) -> int:
    """How many ids of 0 the model puts before (and after) a sentence: h_max - 1, or 0."""
    return max(model.windows) - 1 if model.pad else 0


def ngram_layers(model: TextCNN) -> list[str]:
    """The model's n-gram detector layers, `conv_h{h}` per window size."""
    return [f"conv_h{h}" for h in _check_text_model(model).windows]


def _ids_and_mask(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids (B, L), mask (B,)) of an id array or a loader batch {'image': ids, 'mask': ...}."""
    if isinstance(batch, Mapping):
        ids = np.asarray(batch["image"])
        mask = batch.get("mask")
        mask = np.ones(len(ids), bool) if mask is None else np.asarray(mask, bool)
    else:
        ids = np.asarray(batch)
        mask = np.ones(len(ids), bool)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"top_ngrams takes batches of token ids (batch, length), got {ids.dtype} {ids.shape}"
        )
    return ids.astype(np.int32), mask


def _filter_indices(filters: Iterable[int] | None, maps: int) -> list[int]:
    """The filters asked for (all by default), each checked to exist."""
    if filters is None:
        return list(range(maps))
    chosen = list(dict.fromkeys(int(f) for f in filters))
    bad = [f for f in chosen if not 0 <= f < maps]
    if bad or not chosen:
        raise ValueError(f"filters must be indices in 0 ... {maps - 1}, got {bad or chosen}")
    return chosen


# An n-gram's ids -> (activation, example, start) of its best occurrence so far.
_Pool = dict[tuple[int, ...], tuple[float, int, int]]


def _merge(
    pool: _Pool,
    values: np.ndarray,
    windows: np.ndarray,
    examples: np.ndarray,
    starts: np.ndarray,
    keep: int,
) -> None:
    """Fold one batch's candidates (one per sentence) into a filter's best `keep` n-grams.

    An n-gram dropped from the pool can never return: its best value was below `keep` others,
    and values in the pool only grow.
    """
    for i in np.argsort(-values, kind="stable"):
        value = float(values[i])
        if value <= 0 or (len(pool) >= keep and value <= min(v[0] for v in pool.values())):
            break  # sorted: the rest are no better
        key = tuple(int(t) for t in windows[i])
        if key not in pool or value > pool[key][0]:
            pool[key] = (value, int(examples[i]), int(starts[i]))
        if len(pool) > keep:
            del pool[min(pool, key=lambda k: pool[k][0])]


@functools.partial(jax.jit, static_argnums=0)
def _conv_maps(model: TextCNN, variables: Any, ids: jax.Array) -> dict[str, jax.Array]:
    """The `conv_h{h}` maps (B, T, maps) before ReLU and pooling, compiled once per model."""
    return features(model, variables, ids, ngram_layers(model))


def _pooled_ngrams(
    conv: np.ndarray, padded: np.ndarray, h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What max-over-time pooling picks from (n, T, F) conv maps of `padded` (n, L') ids.

    Returns the pooled values ReLU(max) (n, F), their positions (n, F) and the padded ids of
    those windows (n, F, h).
    """
    position = conv.argmax(axis=1)
    value = np.maximum(np.take_along_axis(conv, position[:, None], axis=1)[:, 0], 0.0)
    windows = padded[np.arange(len(padded))[:, None, None], position[..., None] + np.arange(h)]
    return value, position, windows


def top_ngrams(
    model: Any,
    variables: Any,
    ids_batches: Iterable[Any],
    vocabulary: Vocabulary,
    *,
    per_filter: int = 5,
    filters: Iterable[int] | None = None,
) -> dict[str, dict[int, list[NGram]]]:
    """Per layer `conv_h{h}` and filter index, the `per_filter` distinct h-grams of the sentences
    in `ids_batches` with the highest max-over-time activation, best first.

    `ids_batches`: (B, L) id arrays, or loader batches {'image': ids, 'mask': ...} whose
    masked-out rows are skipped; sentences of padding only are skipped too. `filters`: the
    filter indices to report (default all).
    """
    model = _check_text_model(model)
    if per_filter < 1:
        raise ValueError(f"per_filter must be at least 1, got {per_filter}")
    chosen, keep = _filter_indices(filters, model.maps), per_filter
    layers = ngram_layers(model)
    offset = left_padding(model)
    pools: dict[str, dict[int, _Pool]] = {name: {f: {} for f in chosen} for name in layers}
    seen = 0
    for batch in ids_batches:
        ids, mask = _ids_and_mask(batch)
        rows = np.flatnonzero(mask & (ids != PAD_ID).any(axis=1))
        if rows.size:
            maps = _conv_maps(model, variables, jnp.asarray(ids))
            padded = np.pad(ids[rows], ((0, 0), (offset, offset)), constant_values=PAD_ID)
            for h, name in zip(model.windows, layers, strict=True):
                conv = np.asarray(maps[name], np.float32)[rows][:, :, chosen]
                value, position, windows = _pooled_ngrams(conv, padded, h)
                for j, f in enumerate(chosen):
                    starts = position[:, j] - offset
                    _merge(pools[name][f], value[:, j], windows[:, j], rows + seen, starts, keep)
        seen += len(ids)
    return {
        name: {
            f: [
                NGram(tuple(vocabulary.token(t) for t in key), value, example, start)
                for key, (value, example, start) in sorted(
                    pool.items(), key=lambda item: (-item[1][0], item[1][1], item[1][2])
                )
            ]
            for f, pool in filter_pools.items()
        }
        for name, filter_pools in pools.items()
    }


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def ngram_table(
    ngrams: Mapping[str, Mapping[int, Sequence[NGram]]], title: str | None = None
) -> str:
    """A markdown table of `top_ngrams`' result: one row per filter, its n-grams best first."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| layer | filter | top n-grams (activation) |", "|---|---:|---|"]
    for name, per_filter in ngrams.items():
        for f, found in per_filter.items():
            cell = " · ".join(f"`{_cell(g.text)}` {g.activation:.3g}" for g in found)
            lines.append(f"| {name} | {f} | {cell or '(never fires)'} |")
    return "\n".join(lines) + "\n"


def check_text_path(out: str | Path) -> Path:
    """The output path, which must end in .txt or .md."""
    out = Path(out)
    if out.suffix.lower() not in TEXT_SUFFIXES:
        raise ValueError(f"output {str(out)!r} must be a .txt or .md file, e.g. --out=ngrams.txt")
    return out


def write_ngrams(
    ngrams: Mapping[str, Mapping[int, Sequence[NGram]]], out: str | Path, title: str | None = None
) -> Path:
    """Write `ngram_table` to a .txt or .md file (its folder is created); returns the path."""
    out = check_text_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(ngram_table(ngrams, title), encoding="utf-8")
    return out


def _sentence_ids(ids: Any) -> np.ndarray:
    """One sentence's ids as (L,) int32, from (L,) or (1, L)."""
    ids = np.asarray(ids)
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.ndim != 1 or not ids.size or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"word_saliency takes one sentence of token ids (length,), got {ids.dtype} {ids.shape}"
        )
    return ids.astype(np.int32)


@functools.partial(jax.jit, static_argnums=0)
def _embedding_jacobian(
    model: TextCNN, variables: Any, ids: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """For (1, L) ids: d logits / d embedded words (C, 1, L', D), those words and the logits.

    L' = L plus the model's padding; the words are what `_embed` returns, the input of every
    convolution, so the Jacobian is taken against them by adding a zero `delta` there.
    """

    def logits_of(delta: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        embedded = []

        def add_delta(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, TextCNN) and context.method_name == "_embed":
                embedded.append(out)
                return out + delta.astype(out.dtype)
            return out

        with nn.intercept_methods(add_delta):
            logits = model.apply(variables, ids, train=False)[0].astype(jnp.float32)
        if len(embedded) != 1:
            raise ValueError("word_saliency could not find the model's embedding lookup")
        return logits, (embedded[0].astype(jnp.float32), logits)

    offset = left_padding(model)
    zero = jnp.zeros((1, ids.shape[1] + 2 * offset, model.embed_dim), jnp.float32)
    jacobian, (words, logits) = jax.jacrev(logits_of, has_aux=True)(zero)
    return jacobian, words, logits


def text_logits(model: Any, variables: Any, ids: Any) -> np.ndarray:
    """The class logits (C,) of one sentence's ids (L,), in inference mode."""
    model = _check_text_model(model)
    x = jnp.asarray(_sentence_ids(ids))[None]
    return np.asarray(_embedding_jacobian(model, variables, x)[2], np.float32)


def word_saliency(model: Any, variables: Any, ids: Any, label: int | None = None) -> np.ndarray:
    """Gradient × input per token of one sentence (L,) for the predicted class (or `label`).

    Score of token i = sum over dimensions of d logit / d e_i · e_i, e_i the embedding the
    convolutions see (for multichannel, the sum of both copies); padding tokens score 0.
    """
    model = _check_text_model(model)
    ids = _sentence_ids(ids)
    if label is not None and not 0 <= label < model.num_classes:
        raise ValueError(f"label {label} is outside the model's {model.num_classes} classes")
    jacobian, words, logits = _embedding_jacobian(model, variables, jnp.asarray(ids)[None])
    target = int(np.argmax(logits)) if label is None else int(label)
    scores = jnp.sum(jacobian[target] * words, axis=-1)[0]
    offset = left_padding(model)
    return np.asarray(scores[offset : offset + len(ids)], np.float32)


def sentence_tokens(ids: Any, vocabulary: Vocabulary) -> list[str]:
    """The tokens of one sentence's ids, trailing padding dropped (at least one token kept)."""
    ids = _sentence_ids(ids)
    words = np.flatnonzero(ids != PAD_ID)
    length = int(words[-1]) + 1 if words.size else 1
    return [vocabulary.token(int(t)) for t in ids[:length]]


def plot_word_saliency(
    tokens: Sequence[str],
    scores: Sequence[float],
    out: str | Path,
    *,
    title: str | None = None,
    per_row: int = 20,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Draw a sentence as a bar per word, bar and word coloured by score (red +, blue -).

    `scores` may be longer than `tokens` (a padded sentence): the extra ones are dropped.
    Long sentences wrap into rows of `per_row` words on one shared scale.
    """
    tokens = [str(t) for t in tokens]
    values = np.asarray(scores, np.float32).reshape(-1)
    if not tokens or len(values) < len(tokens):
        raise ValueError(f"{len(tokens)} tokens need as many scores, got {len(values)}")
    values = values[: len(tokens)]
    limit = float(np.abs(values).max()) or 1.0
    plt = pyplot()
    colours = plt.get_cmap("RdBu_r")((np.clip(values / limit, -1, 1) + 1) / 2)
    rows = math.ceil(len(tokens) / per_row)
    width = min(len(tokens), per_row)
    fig, axes = plt.subplots(
        rows, 1, figsize=(max(4.0, 0.5 * width + 1.2), 1.9 * rows + 0.7), squeeze=False
    )
    for r, ax in enumerate(axes[:, 0]):
        part = slice(r * per_row, (r + 1) * per_row)
        x = np.arange(len(tokens[part]))
        ax.bar(x, values[part], color=colours[part], edgecolor="0.3", linewidth=0.5)
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_xlim(-0.6, width - 0.4)
        ax.set_ylim(-1.15 * limit, 1.15 * limit)
        ax.set_xticks(x, tokens[part], rotation=45, ha="right", fontsize=8)
        strong = np.abs(values[part]) > 0.6 * limit  # white words on dark boxes
        for label, colour, dark in zip(ax.get_xticklabels(), colours[part], strong, strict=True):
            label.set_bbox({"facecolor": colour, "edgecolor": "none", "pad": 1.5})
            label.set_color("white" if dark else "black")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("grad × emb", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi)


def eval_batches(config: Any, text: Any, batch_size: int = EVAL_BATCH) -> Any:
    """The eval loader of a text run (`text`: its `TextInputs`): {'image': ids, 'label', 'mask'}."""
    from cnnjax import data as cdata
    from cnnjax.train.run_inputs import make_run_loader

    split = cdata.dataset_info(config.dataset).eval_split
    return make_run_loader(
        config, split, train=False, batch_size=batch_size, image_size=0, text=text
    )


def text_example(config: Any, text: Any, index: int = 0) -> TextExample:
    """Sentence `index` of a text run's evaluation split, padded as its eval loader pads it."""
    from cnnjax import data as cdata
    from cnnjax.train.text_run import FOLD_SEED

    info = cdata.dataset_info(config.dataset)
    count = cdata.num_examples(
        config.dataset, info.eval_split, config.data_dir, fold=config.fold, fold_seed=FOLD_SEED
    )
    if not 0 <= index < count:
        raise ValueError(
            f"--index={index} is outside the {count} examples of {info.name} {info.eval_split}"
        )
    batch_size = min(index + 1, MAX_LOADER_BATCH)
    loader = eval_batches(config, text, batch_size)
    batch = next(itertools.islice(loader, index // batch_size, None))
    row = index % batch_size
    fold = f" (fold {config.fold})" if config.fold is not None else ""
    return TextExample(
        ids=np.asarray(batch["image"][row], np.int32),
        label=int(batch["label"][row]),
        source=f"{info.name} {info.eval_split}{fold} #{index}",
    )


def predict_text(
    model: Any, variables: Any, config: Any, text: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted classes) over every sentence of a text run's evaluation split."""
    classify = jax.jit(lambda v, x: model.apply(v, x, train=False).argmax(-1))
    labels, predictions = [], []
    for batch in eval_batches(config, text):
        keep = np.asarray(batch["mask"], bool)
        labels.append(np.asarray(batch["label"])[keep])
        predictions.append(np.asarray(classify(variables, batch["image"]))[keep])
    return np.concatenate(labels), np.concatenate(predictions)
