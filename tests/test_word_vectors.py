"""Pretrained word vectors: every format read back exactly, Kim's unknown rows, streaming, errors.

The files are tiny ones written in the real formats by the module's own writers (and by hand
where a writer's variant matters: fastText's trailing spaces, invalid UTF-8, damage).
"""

from __future__ import annotations

import ast
import gzip
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import cnnjax.data.word_vectors as word_vectors_module
from cnnjax.data.word_vectors import (
    FORMATS,
    WordVectorsError,
    load_word_vectors,
    write_glove_text,
    write_word2vec_binary,
)

DIM = 4
VOCAB = ["<pad>", "the", "cat", "sat", "zebra"]  # zebra is in no file


def vectors(words: list[str], dim: int = DIM, seed: int = 1) -> dict[str, np.ndarray]:
    """Distinct float32 vectors (values well outside Kim's ±0.25) for `words`."""
    rng = np.random.default_rng(seed)
    return {w: rng.uniform(1, 2, dim).astype(np.float32) * rng.choice([-1, 1]) for w in words}


FILE_WORDS = vectors(["the", "Cat", "cat", "sat", "dog", "on"])


def write(path: Path, file_format: str, words: dict[str, np.ndarray], **kwargs) -> Path:
    """`words` written in `file_format` (one of FORMATS)."""
    if file_format == "word2vec-binary":
        return write_word2vec_binary(path, words, **kwargs)
    return write_glove_text(path, words, header=file_format == "word2vec-text", **kwargs)


def check_table(result, vocab: list[str], words: dict[str, np.ndarray], scale: float = 0.25):
    """Found rows equal the file's vectors, the others are U[-scale, scale], row 0 is zeros."""
    assert result.table.dtype == np.float32 and result.table.shape == (len(vocab), result.dim)
    np.testing.assert_array_equal(result.table[0], 0)
    for row, token in enumerate(vocab[1:], start=1):
        if token in words:
            np.testing.assert_array_equal(result.table[row], words[token])
        else:
            assert np.all(np.abs(result.table[row]) <= scale), token
    assert result.found == sum(t in words for t in vocab[1:])
    assert result.unknown == len(vocab) - 1 - result.found


@pytest.mark.parametrize(
    "name, file_format, kwargs",
    [
        ("vectors.bin", "word2vec-binary", {}),
        ("vectors.bin", "word2vec-binary", {"newline": False}),
        ("vectors.bin.gz", "word2vec-binary", {}),
        ("vectors.vec", "word2vec-text", {}),
        ("vectors.txt", "glove-text", {}),
        ("vectors.txt.gz", "glove-text", {}),
        ("no_extension", "word2vec-binary", {}),
        ("no_extension", "glove-text", {}),
    ],
)
def test_round_trip_keeps_only_the_vocabulary(tmp_path, name, file_format, kwargs):
    path = write(tmp_path / name, file_format, FILE_WORDS, **kwargs)
    result = load_word_vectors(path, VOCAB, dim=DIM)
    assert (result.format, result.dim, result.path, result.found) == (file_format, DIM, path, 3)
    check_table(result, VOCAB, FILE_WORDS)
    assert result.format in FORMATS


def test_the_binary_file_is_what_the_c_tool_writes(tmp_path):
    path = write_word2vec_binary(tmp_path / "v.bin", {"ab": np.array([1.0, -2.0], np.float32)})
    assert path.read_bytes() == b"1 2\nab " + np.array([1, -2], "<f4").tobytes() + b"\n"


def test_a_mapping_vocabulary_equals_the_list(tmp_path):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    as_list = load_word_vectors(path, VOCAB, seed=3)
    as_mapping = load_word_vectors(path, {t: i for i, t in enumerate(VOCAB)}, seed=3)
    np.testing.assert_array_equal(as_list.table, as_mapping.table)


def test_a_mapping_with_gaps_and_no_padding_token(tmp_path):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    result = load_word_vectors(path, {"the": 1, "sat": 4})
    assert result.table.shape == (5, DIM) and result.found == 2
    np.testing.assert_array_equal(result.table[0], 0)
    np.testing.assert_array_equal(result.table[4], FILE_WORDS["sat"])
    assert np.all(np.abs(result.table[[2, 3]]) <= 0.25)


def test_unknown_rows_are_kims_uniform_and_deterministic_per_seed(tmp_path):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    vocab = ["<pad>", "the", *(f"unk{i}" for i in range(300))]
    first = load_word_vectors(path, vocab, seed=7)
    again = load_word_vectors(path, vocab, seed=7)
    other = load_word_vectors(path, vocab, seed=8)
    np.testing.assert_array_equal(first.table, again.table)
    assert not np.array_equal(first.table[2:], other.table[2:])
    unknown = first.table[2:]
    assert unknown.min() >= -0.25 and unknown.max() <= 0.25
    assert unknown.min() < -0.24 and unknown.max() > 0.24  # spread over the whole range
    wider = load_word_vectors(path, vocab, unknown_scale=1.0)
    assert np.abs(wider.table[2:]).max() > 0.9


