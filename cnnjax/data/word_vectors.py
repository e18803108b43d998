"""Pretrained word vectors (word2vec, fastText, GloVe) as an embedding table for a vocabulary.

`load_word_vectors(path, vocabulary)` streams the file once, in 1 MiB chunks or line by line,
and keeps only the vectors of the vocabulary's words, so a 3.6 GB GoogleNews file needs a few
MiB of memory beyond the (vocab_size, dim) float32 table it returns. The table is what
`cnnjax.models.textcnn.load_embeddings` takes.

Formats, detected from the content (never the extension):

* word2vec binary (the C tool's `-binary 1` output, e.g. GoogleNews-vectors-negative300.bin):
  an ASCII header line "V D\\n", then V records, each the word's bytes up to a space and D
  little-endian float32 (4·D bytes). The C tool writes a "\\n" after each record, some other
  writers do not: newlines that start a word are dropped (as gensim does). Exactly V records
  are read; anything but whitespace after them means the header does not fit the records.
* word2vec / fastText text (.txt, .vec): the header "V D", then V lines "word v1 ... vD"
  (fastText ends each line with a space; tabs and repeated spaces are accepted).
* GloVe text (e.g. glove.840B.300d.txt): no header, one "word v1 ... vD" line per word up to
  the end of the file. D is the first line's field count less one (so its word must have no
  space); a later line may have more fields, its last D being the vector and the rest, spaces
  included, the word (glove.840B has a few such "words"). A first line of exactly two
  integers is taken for a header, so a 1-d GloVe file cannot start with an integer word.
* Any of these gzip-compressed (recognised by the gzip magic bytes), decompressed as it streams.

A fastText model `.bin` (not a word2vec file) is recognised by its magic number and refused.

Lookup. The vocabulary is a token → id mapping whose id 0 is padding, or an id-ordered token
list whose first entry is the padding token. Tokens are looked up as given, case included, as
Kim (2014) did against the cased GoogleNews vectors; with `lowercase_fallback=True` a token
absent from the file also takes the vector of the first file word whose lowercase it is
("Paris" for "paris"), and an exact match found later still replaces it. Words are compared as
UTF-8 bytes: a file word that is not valid UTF-8 (GoogleNews has a few) equals no token; it is
decoded with errors='replace' (U+FFFD) only to lowercase it and to name it in messages. When a
word occurs twice in a file its first vector counts (as in gensim; Kim's code kept the last).

Rows. Row 0 (padding) is zeros. A word absent from the file gets U[-0.25, 0.25) in each
dimension, Kim's choice (`add_unknown_words`, a=0.25 in his process_data.py), drawn for the
whole table up front from `numpy.random.default_rng(seed)`, so a row depends only on the seed,
its id and the dimension, not on which other words the file has.

Checks. Every problem is a `WordVectorsError` (a ValueError) with a one-line message naming
`--word_vectors=PATH`, what is wrong and what to pass: a missing or empty file, a bad header,
a truncated binary record (its number and byte offset; of the decompressed data for .gz), a
text line with too few or too many fields (its line number), a dimension other than `dim=`,
and non-finite values. Only the kept vectors are parsed, so damage in the values of other
words goes unnoticed; and the scan stops once every token has its exact vector, so damage
after that point does too.

`write_word2vec_binary` and `write_glove_text` write small files in these formats, for tests
and examples.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

FORMATS = ("word2vec-binary", "word2vec-text", "glove-text")
FLAG = "--word_vectors"
PAD_ID = 0
CHUNK_BYTES = 1 << 20  # how much of the file is read at a time
MAX_WORD_BYTES = 10_000  # a longer "word" means the file is not what its header says
GZIP_MAGIC = b"\x1f\x8b"
FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")  # fastText's model .bin starts with it
_PASS = (
    f"pass {FLAG}= a word2vec .bin, a word2vec/fastText .vec/.txt or a GloVe .txt file "
    "(optionally .gz)"
)
_UNSET, _FALLBACK, _EXACT = 0, 1, 2  # how a table row was filled


class WordVectorsError(ValueError):
    """A word-vector file or vocabulary that cannot give an embedding table (one-line message)."""


@dataclasses.dataclass(frozen=True, eq=False)
class WordVectors:
    """An embedding table built from a pretrained file, and what the file held for it."""

    table: np.ndarray = dataclasses.field(repr=False)  # float32 (vocab_size, dim)
    found: int  # vocabulary rows (padding aside) filled from the file
    dim: int
    path: Path
    format: str  # one of FORMATS

    @property
    def unknown(self) -> int:
        """Vocabulary rows (padding aside) that got Kim's random init: absent from the file."""
        return len(self.table) - 1 - self.found


