"""Kim's sentence datasets through the catalog, tfds prepare (ArrayRecord) and the grain loader.

Every dataset is prepared offline from tiny files in its real format: MR's rt-polarity files
(`write_rt_polarity`) and TREC's .label files in a manual dir; GLUE's SST-2 tsv files and an
aclImdb tar.gz handed to tfds's own builders in place of the download (tfds.testing.mock_data
does not write the ArrayRecord shards the loader opens and checks, so it cannot stand in).
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

import cnnjax.data as data
from cnnjax.data import sources, text
from cnnjax.data.catalog import dataset_info
from cnnjax.data.prepare_text import TREC_CLASSES
from cnnjax.data.preprocess import sentence_tokens

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT_NAMES = ("mr", "trec", "sst1", "sst2_trees", "sst2", "imdb_reviews", "subj", "cr", "mpqa")
# MR: every sentence has a word of its own ("uniqpos3"), so a fold's own words are known.
POSITIVES = [f"a good movie , uniqpos{i} and fine{'!' * (i % 3)}" for i in range(23)]
NEGATIVES = [f"the bad film uniqneg{i} , sadly" for i in range(20)] + ["caf\xe9 awful"]
NUM_MR = len(POSITIVES) + len(NEGATIVES)  # 44
TREC_TRAIN = [
    b"NUM:date When was Ozzy Osbourne born ?",
    b"HUM:ind Who killed Gandhi ?",
    b"LOC:city What is the capital of Peru ?",
    b"DESC:def What is a golden parachute ?",
    b"ENTY:animal What sister\xf0city has the most dogs ?",  # the real file's stray byte
    b"ABBR:exp What does NASA stand for ?",
    b"",
]
TREC_TEST = [b"NUM:count How many Beatles were there ?", b"HUM:ind Who is What ?"]


def _batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _records(name: str, split: str, data_dir) -> list[dict]:
    """Every record of a prepared split, in the split's (tfds) order."""
    source = sources.open_text_source(dataset_info(name), split, data_dir)
    return source.__getitems__(list(range(len(source))))


def _ids(name: str, sentence: bytes, vocabulary: text.Vocabulary, length: int) -> np.ndarray:
    """The row a loader should give for `sentence`: cleaned, encoded, right-padded."""
    tokens = sentence_tokens(sentence, dataset_info(name).clean)
    return text.encode_padded([tokens], vocabulary, length)[0]