def test_an_unknown_row_does_not_depend_on_the_file(tmp_path):
    some = write(tmp_path / "some.bin", "word2vec-binary", FILE_WORDS)
    none = write(tmp_path / "none.bin", "word2vec-binary", vectors(["dog"]))
    np.testing.assert_array_equal(
        load_word_vectors(some, VOCAB).table[4], load_word_vectors(none, VOCAB).table[4]
    )


def test_a_glove_word_with_spaces(tmp_path):
    words = vectors(["the", ". . .", "at name@example.com", "cat"])
    path = write_glove_text(tmp_path / "glove.txt", words)
    vocab = ["<pad>", ". . .", "at name@example.com", "cat", "."]
    result = load_word_vectors(path, vocab)
    check_table(result, vocab, words)
    assert result.found == 3


def test_fasttext_text_with_trailing_spaces_and_crlf(tmp_path):
    path = tmp_path / "wiki.vec"
    path.write_bytes(b"2 3\r\nthe 1 2 3 \r\ncat\t4  5 6 \r\n")
    result = load_word_vectors(path, ["<pad>", "cat", "the"])
    assert result.format == "word2vec-text"
    np.testing.assert_array_equal(result.table[1:], [[4, 5, 6], [1, 2, 3]])


def test_newlines_before_binary_words_are_dropped(tmp_path):
    path = tmp_path / "v.bin"
    one, two = np.float32([1, 2]), np.float32([3, 4])
    path.write_bytes(b"2 2\nab " + one.tobytes() + b"\n\ncd " + two.tobytes())
    result = load_word_vectors(path, ["<pad>", "cd", "ab"])
    np.testing.assert_array_equal(result.table[1:], [two, one])


def test_lookup_is_exact_case_unless_lowercase_fallback(tmp_path):
    words = vectors(["Paris", "PARIS", "Rome", "rome", "Oslo"])
    path = write(tmp_path / "v.bin", "word2vec-binary", words)
    vocab = ["<pad>", "paris", "rome", "oslo", "Oslo"]
    exact = load_word_vectors(path, vocab)
    assert exact.found == 2  # rome, Oslo
    fallback = load_word_vectors(path, vocab, lowercase_fallback=True)
    assert fallback.found == 4
    np.testing.assert_array_equal(fallback.table[1], words["Paris"])  # the first in the file
    np.testing.assert_array_equal(fallback.table[2], words["rome"])  # exact beats lowercase
    np.testing.assert_array_equal(fallback.table[3], words["Oslo"])
    np.testing.assert_array_equal(fallback.table[4], words["Oslo"])


