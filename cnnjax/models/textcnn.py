"""Kim (EMNLP 2014), "Convolutional Neural Networks for Sentence Classification".

Input: token ids (batch, length), int; id 0 is the padding token. With `pad=True` (default),
h_max - 1 = 4 padding tokens go on each side, as in Kim's code, so every sentence of at least
one word fits the widest window; with `pad=False` the caller pads and a sentence shorter than
the widest window raises `InputTooSmallError`.

| layer     | operation                                        | output  | params (C classes)   |
|-----------|--------------------------------------------------|---------|---------------------:|
| embedding | lookup in a (vocab_size, 300) table, pad row = 0 | L × 300 |   vocab_size·300 (†) |
| conv_h3   | 3-word windows, 100 maps, ReLU, max over time    | 100     |      3·300·100 + 100 |
| conv_h4   | 4-word windows, 100 maps, ReLU, max over time    | 100     |      4·300·100 + 100 |
| conv_h5   | 5-word windows, 100 maps, ReLU, max over time    | 100     |      5·300·100 + 100 |
| dropout   | concatenation, dropout 0.5                       | 300     |                    0 |
| fc        | 300 → C                                          | C       |            300·C + C |
| total (†) | 360,902 for C=2, 361,805 for C=5                 |         | 360,300 + 300·C + C  |

(†) The embedding table is reported apart from the total (model_zoo.md §10): it sits at
`params/embedding` (`embedding_param_count`) and is absent from `params` in `static` mode.

Kim's four variants (`mode`):
- 'rand': a trainable table, randomly initialised (`kim_uniform`).
- 'static': a frozen table (pretrained, e.g. word2vec) kept OUT of `params`, in the
  `embeddings` collection (`embeddings/static`), so no optimizer touches it. Pass the whole
  `variables` dict to `apply`.
- 'non-static': the pretrained table is trainable (`params/embedding`), fine-tuned per task.
- 'multichannel': a static and a non-static copy; every filter runs over both and the results
  are summed. A convolution is linear in its input, so this equals one convolution over the
  sum of the two embeddings (bias added once), which is how it is computed here.
`load_embeddings` writes a pretrained table into whichever copies the mode has. The padding
row is masked to zero in the forward pass, so it never changes the output or gets a gradient.

Training recipe (Sec. 3.1): Adadelta (ρ=0.95), batch 50, and an l2 max-norm of 3 on the
softmax weight columns after each update (`clip_fc_norms`).
Init (our choice): Glorot-uniform conv and fc weights, zero biases.

Zhang & Wallace (2015) vary the activation and the pooling: `activation` is one of
ACTIVATIONS (Kim: 'relu'), `pooling` 'max' (1-max over time, Kim), 'avg' (mean over time) or
'kmax-K' (the K largest values of each map, in sentence order, Kalchbrenner et al. 2014).

Layer names (for `cnnjax.features`): `conv_h3`, `conv_h4`, `conv_h5` (per-position feature maps
before ReLU and max-over-time pooling), `dropout` (the pooled sentence vector, 3 × maps wide;
the identity in inference), `fc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax import ops
from cnnjax.layers import Conv, InputTooSmallError
from cnnjax.models.registry import register_model

PAPER = "Kim 2014"
MODES = ("rand", "static", "non-static", "multichannel")
PAD_ID = 0
EMBEDDING_PARAM = "embedding"  # params/embedding: the trainable table (all modes but 'static')
STATIC_COLLECTION = "embeddings"  # embeddings/static: the frozen table ('static', 'multichannel')
WEIGHT_INIT = nn.initializers.xavier_uniform()
# The activations of Zhang & Wallace's Table 6 (their 'Iden' is 'iden').
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": ops.relu,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "softplus": jax.nn.softplus,
    "cube": lambda x: x * x * x,
    "iden": lambda x: x,
}


def pooling_width(pooling: str) -> int:
    """Values each feature map keeps: 1 for 'max'/'avg', K for 'kmax-K'; a bad name raises."""
    if pooling in ("max", "avg"):
        return 1
    head, _, k = pooling.partition("-")
    if head == "kmax" and k.isdigit() and int(k) >= 1:
        return int(k)
    raise ValueError(f"unknown textcnn pooling {pooling!r}; use max, avg or kmax-K (K >= 1)")


def pool_over_time(maps: jax.Array, pooling: str) -> jax.Array:
    """(B, T, F) feature maps -> (B, F·k): 1-max, mean, or the k largest in time order."""
    if pooling == "max":
        return jnp.max(maps, axis=1)
    if pooling == "avg":
        return jnp.mean(maps, axis=1)
    k = pooling_width(pooling)
    if maps.shape[1] < k:
        raise InputTooSmallError(
            f"{pooling} pooling keeps {k} values per map, but sentences give only "
            f"{maps.shape[1]} positions; use a smaller K or longer padding"
        )
    by_map = jnp.swapaxes(maps, 1, 2)  # (B, F, T)
    _, positions = jax.lax.top_k(by_map, k)
    kept = jnp.take_along_axis(by_map, jnp.sort(positions, axis=-1), axis=-1)  # time order
    return kept.reshape(maps.shape[0], -1)


def kim_uniform(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """U(-0.25, 0.25), Kim's init for words with no pretrained vector; the padding row is 0."""
    table = jax.random.uniform(key, shape, dtype, minval=-0.25, maxval=0.25)
    return table.at[PAD_ID].set(0)


