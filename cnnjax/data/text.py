"""Sentence data for Kim's text CNN (`cnnjax.models.textcnn`): cleaning, vocabulary, folds, MR.

The pipeline follows Kim's `process_data.py` (github.com/yoonkim/CNN_sentence) where it matters
for comparable numbers, and departs from it where his choices leak test data or are arbitrary:

* `clean_str` / `clean_str_sst` apply his regular expressions rule for rule (see `clean_str`),
  including the quirk that "(", ")" and "?" come out as the two-character tokens "\\(", "\\)",
  "\\?" (his replacement strings hold an unknown regex escape, which `re.sub` keeps verbatim).
* `build_vocabulary` sees the TRAINING sentences only. Kim built one vocabulary over all
  sentences, test folds included; here a word unseen in training maps to `OOV_ID` (1). Id 0
  (`PAD_ID`) is padding, as in the model.
* `encode_padded` right-pads with id 0 to a fixed length. It adds no padding on the left: the
  model (`TextCNN(pad=True)`, the default) itself puts h_max - 1 = 4 padding ids on each side,
  which with `length = max_length(...)` reproduces Kim's layout (4 + words + zeros up to
  max_l + 8).
* `cv_folds` cuts a seeded permutation into balanced folds (Kim drew each sentence's fold
  uniformly at random, so his fold sizes vary); `dev_split` holds out 10% of the training
  examples for early stopping, as Kim did for datasets without a dev set.
* `read_rt_polarity` reads MR (sentence polarity v1.0, Pang & Lee 2005) from its two latin-1
  files; `write_rt_polarity` writes the same format for tests.

Pure Python and numpy: importing this module imports neither jax nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD_ID = 0  # same id as cnnjax.models.textcnn.PAD_ID (not imported: that module imports jax)
OOV_ID = 1
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<unk>"
VOCAB_FORMAT = "cnnjax.text.vocabulary/1"

RT_POS = "rt-polarity.pos"
RT_NEG = "rt-polarity.neg"
RT_SUBDIR = "rt-polaritydata"  # what rt-polaritydata.tar.gz extracts to
RT_ENCODING = "latin-1"
RT_HINT = (
    f"--manual_dir must hold {RT_POS} and {RT_NEG} "
    "(rt-polaritydata.tar.gz from Pang & Lee's site, extracted)"
)

_OUTSIDE = re.compile(r"[^A-Za-z0-9(),!?'`]")
_RUNS = re.compile(r"\s{2,}")
# Kim's substitutions after the character filter, in his order, as literal (old, new) pairs.
_KIM_RULES: tuple[tuple[str, str], ...] = (
    ("'s", " 's"),
    ("'ve", " 've"),
    ("n't", " n't"),
    ("'re", " 're"),
    ("'d", " 'd"),
    ("'ll", " 'll"),
    (",", " , "),
    ("!", " ! "),
    ("(", " \\( "),
    (")", " \\) "),
    ("?", " \\? "),
)


class TextDataError(ValueError):
    """Text data that cannot be read or used; the message is one line saying what to do."""


# ---------------------------------------------------------------------------------------------
# Cleaning and tokenizing


def _filter(text: str) -> str:
    """Characters outside [A-Za-z0-9(),!?'`] to spaces (the first rule of both cleaners)."""
    return _OUTSIDE.sub(" ", text)


def clean_str(text: str, *, lowercase: bool = True) -> str:
    """Kim's `clean_str`: filter characters, split clitics, space out punctuation, lowercase.

    Rules, in Kim's order (case-sensitive; lowercasing comes last, so "DON'T" keeps "N'T"
    attached and becomes "don't"):
    1. every character outside A-Z a-z 0-9 ( ) , ! ? ' ` becomes a space (so "." "-" '"' and
       every non-ASCII character such as "é" or "–" are dropped as word separators);
    2. "'s" "'ve" "n't" "'re" "'d" "'ll" get a space in front, wherever they occur;
    3. "," and "!" get a space on each side;
    4. "(" ")" "?" become " \\( " " \\) " " \\? ": Kim's replacement strings contain an unknown
       escape, which `re.sub` (Python 2 and 3) emits verbatim, so the tokens carry a backslash;
    5. runs of 2+ whitespace characters become one space, then the ends are stripped;
    6. the result is lowercased unless `lowercase=False` (Kim keeps case for TREC only).
    """
    text = _filter(text)
    for pattern, replacement in _KIM_RULES:
        text = text.replace(pattern, replacement)
    text = _RUNS.sub(" ", text).strip()
    return text.lower() if lowercase else text


def clean_str_sst(text: str) -> str:
    """Kim's `clean_str_sst` (SST is pre-tokenized): filter characters, collapse, strip, lower."""
    return _RUNS.sub(" ", _filter(text)).strip().lower()


def tokenize(text: str, *, lowercase: bool = True, sst: bool = False) -> list[str]:
    """Tokens of `text` after Kim's cleaning (`clean_str_sst` if `sst`, else `clean_str`)."""
    cleaned = clean_str_sst(text) if sst else clean_str(text, lowercase=lowercase)
    return cleaned.split()


# ---------------------------------------------------------------------------------------------
# Vocabulary


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Token ids: 0 = padding, 1 = out-of-vocabulary, then `tokens` from id 2 in order.

    Build it with `build_vocabulary` from the training sentences only; words absent there (dev
    and test words included) encode as `OOV_ID`. Kim's code instead built the vocabulary over
    every sentence, test folds too, which cross-validation let him do; we do not.
    """

    tokens: tuple[str, ...]  # the words with ids 2, 3, ...
    min_count: int = 1
    _ids: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check the tokens are distinct strings and index them."""
        if len(set(self.tokens)) != len(self.tokens):
            raise TextDataError("vocabulary tokens must be distinct")
        if not all(isinstance(token, str) and token for token in self.tokens):
            raise TextDataError("vocabulary tokens must be non-empty strings")
        ids = {token: index + 2 for index, token in enumerate(self.tokens)}
        object.__setattr__(self, "_ids", ids)

    def __len__(self) -> int:
        """Number of ids, padding and OOV included: the model's `vocab_size`."""
        return len(self.tokens) + 2

    def __contains__(self, token: object) -> bool:
        """Whether `token` has its own id (is not mapped to OOV)."""
        return token in self._ids

    def token_id(self, token: str) -> int:
        """The id of `token`, `OOV_ID` when it was not in the training sentences."""
        return self._ids.get(token, OOV_ID)

    def token(self, index: int) -> str:
        """The token with id `index` (`PAD_TOKEN` and `OOV_TOKEN` for 0 and 1)."""
        if not 0 <= index < len(self):
            raise IndexError(f"token id {index} is outside the vocabulary (0..{len(self) - 1})")
        return (PAD_TOKEN, OOV_TOKEN)[index] if index < 2 else self.tokens[index - 2]

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of `tokens`, unseen words as `OOV_ID`; no padding added."""
        return np.fromiter((self.token_id(token) for token in tokens), dtype=np.int32)

    def to_json(self) -> str:
        """Canonical plain JSON (sorted keys, no spaces), saved alongside a run."""
        data = {"format": VOCAB_FORMAT, "min_count": self.min_count, "tokens": list(self.tokens)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """The vocabulary `to_json` wrote; TextDataError for anything else."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TextDataError(f"vocabulary file is not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise TextDataError(f"not a vocabulary file: expected format {VOCAB_FORMAT!r}")
        tokens, min_count = data.get("tokens"), data.get("min_count")
        if not isinstance(tokens, list) or not isinstance(min_count, int):
            raise TextDataError("vocabulary file lacks a 'tokens' list or a 'min_count' int")
        return cls(tuple(tokens), min_count)

    @property
    def fingerprint(self) -> str:
        """sha256 hex of `to_json()`: a resumed run compares it to detect another vocabulary."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def build_vocabulary(token_lists: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
    """Vocabulary of the words occurring at least `min_count` times in the TRAINING sentences.

    Ids go by descending count, ties by token (code point order), so they do not depend on the
    order of the sentences. Counts are occurrences (Kim counted sentences containing the word;
    with his min_df=1 both keep the same words).
    """
    if min_count < 1:
        raise TextDataError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(token for tokens in token_lists for token in tokens)
    kept = [(token, count) for token, count in counts.items() if count >= min_count]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return Vocabulary(tuple(token for token, _ in kept), min_count)


# ---------------------------------------------------------------------------------------------
# Fixed-length id arrays


def max_length(token_lists: Iterable[Sequence[str]]) -> int:
    """Length of the longest sentence in tokens (0 when there are none)."""
    return max((len(tokens) for tokens in token_lists), default=0)


def encode_padded(
    token_lists: Sequence[Sequence[str]], vocab: Vocabulary, length: int
) -> np.ndarray:
    """(N, length) int32 ids right-padded with `PAD_ID`; longer sentences are truncated.

    A sentence over `length` tokens keeps its first `length`. No left padding: the model adds
    its own (see the module docstring).
    """
    if length < 1:
        raise TextDataError(f"length must be >= 1, got {length}")
    ids = np.full((len(token_lists), length), PAD_ID, dtype=np.int32)
    for row, tokens in enumerate(token_lists):
        encoded = vocab.encode(tokens[:length])
        ids[row, : len(encoded)] = encoded
    return ids


# ---------------------------------------------------------------------------------------------
# Cross-validation and dev splits


def cv_folds(num_examples: int, num_folds: int = 10, seed: int = 0) -> np.ndarray:
    """Fold id (0..num_folds-1) per example: a seeded permutation dealt round-robin to folds.

    Fold sizes differ by at most one. Kim drew each sentence's fold uniformly at random
    (`np.random.randint(0, cv)`), so his folds were unequal; the split differs from his anyway.
    """
    if num_folds < 2:
        raise TextDataError(f"num_folds must be >= 2, got {num_folds}")
    if num_examples < num_folds:
        raise TextDataError(f"{num_examples} examples cannot fill {num_folds} folds")
    order = np.random.default_rng(seed).permutation(num_examples)
    folds = np.empty(num_examples, dtype=np.int32)
    folds[order] = np.arange(num_examples) % num_folds
    return folds


def fold_split(fold_ids: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) example indices, ascending: the test set is fold `fold`, train the rest."""
    fold_ids = np.asarray(fold_ids)
    num_folds = int(fold_ids.max()) + 1 if fold_ids.size else 0
    if not 0 <= fold < num_folds:
        raise TextDataError(f"fold {fold} is outside 0..{num_folds - 1}")
    test = fold_ids == fold
    return np.flatnonzero(~test), np.flatnonzero(test)


def dev_split(
    num_examples: int, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) indices, ascending: a seeded random `fraction` held out for early stopping.

    For datasets without a dev set, as Kim held out 10% of the training set. The dev size is
    `fraction * num_examples` rounded half up, at least 1 and at most `num_examples - 1`.
    """
    if not 0 < fraction < 1:
        raise TextDataError(f"dev fraction must be in (0, 1), got {fraction}")
    if num_examples < 2:
        raise TextDataError(f"{num_examples} examples cannot be split into train and dev")
    num_dev = min(max(math.floor(num_examples * fraction + 0.5), 1), num_examples - 1)
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[num_dev:]), np.sort(order[:num_dev])


# ---------------------------------------------------------------------------------------------
# MR: sentence polarity dataset v1.0 (rt-polarity)


def _rt_directory(directory: str | os.PathLike) -> str:
    """`directory`, or its `rt-polaritydata` subfolder when the files are only there."""
    nested = os.path.join(directory, RT_SUBDIR)
    here = os.path.isfile(os.path.join(directory, RT_POS))
    return nested if not here and os.path.isfile(os.path.join(nested, RT_POS)) else str(directory)


def _read_lines(path: str, hint: str) -> list[str]:
    """A file's lines, split on b"\\n" only, ASCII-stripped (as Kim's Python 2), latin-1.

    A missing, unreadable or blank file raises `TextDataError` naming it and `hint`.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise TextDataError(f"{path} not found: {hint}") from None
    except OSError as error:
        raise TextDataError(f"{path} unreadable ({error.strerror}): {hint}") from None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the last line
    if not any(line.strip() for line in lines):
        raise TextDataError(f"{path} is empty: {hint}")
    return [line.strip(b" \t\r\n\x0b\x0c").decode(RT_ENCODING) for line in lines]