def load_word_vectors(
    path: str | os.PathLike[str],
    vocabulary: Mapping[str, int] | Sequence[str],
    *,
    dim: int | None = None,
    seed: int = 0,
    unknown_scale: float = 0.25,
    lowercase_fallback: bool = False,
) -> WordVectors:
    """The (vocab_size, dim) float32 table for `vocabulary` from a pretrained file, streamed.

    `dim`, when given (the model's embed_dim), must equal the file's vector size.
    """
    path = Path(path)
    if not (np.isfinite(unknown_scale) and unknown_scale >= 0):
        raise WordVectorsError(f"unknown_scale={unknown_scale} must be a finite number >= 0")
    rows, vocab_size = _vocabulary_rows(vocabulary)
    file_format, count, file_dim = _sniff(path)
    if dim is not None and file_dim != dim:
        raise WordVectorsError(
            f"{FLAG}={path} has {file_dim}-d vectors, the model expects {dim}; pass a "
            f"{dim}-d file or build the model with embed_dim={file_dim}"
        )
    table = _unknown_rows(vocab_size, file_dim, seed, unknown_scale)
    filler = _Filler(table, rows, lowercase_fallback)
    scan = _scan_binary if file_format == "word2vec-binary" else _scan_text
    try:
        scan(path, file_format, count, file_dim, filler)
    except (OSError, EOFError, zlib.error) as e:
        raise WordVectorsError(f"{FLAG}={path} cannot be read ({_one_line(e)})") from None
    table[PAD_ID] = 0
    return WordVectors(table, filler.found, file_dim, path, file_format)


def _vocabulary_rows(
    vocabulary: Mapping[str, int] | Sequence[str],
) -> tuple[dict[bytes, tuple[int, ...]], int]:
    """Each token's UTF-8 bytes → its table rows (padding left out), and the table's row count."""
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, (Mapping, Sequence)):
        raise WordVectorsError(
            "the vocabulary must be a token → id mapping or an id-ordered list of tokens, "
            f"not {type(vocabulary).__name__}"
        )
    pairs = vocabulary.items() if isinstance(vocabulary, Mapping) else _enumerated(vocabulary)
    rows: dict[bytes, list[int]] = {}
    size = PAD_ID + 1
    for token, index in pairs:
        if not isinstance(token, str):
            raise WordVectorsError(f"vocabulary token {token!r} is not a str")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise WordVectorsError(f"vocabulary id {index!r} of {token!r} is not an int >= 0")
        size = max(size, int(index) + 1)
        key = _token_bytes(token)
        if index != PAD_ID and key is not None:
            rows.setdefault(key, []).append(int(index))
    return {key: tuple(ids) for key, ids in rows.items()}, size


def _enumerated(tokens: Sequence[str]) -> Iterator[tuple[str, int]]:
    """(token, id) pairs of an id-ordered token list."""
    for index, token in enumerate(tokens):
        yield token, index


def _token_bytes(token: str) -> bytes | None:
    """A token as the UTF-8 bytes a file would spell it with, or None if it has no spelling."""
    try:
        return token.encode("utf-8", "surrogateescape")  # round-trips undecodable file bytes
    except UnicodeEncodeError:
        return None


def _unknown_rows(vocab_size: int, dim: int, seed: int, scale: float) -> np.ndarray:
    """A (vocab_size, dim) float32 table of U[-scale, scale) values (Kim's unknown words)."""
    uniform = np.random.default_rng(seed).random((vocab_size, dim), dtype=np.float32)
    return (uniform * np.float32(2 * scale) - np.float32(scale)).astype(np.float32, copy=False)