class TextCNN(nn.Module):
    """Kim's sentence CNN: embeddings, parallel 1-D convs, max-over-time pooling, dropout, FC."""

    num_classes: int = 2
    vocab_size: int = 20_000  # rows of the table, padding row 0 included
    embed_dim: int = 300
    windows: tuple[int, ...] = (3, 4, 5)
    maps: int = 100
    mode: str = "rand"
    pad: bool = True
    dropout_rate: float = 0.5
    activation: str = "relu"
    pooling: str = "max"
    embedding_init: Callable[..., jax.Array] = kim_uniform
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        self._check(ids)
        widest = max(self.windows)
        if self.pad:
            ids = jnp.pad(ids, ((0, 0), (widest - 1, widest - 1)), constant_values=PAD_ID)
        if ids.shape[1] < widest:
            raise InputTooSmallError(
                f"layer 'conv_h{widest}': a sentence of length {ids.shape[1]} is too small for the "
                f"{widest}-word window: ({ids.shape[1]} - {widest})/1 + 1 < 1; pad sentences to at "
                f"least {widest} tokens with id {PAD_ID} or build the model with pad=True"
            )
        words = self._embed(ids).astype(self.dtype)
        pooled = []
        for h in self.windows:
            conv = Conv(
                self.maps, (h,), kernel_init=WEIGHT_INIT, dtype=self.dtype, name=f"conv_h{h}"
            )
            pooled.append(pool_over_time(ACTIVATIONS[self.activation](conv(words)), self.pooling))
        x = jnp.concatenate(pooled, axis=-1)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
        return nn.Dense(self.num_classes, kernel_init=WEIGHT_INIT, dtype=self.dtype, name="fc")(x)

    def _check(self, ids: jax.Array) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown textcnn mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not self.windows or min(self.windows) < 1 or len(set(self.windows)) != len(self.windows):
            raise ValueError(f"textcnn windows must be distinct positive ints, got {self.windows}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown textcnn activation {self.activation!r}; use one of "
                f"{', '.join(ACTIVATIONS)}"
            )
        pooling_width(self.pooling)
        if self.maps < 1 or not 0 <= self.dropout_rate < 1:
            raise ValueError(
                f"textcnn needs maps >= 1 and dropout_rate in [0, 1), got {self.maps} and "
                f"{self.dropout_rate}"
            )
        if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(
                f"textcnn takes integer token ids of shape (batch, length), got {ids.dtype} "
                f"{tuple(ids.shape)}; tokenize first (id {PAD_ID} = padding)"
            )

    def _embed(self, ids: jax.Array) -> jax.Array:
        """(B, L) ids -> (B, L, embed_dim) vectors, zero at padding tokens."""
        shape = (self.vocab_size, self.embed_dim)
        if self.mode == "static":
            init = lambda: self.embedding_init(self.make_rng("params"), shape)  # noqa: E731
            table = self.variable(STATIC_COLLECTION, "static", init).value
            words = jnp.take(jax.lax.stop_gradient(table), ids, axis=0)
        else:
            table = self.param(EMBEDDING_PARAM, self.embedding_init, shape)
            words = jnp.take(table, ids, axis=0)
            if self.mode == "multichannel":  # the static copy starts equal to the trainable one
                static = self.variable(STATIC_COLLECTION, "static", lambda: table).value
                words = words + jnp.take(jax.lax.stop_gradient(static), ids, axis=0)
        return words * (ids != PAD_ID)[..., None]


def embedding_param_count(params: Any) -> int:
    """Trainable embedding parameters (`params/embedding`), which Kim reports apart; 0 if static."""
    return int(params[EMBEDDING_PARAM].size) if EMBEDDING_PARAM in params else 0


def load_embeddings(variables: Any, table: Any) -> dict[str, Any]:
    """Copy of `variables` with a pretrained (vocab_size, embed_dim) table in every embedding slot.

    Fills `params/embedding` and/or `embeddings/static`, whichever the model's mode has.
    """
    candidates = (("params", EMBEDDING_PARAM), (STATIC_COLLECTION, "static"))
    slots = [(c, n) for c, n in candidates if n in variables.get(c, {})]
    if not slots:
        raise ValueError("no embedding table in these variables; pass a textcnn model's variables")
    table = jnp.asarray(table, jnp.float32)
    out = {c: dict(v) for c, v in variables.items()}
    for collection, name in slots:
        expected = variables[collection][name].shape
        if table.shape != expected:
            raise ValueError(
                f"pretrained table has shape {table.shape}, the model expects {expected}; build "
                f"the model with vocab_size={table.shape[0]}, embed_dim={table.shape[-1]}"
            )
        out[collection][name] = table
    return out


def clip_fc_norms(params: Any, max_norm: float = 3.0) -> Any:
    """Kim's l2 constraint: rescale each class column of the fc kernel to norm ≤ `max_norm`.

    Applied to the params after each update (Kim's code caps only this softmax matrix).
    """
    fc = dict(params["fc"])
    fc["kernel"] = ops.max_norm_columns(fc["kernel"], max_norm)
    return {**params, "fc": fc}


@register_model("textcnn", input_shape=(64,), num_classes=2, input_dtype=jnp.int32, paper=PAPER)
def textcnn(*, num_classes: int, dtype: Any, **overrides: Any) -> nn.Module:
    """Kim's CNN, windows 3/4/5 × 100 maps over 300-d embeddings; 360,902 params + embeddings."""
    return TextCNN(num_classes=num_classes, dtype=dtype, **overrides)
