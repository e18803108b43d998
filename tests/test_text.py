"""Tests for cnnjax.data.text: Kim's cleaning, the train-only vocabulary, padding, folds, MR files.

Expected cleaning outputs are derived by hand from the rules in `clean_str`'s docstring.
"""

from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pytest

from cnnjax.data import text
from cnnjax.data.text import (
    OOV_ID,
    PAD_ID,
    TextDataError,
    Vocabulary,
    build_vocabulary,
    clean_str,
    clean_str_sst,
    cv_folds,
    dev_split,
    encode_padded,
    fold_split,
    max_length,
    read_rt_polarity,
    tokenize,
    write_rt_polarity,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # clitics split off; "-" and "." become spaces
        (
            "It's a film that doesn't work -- and we'll never know why.",
            "it 's a film that does n't work and we 'll never know why",
        ),
        ("I've they're he'd she'll can't", "i 've they 're he 'd she 'll ca n't"),
        # "," "!" spaced; "(" ")" "?" come out with Kim's backslash
        ("(Not) bad, really? Yes!", "\\( not \\) bad , really \\? yes !"),
        # non-ASCII characters (é, ï, en dash) are separators
        ("café – naïve", "caf na ve"),
        # backticks and apostrophes stay; '"', "[", "]", "/" go
        ("``great'' \"movie\" [sic] 9/11", "``great'' movie sic 9 11"),
        # the clitic rules are case-sensitive and run before lowercasing
        ("DON'T IT'S", "don't it's"),
        # "'d" also matches the start of a quoted word
        ("a 'dog'", "a 'dog'"),
        ("x'dy", "x 'dy"),
        ("  \t\n  ", ""),
    ],
)
def test_clean_str_follows_kims_rules(raw: str, expected: str) -> None:
    assert clean_str(raw) == expected


def test_clean_str_keeps_case_for_trec() -> None:
    assert clean_str("What's the US capital?", lowercase=False) == "What 's the US capital \\?"


def test_clean_str_sst_only_filters_and_lowercases() -> None:
    assert clean_str_sst("It's (not) bad, é!  OK") == "it's (not) bad, ! ok"


def test_tokenize_variants() -> None:
    assert tokenize("Don't (go)!") == ["do", "n't", "\\(", "go", "\\)", "!"]
    assert tokenize("Who's Bob?", lowercase=False) == ["Who", "'s", "Bob", "\\?"]
    assert tokenize("Don't (go)!", sst=True) == ["don't", "(go)!"]


# ----------------------------------------------------------------------------------- vocabulary

SENTENCES = [["b", "a", "c"], ["a", "b"], ["a", "d"]]


def test_vocabulary_ids_by_count_then_token() -> None:
    vocab = build_vocabulary(SENTENCES)
    assert vocab.tokens == ("a", "b", "c", "d")  # a:3, b:2, then c and d (1 each) by token
    assert [vocab.token_id(t) for t in "abcd"] == [2, 3, 4, 5]
    assert len(vocab) == 6
    assert (vocab.token(PAD_ID), vocab.token(OOV_ID), vocab.token(5)) == ("<pad>", "<unk>", "d")
    assert build_vocabulary(SENTENCES[::-1]) == vocab  # independent of sentence order
    assert build_vocabulary(SENTENCES, min_count=2).tokens == ("a", "b")


def test_unseen_words_map_to_oov() -> None:
    vocab = build_vocabulary(SENTENCES)
    ids = vocab.encode(["a", "zebra", "d"])
    assert ids.dtype == np.int32
    assert ids.tolist() == [2, OOV_ID, 5]
    assert "zebra" not in vocab and "a" in vocab
    assert vocab.encode([]).shape == (0,)


def test_vocabulary_json_round_trip_and_fingerprint() -> None:
    vocab = build_vocabulary(SENTENCES)
    saved = vocab.to_json()
    assert json.loads(saved)["tokens"] == ["a", "b", "c", "d"]
    loaded = Vocabulary.from_json(saved)
    assert loaded == vocab and loaded.fingerprint == vocab.fingerprint
    assert loaded.encode(["d", "q"]).tolist() == [5, OOV_ID]
    changed = build_vocabulary([["b", "a", "c"], ["a", "b"], ["a", "e"]])
    assert changed.fingerprint != vocab.fingerprint
    assert len(vocab.fingerprint) == 64