def _mr_loader(mr, split="train", **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("train", split == "train")
    kwargs.setdefault("fold", 0)
    kwargs.setdefault("shard", (0, 1))
    kwargs.setdefault("read_threads", 1)
    return data.make_loader("mr", split, data_dir=mr, **kwargs)


@pytest.fixture(scope="module")
def mr(tmp_path_factory) -> pathlib.Path:
    """MR prepared from a 44-sentence rt-polarity pair; the data dir."""
    root = tmp_path_factory.mktemp("mr")
    text.write_rt_polarity(root / "manual", POSITIVES, NEGATIVES)
    data.prepare("mr", data_dir=root / "data", manual_dir=root / "manual")
    return root / "data"


@pytest.fixture(scope="module")
def trec(tmp_path_factory) -> pathlib.Path:
    """TREC prepared from tiny train_5500.label / TREC_10.label files; the data dir."""
    root = tmp_path_factory.mktemp("trec")
    (root / "manual").mkdir()
    (root / "manual" / "train_5500.label").write_bytes(b"\n".join(TREC_TRAIN))
    (root / "manual" / "TREC_10.label").write_bytes(b"\r\n".join(TREC_TEST) + b"\r\n")
    data.prepare("trec", data_dir=root / "data", manual_dir=root / "manual")
    return root / "data"


# ------------------------------------------------------------------------------------- catalog


def test_text_catalog_entries():
    assert {n for n in data.DATASETS if dataset_info(n).pipeline == "text"} == set(TEXT_NAMES)
    mr_info = dataset_info("mr")
    assert (mr_info.cv_folds, mr_info.clean, mr_info.num_classes) == (10, "kim", 2)
    assert mr_info.manual_files == ("rt-polarity.pos", "rt-polarity.neg")
    trec_info = dataset_info("trec")
    assert (trec_info.clean, trec_info.num_classes, trec_info.cv_folds) == ("kim_cased", 6, 0)
    assert set(trec_info.manual_files) == {"train_5500.label", "TREC_10.label"}
    sst2 = dataset_info("sst2")
    assert (sst2.tfds_name, sst2.eval_split, sst2.clean) == ("glue/sst2", "validation", "sst")
    assert sst2.text_feature == "sentence" and not sst2.manual_download
    imdb = dataset_info("imdb_reviews")
    assert (imdb.tfds_name, imdb.eval_split, imdb.num_classes) == (
        "imdb_reviews/plain_text",
        "test",
        2,
    )


@pytest.mark.parametrize("name", TEXT_NAMES)
def test_text_catalog_agrees_with_the_tfds_builder(name, tmp_path):
    info = dataset_info(name)
    builder = sources.tfds_builder(info, str(tmp_path))
    features = builder.info.features
    assert features["label"].num_classes == info.num_classes
    assert type(features[info.text_feature]).__name__ == "Text"
    if name == "trec":
        assert features["label"].names == list(TREC_CLASSES)


# ------------------------------------------------------------------------------------- MR


def test_mr_is_prepared_as_one_train_split_with_text_and_label(mr):
    builder = sources.prepared_builder(dataset_info("mr"), str(mr))
    assert set(builder.info.splits) == {"train"}
    assert builder.info.splits["train"].num_examples == NUM_MR
    records = _records("mr", "train", mr)
    got = sorted((r["text"].decode(), int(r["label"])) for r in records)
    assert got == sorted([(s, 1) for s in POSITIVES] + [(s, 0) for s in NEGATIVES])


def test_mr_batches_are_int32_ids_right_padded_with_their_labels(mr):
    loader = _mr_loader(mr)
    vocabulary, length = loader.vocabulary, loader.max_length
    train = sources.fold_indices(dataset_info("mr"), "train", NUM_MR, sources.Fold(0, 10))
    records = _records("mr", "train", mr)
    tokens = [sentence_tokens(records[i]["text"], "kim") for i in train]
    assert length == max(len(t) for t in tokens) == data.training_text("mr", mr, fold=0).max_length
    expected = {
        _ids("mr", records[i]["text"], vocabulary, length).tobytes(): int(records[i]["label"])
        for i in train
    }
    for batch in (next(loader) for _ in range(12)):  # past the first epoch (39 sentences)
        assert set(batch) == {"image", "label"}
        assert batch["image"].dtype == np.int32 and batch["image"].shape == (4, length)
        assert batch["label"].dtype == np.int32
        for row, label in zip(batch["image"], batch["label"], strict=True):
            assert expected[row.tobytes()] == label
            words = int(np.count_nonzero(row))
            assert row[:words].all() and not row[words:].any()  # right padding with id 0
            assert text.OOV_ID not in row  # every training word has an id


def test_vocabulary_comes_from_the_training_folds_only(mr):
    info, records = dataset_info("mr"), _records("mr", "train", mr)
    for fold in (0, 7):
        vocabulary = data.training_text("mr", mr, fold=fold).vocabulary
        train, test = text.fold_split(text.cv_folds(NUM_MR, 10, 0), fold)
        own = {w for i in test for w in records[i]["text"].decode().split() if "uniq" in w}
        assert own and not own & set(vocabulary.tokens)
        assert {
            w for i in train for w in records[i]["text"].decode().split() if "uniq" in w
        } <= set(vocabulary.tokens)
        loader = _mr_loader(mr, "test", fold=fold, batch_size=8)
        assert loader.vocabulary == vocabulary
        rows = [r for b in loader for r, m in zip(b["image"], b["mask"], strict=True) if m]
        expected = [_ids("mr", records[i]["text"], vocabulary, loader.max_length) for i in test]
        np.testing.assert_array_equal(rows, expected)  # the fold, in order
        # The test fold's own word (and "café"'s "caf", if there) is OOV.
        assert all(text.OOV_ID in row for row in rows)
        assert sources.fold_indices(info, "test", NUM_MR, sources.Fold(fold, 10)).tolist() == (
            test.tolist()
        )


def test_ten_folds_are_disjoint_cover_mr_and_have_the_right_lengths(mr):
    info, seen = dataset_info("mr"), []
    for fold in range(10):
        chosen = sources.Fold(fold, 10, seed=3)
        test = sources.fold_indices(info, "test", NUM_MR, chosen)
        train = sources.fold_indices(info, "train", NUM_MR, chosen)
        assert sorted([*test, *train]) == list(range(NUM_MR))
        assert len(test) in (4, 5)  # 44 over 10 folds
        seen.extend(test)
        assert data.num_examples("mr", "test", mr, fold=fold, fold_seed=3) == len(test)
        assert data.num_examples("mr", "train", mr, fold=fold, fold_seed=3) == len(train)
    assert sorted(seen) == list(range(NUM_MR))
    kwargs = dict(data_dir=mr, process_count=2, fold=0)
    assert data.steps_per_epoch("mr", "train", batch_size=3, train=True, **kwargs) == 39 // 6
    assert data.steps_per_epoch("mr", "test", batch_size=2, train=False, **kwargs) == 2


def _sentences_of(loader) -> list[tuple[int, ...]]:
    """The (masked) id rows of one pass of an eval loader."""
    rows = []
    for batch in loader:
        rows += [tuple(r) for r, m in zip(batch["image"], batch["mask"], strict=True) if m]
    return rows


def test_dev_holdout_splits_the_training_folds_and_leaves_the_test_fold(mr):
    # fold 1's training folds: 39 or 40 sentences; 10% (rounded half up) are held out as dev.
    train_count = data.num_examples("mr", "train", mr, fold=1)
    dev_count = data.num_examples("mr", "dev", mr, fold=1, dev_fraction=0.1)
    assert dev_count == int(train_count * 0.1 + 0.5)
    assert data.num_examples("mr", "train", mr, fold=1, dev_fraction=0.1) == (
        train_count - dev_count
    )
    assert data.num_examples("mr", "test", mr, fold=1, dev_fraction=0.1) == NUM_MR - train_count
    args = dict(fold=1, dev_fraction=0.1, train=False, batch_size=8)
    dev = _sentences_of(_mr_loader(mr, "dev", **args))
    rest = _sentences_of(_mr_loader(mr, "train", **args))
    whole = _sentences_of(_mr_loader(mr, "train", fold=1, train=False, batch_size=8))
    assert len(dev) == dev_count and sorted(dev + rest) == sorted(whole)
    # The vocabulary is the training folds' whatever is held out (its words map to known ids).
    assert _mr_loader(mr, "dev", **args).vocabulary == _mr_loader(mr, "train", fold=1).vocabulary
    # Which sentences are held out depends on dev_seed, not on the shuffle seed.
    assert _sentences_of(_mr_loader(mr, "dev", seed=7, **args)) == dev
    other = _sentences_of(_mr_loader(mr, "dev", dev_seed=1, **args))
    assert sorted(other) != sorted(dev)
    with pytest.raises(data.UnknownSplitError, match="pass dev_fraction="):
        _mr_loader(mr, "dev", train=False)
    with pytest.raises(data.LoaderConfigError, match="dev_fraction must be in"):
        _mr_loader(mr, "dev", train=False, dev_fraction=1.5)


def test_folds_follow_fold_seed_not_the_shuffle_seed(mr):
    a = _mr_loader(mr, "test", fold=2, seed=1)
    b = _mr_loader(mr, "test", fold=2, seed=9)
    _batches_equal(next(a), next(b))
    other = _mr_loader(mr, "test", fold=2, fold_seed=1)
    assert data.training_text("mr", mr, fold=2, seed=1).vocabulary == other.vocabulary
    assert other.vocabulary != a.vocabulary  # other training folds, other words


def test_same_seed_same_batches_and_another_seed_another_order(mr):
    loader, again = _mr_loader(mr, seed=3), _mr_loader(mr, seed=3, read_threads=3)
    first = [next(loader) for _ in range(6)]
    for a, b in zip(first, [next(again) for _ in range(6)], strict=True):
        _batches_equal(a, b)
    other = _mr_loader(mr, seed=4)
    assert any(not np.array_equal(a["image"], next(other)["image"]) for a in first)


def test_two_process_shards_are_halves_of_the_one_process_batches(mr):
    one = _mr_loader(mr, batch_size=4, seed=5)
    two = [_mr_loader(mr, batch_size=2, seed=5, shard=(k, 2)) for k in range(2)]
    for _ in range(12):  # beyond the first epoch (39 or 40 training sentences)
        whole, parts = next(one), [next(loader) for loader in two]
        for key in ("image", "label"):
            np.testing.assert_array_equal(
                np.concatenate([parts[0][key], parts[1][key]]), whole[key]
            )
    evals = [_mr_loader(mr, "test", batch_size=2, shard=(k, 2)) for k in range(2)]
    batches = [list(loader) for loader in evals]
    assert len(batches[0]) == len(batches[1]) == evals[0].num_batches
    masked = [sum(int(b["mask"].sum()) for b in shard) for shard in batches]
    assert sum(masked) == data.num_examples("mr", "test", mr, fold=0)


def test_state_round_trip(mr):
    import json

    reference = _mr_loader(mr, batch_size=3, seed=2)
    states, batches = [], []
    for _ in range(16):
        states.append(json.loads(json.dumps(reference.get_state())))
        batches.append(next(reference))
    for step in (0, 5, 13, 15):
        resumed = _mr_loader(mr, batch_size=3, seed=2)
        resumed.set_state(states[step])
        _batches_equal(next(resumed), batches[step])


@pytest.mark.slow
def test_worker_processes_give_the_same_text_batches(mr):
    in_process = _mr_loader(mr, seed=6)
    expected = [next(in_process) for _ in range(5)]
    loader = _mr_loader(mr, seed=6, workers=2)
    try:
        got = [next(loader) for _ in range(5)]
    finally:
        loader.close()
    for a, b in zip(got, expected, strict=True):
        _batches_equal(a, b)


def test_given_vocabulary_and_max_length_are_used(mr):
    vocabulary = text.Vocabulary(("good", "movie"))
    loader = _mr_loader(mr, "test", vocabulary=vocabulary, max_length=3, fold=0)
    assert loader.vocabulary is vocabulary and loader.max_length == 3
    records = _records("mr", "train", mr)
    _, test = text.fold_split(text.cv_folds(NUM_MR, 10, 0), 0)
    batch = next(loader)
    assert batch["image"].shape == (4, 3)
    for row, i in zip(batch["image"], test, strict=False):
        # Truncated to the first three tokens; only "good" and "movie" have ids.
        np.testing.assert_array_equal(row, _ids("mr", records[i]["text"], vocabulary, 3))
        assert set(row.tolist()) <= {text.OOV_ID, 2, 3}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fold=None), "no test split: it is cross-validated; pass fold=0..9"),
        (dict(fold=10), "fold must be in 0..9"),
        (dict(fold=0, num_folds=1), "num_folds must be an integer >= 2"),
        (dict(image_size=32), "image_size apply to image datasets only"),
        (dict(mean=(0.5,)), "mean apply to image datasets only"),
        (dict(max_length=0), "max_length must be a positive integer"),
        (dict(vocabulary=["a"]), "vocabulary must be a cnnjax.data.text.Vocabulary"),
    ],
)
def test_bad_text_arguments_are_one_line_errors(mr, kwargs, match):
    with pytest.raises(data.LoaderConfigError, match=match) as err:
        _mr_loader(mr, **kwargs)
    assert "\n" not in str(err.value)