class _Filler:
    """Writes file vectors into the rows of matching tokens: exact matches first, then lowercase."""

    def __init__(
        self, table: np.ndarray, rows: dict[bytes, tuple[int, ...]], lowercase: bool
    ) -> None:
        self.table = table
        self.rows = rows
        self.lowercase = lowercase
        self.state = bytearray(len(table))
        self.waiting = len({r for ids in rows.values() for r in ids})  # rows with no exact match

    @property
    def done(self) -> bool:
        """Whether every token has its exact vector, so the rest of the file cannot change a row."""
        return self.waiting == 0

    @property
    def found(self) -> int:
        """Rows filled from the file so far."""
        return len(self.state) - self.state.count(_UNSET)

    def targets(self, word: bytes) -> tuple[list[int], list[int]]:
        """The rows `word`'s vector goes to: as an exact match, and as a lowercase fallback."""
        exact = [r for r in self.rows.get(word, ()) if self.state[r] != _EXACT]
        fallback: list[int] = []
        if self.lowercase:
            lower = word.lower() if word.isascii() else _lowercase(word)
            if lower != word:
                fallback = [r for r in self.rows.get(lower, ()) if self.state[r] == _UNSET]
        return exact, fallback

    def put(self, exact: list[int], fallback: list[int], vector: np.ndarray) -> None:
        """Store `vector` in the rows `targets` named."""
        for row in exact:
            self.table[row] = vector
            self.state[row] = _EXACT
        self.waiting -= len(exact)
        for row in fallback:
            self.table[row] = vector
            self.state[row] = _FALLBACK


def _lowercase(word: bytes) -> bytes:
    """The lowercase of a non-ASCII file word (invalid UTF-8 decoded with errors='replace')."""
    return word.decode("utf-8", "replace").lower().encode("utf-8")