def test_the_first_of_a_repeated_word_counts(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("cat 1 2\ncat 3 4\n")
    np.testing.assert_array_equal(load_word_vectors(path, ["<pad>", "cat"]).table[1], [1, 2])


def test_utf8_words_and_an_invalid_byte_word(tmp_path):
    one, two, three = np.float32([1, 2]), np.float32([3, 4]), np.float32([5, 6])
    path = tmp_path / "v.bin"
    records = [b"\xff\xfeBad " + one.tobytes(), "Café ".encode() + two.tobytes()]
    path.write_bytes(b"3 2\n" + b"\n".join([*records, "naïve ".encode() + three.tobytes()]))
    result = load_word_vectors(
        path, ["<pad>", "café", "naïve", "\ufffd\ufffdbad"], lowercase_fallback=True
    )
    np.testing.assert_array_equal(result.table[1:3], [two, three])
    np.testing.assert_array_equal(result.table[3], one)  # decoded with errors='replace'
    exact = load_word_vectors(path, ["<pad>", "\ufffd\ufffdBad"])
    assert exact.found == 0  # invalid UTF-8 equals no token


def test_the_scan_stops_once_every_token_is_found(tmp_path):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    path.write_bytes(path.read_bytes()[:-10])  # the last record ("on") cut short
    assert load_word_vectors(path, ["<pad>", "the", "cat"]).found == 2
    with pytest.raises(WordVectorsError, match="record 6 of 6"):
        load_word_vectors(path, ["<pad>", "the", "zebra"])


def binary_bytes(words: dict[str, np.ndarray]) -> bytes:
    """A word2vec binary file's bytes."""
    dim = len(next(iter(words.values())))
    body = b"".join(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n" for w, v in words.items())
    return f"{len(words)} {dim}\n".encode() + body


GOOD = binary_bytes(FILE_WORDS)
NAN = binary_bytes({"the": np.float32([1, np.nan, 2, 3])})
TEXT = b"3 4\nthe 1 2 3 4\ncat 1 2 3\nsat 1 2 3 4\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file; pass --word_vectors="),
        (b"", "is empty"),
        (b" \n", "is empty"),
        (b"<!DOCTYPE html>\n<html>", "neither a 'COUNT DIM' header"),
        (b"3000000\n", "neither a 'COUNT DIM' header"),
        (b"0 300\n", "header '0 300' announces no vectors"),
        (b"5 0\n", "announces 0-d vectors"),
        ((793712314).to_bytes(4, "little") + b"\x0c\x00\x00\x00", "fastText model .bin"),
        (GOOD[:30], r"ends inside record 2 of 6 \(byte offset 24, 6 of its 21 bytes"),
        (GOOD[:60], "ends inside record 3 of 6"),
        (b"2 3\nab", "ends inside record 1 of 2"),
        (b"1 4\n" + b"x" * 20_000, "record 1 of 1 .* has no space within 10,000 bytes"),
        (GOOD.replace(b"6 4\n", b"6 3\n", 1), "goes on after the 6 vectors"),
        (GOOD.replace(b"6 4\n", b"6 5\n", 1), "the file ends inside record"),
        (TEXT, "line 3 has 4 fields, expected 5"),
        (b"2 2\nthe 1 2\n", "ends after 1 of the 2 vectors"),
        (b"1 2\nthe 1 2\ncat 3 4\n", "goes on after the 1 vectors"),
        (b"the 1 2 3 4\nsat 1 2\n", "line 2 has 3 fields, expected 5"),
        (b"the 1 2 3 4\ncat 1 2 x 4\n", "line 2 has a value that is not a number"),
        (NAN, r"record 1 \(word 'the'\) has non-finite values"),
        (b"the 1 inf 3 4\n", r"line 1 \(word 'the'\) has non-finite values"),
        (gzip.compress(GOOD, mtime=0)[:-30], "cannot be read"),  # fixed bytes: a stable test id
        (b"\x1f\x8b" + b"\x00" * 40, "cannot be read"),
    ],
)
def test_every_problem_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "vectors.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WordVectorsError, match=expected) as caught:
        load_word_vectors(path, ["<pad>", "the", "cat", "sat", "zebra"])
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message and f"--word_vectors={path}" in message, message


def test_a_dimension_other_than_the_models(tmp_path):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    with pytest.raises(WordVectorsError, match="has 4-d vectors, the model expects 300") as caught:
        load_word_vectors(path, VOCAB, dim=300)
    assert "embed_dim=4" in str(caught.value) and str(path) in str(caught.value)


def test_a_directory(tmp_path):
    with pytest.raises(WordVectorsError, match="is not a file"):
        load_word_vectors(tmp_path, VOCAB)


@pytest.mark.parametrize(
    "vocabulary, expected",
    [("the cat", "not str"), ({"the": -1}, "not an int >= 0"), ({"the": 1.0}, "not an int")],
)
def test_a_bad_vocabulary(tmp_path, vocabulary, expected):
    path = write(tmp_path / "v.bin", "word2vec-binary", FILE_WORDS)
    with pytest.raises(WordVectorsError, match=expected):
        load_word_vectors(path, vocabulary)


def test_the_module_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(Path(word_vectors_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {
        "__future__",
        "collections",
        "dataclasses",
        "gzip",
        "numpy",
        "os",
        "pathlib",
        "typing",
        "zlib",
    }, imported


@pytest.mark.slow
def test_streaming_a_large_binary_file_keeps_memory_small(tmp_path):
    """A 200k × 50 file (~42 MB) for a 10-word vocabulary: a few MiB of allocations at most."""
    count, dim = 200_000, 50
    table = np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)
    path = write_word2vec_binary(tmp_path / "big.bin", {f"w{i}": table[i] for i in range(count)})
    size = path.stat().st_size
    picks = [5, 50_000, 123_456, count - 1]
    vocab = ["<pad>", *(f"w{i}" for i in picks), *(f"absent{i}" for i in range(5))]  # full scan
    start = time.perf_counter()
    result = load_word_vectors(path, vocab, dim=dim)
    seconds = time.perf_counter() - start
    print(f"\nstreamed {size / 1e6:.1f} MB in {seconds:.2f} s: {size / 1e6 / seconds:.0f} MB/s")
    assert result.found == len(picks)
    np.testing.assert_array_equal(result.table[1 : 1 + len(picks)], table[picks])
    tracemalloc.start()
    try:
        load_word_vectors(path, vocab, dim=dim)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak traced allocation {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file")
    assert peak < size / 8