def test_text_arguments_are_refused_for_images_and_folds_for_test_split_sets(trec, tmp_path):
    with pytest.raises(data.LoaderConfigError, match="fold apply to text datasets only"):
        data.make_loader("mnist", "train", batch_size=2, train=True, data_dir=tmp_path, fold=1)
    with pytest.raises(data.LoaderConfigError, match="'test' split and no folds"):
        data.make_loader("trec", "train", batch_size=2, train=True, data_dir=trec, fold=1)
    with pytest.raises(data.UnknownSplitError, match="available with fold=: train, test"):
        data.make_loader("mr", "validation", batch_size=2, train=False, data_dir=tmp_path, fold=1)


# ------------------------------------------------------------------------------------- TREC


def test_trec_keeps_case_and_maps_coarse_labels(trec):
    assert data.num_examples("trec", "train", trec) == 6
    assert data.num_examples("trec", "test", trec) == 2
    vocabulary = data.training_text("trec", trec).vocabulary
    assert {"When", "Ozzy", "NASA", "What"} <= set(vocabulary.tokens)
    assert "what" not in vocabulary and "nasa" not in vocabulary
    assert "sister" in vocabulary and "city" in vocabulary  # the stray byte is a separator
    labels = {r["text"].decode(): int(r["label"]) for r in _records("trec", "train", trec)}
    assert labels["When was Ozzy Osbourne born ?"] == TREC_CLASSES.index("NUM")
    assert labels["What does NASA stand for ?"] == TREC_CLASSES.index("ABBR")
    loader = data.make_loader(
        "trec", "test", batch_size=4, train=False, data_dir=trec, shard=(0, 1)
    )
    batch = next(loader)
    assert batch["mask"].tolist() == [True, True, False, False]
    words = [[vocabulary.token(i) for i in row if i] for row in batch["image"][:2]]
    # "Beatles" is not in the training questions; "What" is (case kept, so not "what").
    assert sorted(words) == sorted([["<unk>"] * 5 + ["\\?"], ["Who", "is", "What", "\\?"]])
    assert sorted(batch["label"][:2].tolist()) == sorted(
        [TREC_CLASSES.index("NUM"), TREC_CLASSES.index("HUM")]
    )