def _open(path: Path) -> BinaryIO:
    """The file's bytes, decompressed as they are read when it is gzip-compressed."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115


def _sniff(path: Path) -> tuple[str, int | None, int]:
    """The file's format, its vector count (None for GloVe, which has no header) and dimension."""
    if not path.exists():
        raise WordVectorsError(f"{FLAG}={path}: no such file; {_PASS}")
    if not path.is_file():
        raise WordVectorsError(f"{FLAG}={path} is not a file; {_PASS}")
    try:
        with _open(path) as stream:
            head = stream.read(CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as e:
        raise WordVectorsError(f"{FLAG}={path} cannot be read ({_one_line(e)})") from None
    if not head.strip():
        raise WordVectorsError(f"{FLAG}={path} is empty; {_PASS}")
    if head.startswith(FASTTEXT_MAGIC):
        raise WordVectorsError(
            f"{FLAG}={path} is a fastText model .bin, not word vectors; pass the .vec (text) "
            "file of the same release"
        )
    first, _, rest = head.partition(b"\n")
    header = _header(first)
    if header is not None:
        count, dim = header
        if count == 0 or dim == 0:
            raise WordVectorsError(
                f"{FLAG}={path}: its header {_show(first[:40])} announces "
                f"{'no vectors' if count == 0 else '0-d vectors'}; {_PASS}"
            )
        text = _vector_fields(rest.partition(b"\n")[0]) is not None
        return ("word2vec-text" if text else "word2vec-binary"), count, dim
    fields = _vector_fields(first)
    if fields is None:
        raise WordVectorsError(
            f"{FLAG}={path}: the first line, {_show(first[:40])}, is neither a 'COUNT DIM' "
            f"header (word2vec, fastText) nor a 'word v1 ... vD' line (GloVe); {_PASS}"
        )
    return "glove-text", None, fields


def _header(line: bytes) -> tuple[int, int] | None:
    """(count, dim) of a 'V D' header line, or None when the line is not one."""
    fields = line.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


def _vector_fields(line: bytes) -> int | None:
    """How many numbers follow the first field of a 'word v1 ... vD' line; None if not such."""
    fields = line.split()
    if len(fields) < 2:
        return None
    try:
        np.array(fields[1:], dtype=np.float64)
    except ValueError:
        return None
    return len(fields) - 1


def _scan_binary(path: Path, file_format: str, count: int, dim: int, filler: _Filler) -> None:
    """Stream the records of a word2vec binary file into `filler`."""
    where = " of the decompressed data" if _is_gzip(path) else ""
    vector_bytes = 4 * dim
    with _open(path) as stream:
        buf = stream.readline()  # the header, already checked
        base, pos = 0, len(buf)  # buf[0] is at byte offset `base` of the stream
        for index in range(count):
            while True:
                space = buf.find(b" ", pos, pos + MAX_WORD_BYTES + 1)
                if space >= 0 and space + 1 + vector_bytes <= len(buf):
                    break
                if space < 0 and len(buf) - pos > MAX_WORD_BYTES:
                    raise WordVectorsError(
                        f"{FLAG}={path}: record {index + 1:,} of {count:,} (byte offset "
                        f"{base + pos:,}{where}) has no space within {MAX_WORD_BYTES:,} bytes; "
                        f"the header 'V D' does not fit the records (a damaged file); {_PASS}"
                    )
                chunk = stream.read(CHUNK_BYTES)
                if not chunk:
                    raise WordVectorsError(
                        f"{FLAG}={path}: the file ends inside record {index + 1:,} of "
                        f"{count:,} (byte offset {base + pos:,}{where}, "
                        f"{len(buf) - pos} of its {_record_size(buf, pos, space, dim)} bytes "
                        "there); the file is truncated, download it again"
                    )
                base, buf, pos = base + pos, buf[pos:] + chunk, 0
            word = buf[pos:space]
            if buf[pos] == 0x0A:  # the newline that ended the previous record
                word = word.lstrip(b"\n")
            pos = space + 1 + vector_bytes
            if word in filler.rows or filler.lowercase:
                exact, fallback = filler.targets(word)
                if exact or fallback:
                    vector = np.frombuffer(buf, "<f4", dim, space + 1)
                    _check_finite(path, vector, f"record {index + 1:,}", word)
                    filler.put(exact, fallback, vector)
                    if filler.done:
                        return
        _check_nothing_after(path, buf[pos:] + stream.read(64), count)


def _record_size(buf: bytes, pos: int, space: int, dim: int) -> str:
    """A binary record's length in bytes, as far as the part of it in `buf` tells."""
    return f"{space - pos + 1 + 4 * dim:,}" if space >= 0 else f"word + {4 * dim:,}"


def _scan_text(path: Path, file_format: str, count: int | None, dim: int, filler: _Filler) -> None:
    """Stream the lines of a word2vec/fastText text or GloVe file into `filler`."""
    glove = file_format == "glove-text"
    seen = 0
    with _open(path) as stream:
        lines = enumerate(stream, start=1)
        if not glove:
            next(lines)  # the header, already checked
        for number, line in lines:
            if seen == count:
                _check_nothing_after(path, line + stream.read(64), count)
                return
            stripped = line.rstrip()
            if not stripped:
                continue
            seen += 1
            word, values = _split_line(path, stripped, dim, glove, number)
            if word in filler.rows or filler.lowercase:
                exact, fallback = filler.targets(word)
                if exact or fallback:
                    vector = _parse_values(path, values, dim, number)
                    _check_finite(path, vector, f"line {number:,}", word)
                    filler.put(exact, fallback, vector)
                    if filler.done:
                        return
    if count is not None and seen < count:
        raise WordVectorsError(
            f"{FLAG}={path}: the file ends after {seen:,} of the {count:,} vectors its header "
            "announces; the file is truncated, download it again"
        )


def _split_line(path: Path, line: bytes, dim: int, glove: bool, number: int) -> tuple[bytes, bytes]:
    """(word, its D values) of a text line; a GloVe word may contain spaces."""
    spaces = line.count(b" ")
    if spaces == dim:
        cut = line.find(b" ")
        if b"\t" not in line[:cut]:
            return line[:cut], line[cut + 1 :]
    if glove and spaces > dim:
        word = line.rsplit(b" ", dim)[0]
        return word, line[len(word) + 1 :]
    fields = line.split()  # tabs or repeated spaces
    if len(fields) == dim + 1:
        return fields[0], b" ".join(fields[1:])
    raise _fields_error(path, number, len(fields), dim)


def _parse_values(path: Path, values: bytes, dim: int, number: int) -> np.ndarray:
    """The float32 vector of a text line's values."""
    fields = values.split()
    if len(fields) != dim:
        raise _fields_error(path, number, len(fields) + 1, dim)
    try:
        return np.array(fields, dtype=np.float32)
    except ValueError:
        raise WordVectorsError(
            f"{FLAG}={path}: line {number:,} has a value that is not a number; the file is damaged"
        ) from None


def _fields_error(path: Path, number: int, fields: int, dim: int) -> WordVectorsError:
    """The error for a text line with the wrong number of fields."""
    return WordVectorsError(
        f"{FLAG}={path}: line {number:,} has {fields} fields, expected {dim + 1} (a word and "
        f"{dim} values); the file is damaged, or not in the format its first lines suggest"
    )


def _check_finite(path: Path, vector: np.ndarray, where: str, word: bytes) -> None:
    """Refuse a NaN or infinite value in a kept vector."""
    if not np.isfinite(vector).all():
        raise WordVectorsError(
            f"{FLAG}={path}: {where} (word {_show(word)}) has non-finite values (NaN or inf); "
            "the file is damaged, download it again"
        )


def _check_nothing_after(path: Path, tail: bytes, count: int) -> None:
    """Refuse data after the last record: the header's 'V D' does not describe the file."""
    if tail.strip():
        raise WordVectorsError(
            f"{FLAG}={path} goes on after the {count:,} vectors its header announces; the header "
            "'V D' does not fit the records (a damaged or edited file)"
        )


def _is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with open(path, "rb") as raw:
        return raw.read(2) == GZIP_MAGIC


def _show(word: bytes) -> str:
    """A file word for a one-line message: decoded with errors='replace', quoted, at most 60."""
    text = repr(word.decode("utf-8", "replace"))
    return text if len(text) <= 60 else text[:57] + "...'"


def _one_line(error: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__


def write_word2vec_binary(
    path: str | os.PathLike[str], vectors: Mapping[str, np.ndarray], *, newline: bool = True
) -> Path:
    """Write `vectors` as a word2vec binary file (gzip if the name ends .gz); for tests, examples.

    `newline=True` ends each record with "\\n" as the word2vec C tool does; False omits it.
    """
    dim = _common_dim(vectors)
    records = [f"{len(vectors)} {dim}\n".encode()]
    for word, vector in vectors.items():
        records.append(word.encode() + b" " + np.asarray(vector, "<f4").tobytes())
        if newline:
            records.append(b"\n")
    return _write(Path(path), b"".join(records))


def write_glove_text(
    path: str | os.PathLike[str], vectors: Mapping[str, np.ndarray], *, header: bool = False
) -> Path:
    """Write `vectors` as GloVe text (gzip if the name ends .gz); for tests and examples.

    `header=True` adds the "V D" line of the word2vec/fastText text format. Each float32 is
    written as its exact double's repr, so it reads back unchanged.
    """
    dim = _common_dim(vectors)
    lines = [f"{len(vectors)} {dim}\n"] if header else []
    for word, vector in vectors.items():
        values = " ".join(repr(float(v)) for v in np.asarray(vector, np.float32))
        lines.append(f"{word} {values}\n")
    return _write(Path(path), "".join(lines).encode())


def _common_dim(vectors: Mapping[str, np.ndarray]) -> int:
    """The one length all `vectors` have."""
    dims = {np.shape(v) for v in vectors.values()}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"vectors must all be 1-d of one length, got shapes {sorted(dims)}")
    return next(iter(dims))[0]


def _write(path: Path, data: bytes) -> Path:
    """Write `data` to `path`, gzip-compressed when its name ends .gz."""
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path