@pytest.mark.parametrize("bad", ["not json", "[]", '{"format": "other"}'])
def test_vocabulary_from_json_rejects_other_files(bad: str) -> None:
    with pytest.raises(TextDataError):
        Vocabulary.from_json(bad)


# -------------------------------------------------------------------------------------- padding


def test_encode_padded_right_pads_and_truncates() -> None:
    vocab = build_vocabulary(SENTENCES)
    sentences = [["a", "b"], [], ["a", "b", "c", "d", "a", "b"], ["x"]]
    ids = encode_padded(sentences, vocab, 4)
    assert ids.dtype == np.int32 and ids.shape == (4, 4)
    assert ids.tolist() == [[2, 3, 0, 0], [0, 0, 0, 0], [2, 3, 4, 5], [OOV_ID, 0, 0, 0]]
    assert max_length(sentences) == 6 and max_length([]) == 0
    assert encode_padded(sentences, vocab, max_length(sentences))[2].tolist() == [2, 3, 4, 5, 2, 3]


def test_pad_id_matches_the_model_and_module_needs_no_jax() -> None:
    model_source = (ROOT / "cnnjax/models/textcnn.py").read_text()
    assert f"PAD_ID = {PAD_ID}\n" in model_source
    tree = ast.parse(pathlib.Path(text.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"jax", "flax", "tensorflow", "tensorflow_datasets", "cnnjax"}


# ---------------------------------------------------------------------------------------- folds


def test_cv_folds_disjoint_covering_balanced() -> None:
    folds = cv_folds(103, 10, seed=3)
    assert folds.shape == (103,) and set(folds.tolist()) == set(range(10))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    tested = []
    for fold in range(10):
        train, test = fold_split(folds, fold)
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).tolist() == list(range(103))
        tested.extend(test.tolist())
    assert sorted(tested) == list(range(103))


def test_cv_folds_seeded() -> None:
    assert np.array_equal(cv_folds(50, 5, seed=1), cv_folds(50, 5, seed=1))
    assert not np.array_equal(cv_folds(50, 5, seed=1), cv_folds(50, 5, seed=2))


def test_cv_and_fold_errors() -> None:
    with pytest.raises(TextDataError):
        cv_folds(5, 10)
    with pytest.raises(TextDataError):
        cv_folds(5, 1)
    with pytest.raises(TextDataError):
        fold_split(cv_folds(20, 10), 10)


def test_dev_split_holds_out_ten_percent() -> None:
    train, dev = dev_split(1000, seed=4)
    assert len(dev) == 100 and len(train) == 900
    assert np.union1d(train, dev).tolist() == list(range(1000))
    assert np.array_equal(dev, dev_split(1000, seed=4)[1])
    assert not np.array_equal(dev, dev_split(1000, seed=5)[1])
    assert len(dev_split(7)[1]) == 1  # never empty
    with pytest.raises(TextDataError):
        dev_split(10, fraction=1.0)


# ----------------------------------------------------------------------------------------- MR


def test_rt_polarity_round_trip_latin1(tmp_path: pathlib.Path) -> None:
    write_rt_polarity(tmp_path, ["café au lait", b"caf\xe9 \x85 noir "], ["bad  movie"])
    raw = (tmp_path / "rt-polarity.pos").read_bytes()
    assert raw == b"caf\xe9 au lait\ncaf\xe9 \x85 noir \n"  # latin-1, one line each
    assert read_rt_polarity(tmp_path) == [
        ("café au lait", 1),
        ("café \x85 noir", 1),  # 0x85 is not a line break here
        ("bad  movie", 0),
    ]
    assert tokenize(read_rt_polarity(tmp_path)[1][0]) == ["caf", "noir"]


def test_rt_polarity_in_extracted_subfolder(tmp_path: pathlib.Path) -> None:
    write_rt_polarity(tmp_path / "rt-polaritydata", ["good"], ["bad"])
    assert read_rt_polarity(tmp_path) == [("good", 1), ("bad", 0)]


def test_rt_polarity_missing_file_one_line_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TextDataError) as info:
        read_rt_polarity(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "rt-polarity.pos" in message and "--manual_dir" in message
    assert isinstance(info.value, ValueError)


def test_rt_polarity_empty_file_one_line_error(tmp_path: pathlib.Path) -> None:
    write_rt_polarity(tmp_path, ["good"], [])
    with pytest.raises(TextDataError, match="rt-polarity.neg is empty") as info:
        read_rt_polarity(tmp_path)
    assert "\n" not in str(info.value)