def read_sentence_pair(
    folder: str | os.PathLike, positive: str, negative: str, hint: str = ""
) -> list[tuple[str, int]]:
    """(raw sentence, label) per line: `positive`'s lines (label 1) first, then `negative`'s (0).

    One sentence a line, latin-1, split on "\\n" alone (str.splitlines would also split at
    latin-1 byte 0x85), every line kept. `hint` ends the errors; by default it names the two
    files and --manual_dir.
    """
    folder = os.fspath(folder)
    hint = hint or f"--manual_dir must hold {positive} and {negative}"
    positives = _read_lines(os.path.join(folder, positive), hint)
    negatives = _read_lines(os.path.join(folder, negative), hint)
    return [(line, 1) for line in positives] + [(line, 0) for line in negatives]


def read_rt_polarity(directory: str | os.PathLike) -> list[tuple[str, int]]:
    """MR sentences as (raw text, label): rt-polarity.pos (label 1) first, then .neg (label 0).

    `directory` may also be the folder holding the extracted `rt-polaritydata/`. A missing or
    empty file raises `TextDataError`.
    """
    return read_sentence_pair(_rt_directory(directory), RT_POS, RT_NEG, RT_HINT)


def _line_bytes(sentence: str | bytes) -> bytes:
    """One rt-polarity line: latin-1 bytes (or the bytes given) plus b"\\n"."""
    data = sentence if isinstance(sentence, bytes) else sentence.encode(RT_ENCODING)
    if b"\n" in data:
        raise TextDataError("an rt-polarity sentence cannot contain a newline")
    return data + b"\n"


def write_rt_polarity(
    directory: str | os.PathLike,
    positives: Iterable[str | bytes],
    negatives: Iterable[str | bytes],
) -> None:
    """Write rt-polarity.pos/.neg in the real format (latin-1, one sentence a line) for tests."""
    os.makedirs(directory, exist_ok=True)
    for name, sentences in ((RT_POS, positives), (RT_NEG, negatives)):
        with open(os.path.join(directory, name), "wb") as file:
            file.write(b"".join(_line_bytes(sentence) for sentence in sentences))