# ------------------------------------------------------------------------------------- SST

SST_TRAIN = [
    "(3 (2 (2 The) (2 film)) (4 (3 (2 is) (4 great)) (2 .)))",
    "(1 (2 The) (0 (0 awful) (2 plot)))",  # "The" again: kept once
]
SST_DEV = ["(2 (2 It) (2 is))", "(4 (4 Superb) (2 !))"]
SST_TEST = ["(0 (0 Bad) (2 (2 -LRB-) (2 (2 sic) (2 -RRB-))))", "(3 (2 Fine) (3 film))"]
# Every node's (label, words) by hand, in the order the nodes open, distinct phrases only.
SST_PHRASES = [
    ("The film is great .", 3),
    ("The film", 2),
    ("The", 2),
    ("film", 2),
    ("is great .", 4),
    ("is great", 3),
    ("is", 2),
    ("great", 4),
    (".", 2),
    ("The awful plot", 1),
    ("awful plot", 0),
    ("awful", 0),
    ("plot", 2),
]


@pytest.fixture(scope="module")
def sst_trees(tmp_path_factory) -> pathlib.Path:
    """trainDevTestTrees_PTB.zip's layout: the folder holding trees/{train,dev,test}.txt."""
    root = tmp_path_factory.mktemp("sst")
    (root / "trees").mkdir()
    for name, lines in (("train", SST_TRAIN), ("dev", SST_DEV), ("test", SST_TEST)):
        (root / "trees" / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _texts(name: str, split: str, data_dir) -> list[tuple[str, int]]:
    return [(r["text"].decode(), int(r["label"])) for r in _records(name, split, data_dir)]


def test_sst1_trains_on_every_phrase_and_tests_on_sentences(sst_trees, tmp_path):
    data.prepare("sst1", data_dir=tmp_path, manual_dir=sst_trees)  # finds trees/ inside
    assert sorted(_texts("sst1", "train", tmp_path)) == sorted(SST_PHRASES)
    assert sorted(_texts("sst1", "validation", tmp_path)) == [("It is", 2), ("Superb !", 4)]
    assert sorted(_texts("sst1", "test", tmp_path)) == [("Bad ( sic )", 0), ("Fine film", 3)]
    vocabulary = data.training_text("sst1", tmp_path).vocabulary
    loader = data.make_loader("sst1", "test", batch_size=2, train=False, data_dir=tmp_path)
    batch = next(loader)
    rows = {
        int(label): list(ids) for ids, label in zip(batch["image"], batch["label"], strict=True)
    }
    # clean_str_sst keeps the brackets as words; none of "bad ( sic )" is a training word,
    # "film" is; rows are padded to the longest training phrase ("the film is great": its "."
    # is filtered out).
    length = data.training_text("sst1", tmp_path).max_length
    assert rows[0] == list(_ids("sst1", b"Bad ( sic )", vocabulary, length))
    assert rows[0] == [text.OOV_ID] * 4 and length == 4
    assert rows[3][:2] == [text.OOV_ID, vocabulary.token_id("film")]


def test_sst2_trees_drops_neutral_and_binarises(sst_trees, tmp_path):
    data.prepare("sst2_trees", data_dir=tmp_path, manual_dir=sst_trees / "trees")
    expected = sorted((t, int(label > 2)) for t, label in SST_PHRASES if label != 2)
    assert sorted(_texts("sst2_trees", "train", tmp_path)) == expected
    assert _texts("sst2_trees", "validation", tmp_path) == [("Superb !", 1)]
    assert sorted(_texts("sst2_trees", "test", tmp_path)) == [("Bad ( sic )", 0), ("Fine film", 1)]


def test_manual_files_may_sit_in_the_folder_their_archive_extracts_to(tmp_path):
    text.write_rt_polarity(tmp_path / "manual" / "rt-polaritydata", POSITIVES, NEGATIVES)
    data.prepare("mr", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert (
        data.num_examples("mr", "train", tmp_path / "data", fold=0)
        + data.num_examples("mr", "test", tmp_path / "data", fold=0)
        == NUM_MR
    )


def test_a_dataset_with_its_own_dev_split_refuses_dev_fraction():
    from cnnjax.train.config import TrainConfig
    from cnnjax.train.validation import ConfigError, validate_config

    config = TrainConfig(model="textcnn", dataset="sst1", dev_fraction=0.1)
    with pytest.raises(ConfigError, match="sst1 has a dev split of its own .'validation'."):
        validate_config(config, processes=1)
    validate_config(config.replace(dev_fraction=0.0, early_stopping_patience=3), processes=1)
    with pytest.raises(ConfigError, match="--early_stopping_patience needs a dev set"):
        validate_config(config.replace(dataset="trec", dev_fraction=0.0, early_stopping_patience=3))
    with pytest.raises(ConfigError, match="--dev_fraction: text datasets only"):
        validate_config(TrainConfig(model="lenet5", dataset="mnist", dev_fraction=0.1))


def test_malformed_sst_tree_names_file_and_line(sst_trees, tmp_path):
    bad = tmp_path / "manual"
    bad.mkdir()
    for name, lines in (("train", SST_TRAIN), ("dev", ["(2 (2 It) (2 is)"]), ("test", SST_TEST)):
        (bad / f"{name}.txt").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(text.TextDataError) as err:
        data.prepare("sst1", data_dir=tmp_path / "data", manual_dir=bad)
    assert "dev.txt line 1 is not an SST tree (empty or unclosed tree)" in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- errors


def test_missing_manual_files_are_one_line_naming_them_and_manual_dir(tmp_path):
    from cnnjax.data.prepare import ManualFilesMissingError

    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "train_5500.label").write_bytes(TREC_TRAIN[0])
    for name, missing in (("mr", "rt-polarity.pos, rt-polarity.neg"), ("trec", "TREC_10.label")):
        with pytest.raises(ManualFilesMissingError) as err:
            data.prepare(name, data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
        message = str(err.value)
        assert "\n" not in message and f"missing: {missing}" in message
        assert "--manual_dir" in message
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.make_loader("mr", "train", batch_size=2, train=True, data_dir=tmp_path, fold=0)
    message = str(err.value)
    assert "\n" not in message
    assert "--dataset=mr" in message and "--manual_dir=DIR" in message
    assert "rt-polarity.pos and rt-polarity.neg" in message


def test_malformed_trec_line_names_file_and_line(tmp_path):
    from cnnjax.data.prepare_text import read_trec

    path = tmp_path / "TREC_10.label"
    path.write_bytes(b"NUM:date When ?\nWHAT:x Why ?\n")
    with pytest.raises(text.TextDataError, match=r"TREC_10.label line 2 is not 'COARSE:fine"):
        read_trec(path)


# ------------------------------------------------------------------------------------- SST-2, IMDB


def _fake_downloads(monkeypatch, paths: dict[str, pathlib.Path]) -> None:
    """tfds's download manager returns local `paths` (by URL suffix) instead of downloading."""
    import tensorflow_datasets as tfds

    def local(self, url):
        return os.fspath(next(p for suffix, p in paths.items() if str(url).endswith(suffix)))

    monkeypatch.setattr(tfds.download.DownloadManager, "download", local)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", local)


def test_sst2_from_glue_with_sst_cleaning(tmp_path, monkeypatch):
    folder = tmp_path / "extracted" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text(
        "sentence\tlabel\nhide new secretions from the parental units \t0\n"
        "the greatest musicians \t1\nis n't -lrb- quite -rrb- good \t0\ngreatest \t1\n"
    )
    (folder / "dev.tsv").write_text("sentence\tlabel\nthe greatest parental film , yes . \t1\n")
    (folder / "test.tsv").write_text("index\tsentence\n0\tuncharted depths\n")
    _fake_downloads(monkeypatch, {"SST-2.zip": tmp_path / "extracted"})
    data.prepare("sst2", data_dir=tmp_path / "data")
    loader = data.make_loader(
        "sst2", "validation", batch_size=2, train=False, data_dir=tmp_path / "data", shard=(0, 1)
    )
    batch = next(loader)
    vocabulary = loader.vocabulary
    assert loader.max_length == 7  # "hide new secretions from the parental units"
    # SST cleaning drops "-" and keeps "n't" attached: "is n't lrb quite rrb good".
    assert "n't" in vocabulary and "lrb" in vocabulary and "-lrb-" not in vocabulary
    words = [vocabulary.token(i) for i in batch["image"][0] if i]
    assert words == ["the", "greatest", "parental", "<unk>", "<unk>", "<unk>"]  # film , yes
    assert batch["label"].tolist() == [1, 0] and batch["mask"].tolist() == [True, False]
    train = data.make_loader(
        "sst2", "train", batch_size=4, train=True, data_dir=tmp_path / "data", shard=(0, 1)
    )
    assert sorted(next(train)["label"].tolist()) == [0, 0, 1, 1]


def _imdb_tar(path: pathlib.Path, reviews: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, body in reviews.items():
            member = tarfile.TarInfo(f"aclImdb/{name}")
            member.size = len(body)
            tar.addfile(member, io.BytesIO(body))


def test_imdb_reviews_from_its_tfds_builder(tmp_path, monkeypatch):
    _imdb_tar(
        tmp_path / "aclImdb_v1.tar.gz",
        {
            "train/pos/0_9.txt": b"A wonderful film.<br /><br />Loved it!",
            "train/neg/1_2.txt": b"Dull, dull, DULL.",
            "train/unsup/2_0.txt": b"Unlabelled words.",
            "test/pos/3_8.txt": b"Wonderful acting, loved the score.",
            "test/neg/4_1.txt": b"Not wonderful.",
        },
    )
    _fake_downloads(monkeypatch, {"aclImdb_v1.tar.gz": tmp_path / "aclImdb_v1.tar.gz"})
    data.prepare("imdb_reviews", data_dir=tmp_path / "data")
    loader = data.make_loader(
        "imdb_reviews", "test", batch_size=2, train=False, data_dir=tmp_path / "data", shard=(0, 1)
    )
    batch, vocabulary = next(loader), loader.vocabulary
    assert loader.max_length == 8  # "a wonderful film br br loved it !" (Kim's cleaning)
    assert set(vocabulary.tokens) == {
        "a",
        "wonderful",
        "film",
        "br",
        "loved",
        "it",
        "!",
        "dull",
        ",",
    }
    rows = {
        int(label): [vocabulary.token(i) for i in row if i]
        for row, label in zip(batch["image"], batch["label"], strict=True)
    }
    assert rows[1] == ["wonderful", "<unk>", ",", "loved", "<unk>", "<unk>"]
    assert rows[0] == ["<unk>", "wonderful"]


# ------------------------------------------------------------------------------------- hygiene


def test_loading_text_never_imports_tensorflow_nor_the_builders(mr):
    code = textwrap.dedent(
        f"""
        import sys
        from cnnjax.data import make_loader
        loader = make_loader("mr", "train", batch_size=2, train=True, data_dir={str(mr)!r},
                             fold=0, shard=(0, 1))
        assert next(loader)["image"].dtype.name == "int32"
        print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"
                     or m == "cnnjax.data.prepare_text"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------- Subj, CR, MPQA

# name: (label-1 file, label-0 file, label names): two files of sentences, one per line.
PAIR_SETS = {
    "subj": ("quote.tok.gt9.5000", "plot.tok.gt9.5000", ["obj", "subj"]),
    "cr": ("custrev.pos", "custrev.neg", ["neg", "pos"]),
    "mpqa": ("mpqa.pos", "mpqa.neg", ["neg", "pos"]),
}
PAIR_ONES = [f"i love it , great{i} !" for i in range(12)] + [b"na\xefve charm"]
PAIR_ZEROS = [f"it broke after day{i} , sadly" for i in range(10)]
NUM_PAIR = len(PAIR_ONES) + len(PAIR_ZEROS)  # 23


def _pair_text(sentence: str | bytes) -> str:
    return sentence.decode("latin-1") if isinstance(sentence, bytes) else sentence


@pytest.fixture(scope="module", params=sorted(PAIR_SETS))
def pair_set(request, tmp_path_factory) -> tuple[str, pathlib.Path]:
    """(name, data dir) of Subj, CR or MPQA prepared from a 23-sentence pair of files."""
    name = request.param
    positive, negative, _ = PAIR_SETS[name]
    root = tmp_path_factory.mktemp(name)
    (root / "manual").mkdir()
    ones = b"".join((s if isinstance(s, bytes) else s.encode()) + b"\n" for s in PAIR_ONES)
    (root / "manual" / positive).write_bytes(ones)
    (root / "manual" / negative).write_bytes(b"\r\n".join(s.encode() for s in PAIR_ZEROS))
    data.prepare(name, data_dir=root / "data", manual_dir=root / "manual")
    return name, root / "data"


def test_pair_sets_catalog_entries_and_builders(tmp_path):
    for name, (positive, negative, labels) in PAIR_SETS.items():
        info = dataset_info(name)
        assert (info.cv_folds, info.clean, info.num_classes) == (10, "kim", 2)
        assert info.manual_files == (positive, negative) and info.manual_download
        assert (info.train_split, info.eval_split) == ("train", "test")
        builder = sources.tfds_builder(info, str(tmp_path))
        assert builder.info.features["label"].names == labels


def test_pair_set_is_one_train_split_with_its_labels(pair_set):
    name, data_dir = pair_set
    builder = sources.prepared_builder(dataset_info(name), str(data_dir))
    assert set(builder.info.splits) == {"train"}
    assert builder.info.splits["train"].num_examples == NUM_PAIR
    got = sorted((r["text"].decode(), int(r["label"])) for r in _records(name, "train", data_dir))
    expected = [(_pair_text(s), 1) for s in PAIR_ONES] + [(s, 0) for s in PAIR_ZEROS]
    assert got == sorted(expected)  # "\r\n" endings stripped, latin-1 decoded


def test_pair_set_batches_are_int32_ids_with_their_labels(pair_set):
    name, data_dir = pair_set
    loader = data.make_loader(
        name, "train", batch_size=4, train=True, data_dir=data_dir, fold=0, shard=(0, 1)
    )
    vocabulary, length = loader.vocabulary, loader.max_length
    records = _records(name, "train", data_dir)
    train = sources.fold_indices(dataset_info(name), "train", NUM_PAIR, sources.Fold(0, 10))
    expected = {
        _ids(name, records[i]["text"], vocabulary, length).tobytes(): int(records[i]["label"])
        for i in train
    }
    assert "love" in vocabulary and "broke" in vocabulary and "na" in vocabulary
    for batch in (next(loader) for _ in range(6)):  # past the first epoch (20 or 21 sentences)
        assert batch["image"].dtype == np.int32 and batch["image"].shape == (4, length)
        assert batch["label"].dtype == np.int32
        for row, label in zip(batch["image"], batch["label"], strict=True):
            assert expected[row.tobytes()] == label


def test_pair_set_ten_folds_cover_the_data(pair_set):
    name, data_dir = pair_set
    info, seen = dataset_info(name), []
    for fold in range(10):
        chosen = sources.Fold(fold, 10)
        test = sources.fold_indices(info, "test", NUM_PAIR, chosen)
        train = sources.fold_indices(info, "train", NUM_PAIR, chosen)
        assert sorted([*test, *train]) == list(range(NUM_PAIR))
        assert len(test) in (2, 3)  # 23 over 10 folds
        assert data.num_examples(name, "test", data_dir, fold=fold) == len(test)
        seen.extend(test)
    assert sorted(seen) == list(range(NUM_PAIR))
    loader = data.make_loader(
        name, "test", batch_size=4, train=False, data_dir=data_dir, fold=3, shard=(0, 1)
    )
    labels = [int(y) for b in loader for y, m in zip(b["label"], b["mask"], strict=True) if m]
    records = _records(name, "train", data_dir)
    test = sources.fold_indices(info, "test", NUM_PAIR, sources.Fold(3, 10))
    assert labels == [int(records[i]["label"]) for i in test]


@pytest.mark.parametrize("name", sorted(PAIR_SETS))
def test_pair_set_missing_files_are_one_line_errors(name, tmp_path):
    from cnnjax.data.prepare import ManualFilesMissingError
    from cnnjax.data.text import read_sentence_pair

    positive, negative, _ = PAIR_SETS[name]
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / positive).write_bytes(b"fine\n")
    with pytest.raises(ManualFilesMissingError) as err:
        data.prepare(name, data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    message = str(err.value)
    assert "\n" not in message and f"missing: {negative}" in message
    assert f"needs {positive} and {negative}" in message and "--manual_dir" in message
    with pytest.raises(text.TextDataError) as err:
        read_sentence_pair(tmp_path / "manual", positive, negative)
    message = str(err.value)
    assert "\n" not in message and f"{negative} not found" in message
    assert f"--manual_dir must hold {positive} and {negative}" in message
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.make_loader(name, "train", batch_size=2, train=True, data_dir=tmp_path, fold=0)
    assert "\n" not in str(err.value) and f"{positive} and {negative}" in str(err.value)
