"""Local copies of downloadable source files (the MNIST-family IDX .gz files), checked and staged,
and the quick network check that replaces minutes of download retries when there is no internet.

tfds's download manager takes a file from `manual_dir` instead of downloading it when the name
matches the recorded one, and still validates its size and sha256. So preparing offline means
staging the four IDX files under their tfds names in a folder, exactly as the upstream server
serves them, and passing that folder as `manual_dir` to the unchanged tfds builder.

Debian's `dataset-fashion-mnist` ships the upstream files after `strip-nondeterminism`
rewrote their gzip headers: the FNAME field is dropped and MTIME is set to the package date,
while the deflate stream and trailer are untouched (each Debian file is shorter by exactly
len(name) + 1 bytes). Re-inserting the original name and upstream MTIME restores the upstream
file byte for byte; the tfds checksum then proves it. The MTIMEs below are the values for which
the restored files hash to tfds's recorded sha256 (url_checksums/fashion_mnist.txt).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import struct
import threading
import urllib.parse
import urllib.request

_GZIP_MAGIC = b"\x1f\x8b"
_FNAME = 0x08

# Upstream gzip MTIMEs (seconds since the epoch) of the Fashion-MNIST release files, recovered
# as described in the module docstring: 2017-08-31 10:50:06 / 10:50:27 UTC.
UPSTREAM_GZIP_MTIMES: dict[str, dict[str, int]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": 1504176606,
        "train-labels-idx1-ubyte.gz": 1504176606,
        "t10k-images-idx3-ubyte.gz": 1504176627,
        "t10k-labels-idx1-ubyte.gz": 1504176627,
    },
}


@dataclasses.dataclass(frozen=True)
class ExpectedFile:
    """A file tfds downloads, as its checksum registry records it."""

    filename: str
    size: int
    sha256: str


class SourceFilesMissingError(ValueError):
    """Some of the expected source files are not in the source folder."""


class ChecksumMismatchError(ValueError):
    """A local source file is not the file tfds expects (even after header restoration)."""


def restore_gzip_name(data: bytes, filename: str, mtime: int) -> bytes | None:
    """Put back the FNAME field and MTIME that strip-nondeterminism removed from a gzip header.

    `filename` is the .gz name; the stored name is it without `.gz`, as gzip(1) writes it.
    Returns None when `data` is not a gzip stream with a bare 10-byte header (no optional
    fields), since then it is not a stripped upstream file.
    """
    if len(data) < 18 or data[:2] != _GZIP_MAGIC or data[2] != 8 or data[3] != 0:
        return None
    stored_name = filename[:-3] if filename.endswith(".gz") else filename
    header = data[:3] + bytes([_FNAME]) + struct.pack("<I", mtime) + data[8:10]
    return header + stored_name.encode("latin-1") + b"\0" + data[10:]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`, the checksum tfds records for downloads."""
    return hashlib.sha256(data).hexdigest()


def missing_files(source_dir: str | os.PathLike, expected: list[ExpectedFile]) -> list[str]:
    """Names of the expected files that are not in source_dir."""
    return [
        f.filename for f in expected if not os.path.isfile(os.path.join(source_dir, f.filename))
    ]


def upstream_bytes(
    path: str | os.PathLike, expected: ExpectedFile, mtimes: dict[str, int]
) -> bytes:
    """The upstream file for `expected`, read from `path` and restored if it was normalised.

    Raises ChecksumMismatchError when neither the file nor its restored form matches.
    """
    with open(path, "rb") as f:
        data = f.read()
    if sha256_hex(data) == expected.sha256:
        return data
    if expected.filename in mtimes:
        restored = restore_gzip_name(data, expected.filename, mtimes[expected.filename])
        if restored is not None and sha256_hex(restored) == expected.sha256:
            return restored
    raise ChecksumMismatchError(
        f"{path} ({len(data)} bytes, sha256 {sha256_hex(data)[:16]}...) is not the file tfds "
        f"expects ({expected.size} bytes, sha256 {expected.sha256[:16]}...); "
        "replace it with a fresh download of the original"
    )


def stage_source_files(
    source_dir: str | os.PathLike,
    expected: list[ExpectedFile],
    dest_dir: str | os.PathLike,
    *,
    mtimes: dict[str, int] | None = None,
) -> list[str]:
    """Copy the verified upstream form of every expected file into dest_dir; return the paths."""
    missing = missing_files(source_dir, expected)
    if missing:
        raise SourceFilesMissingError(
            f"{source_dir} lacks {', '.join(missing)}; put all of "
            f"{', '.join(f.filename for f in expected)} there or pass another --source_dir"
        )
    os.makedirs(dest_dir, exist_ok=True)
    staged = []
    for item in expected:
        data = upstream_bytes(os.path.join(source_dir, item.filename), item, mtimes or {})
        path = os.path.join(dest_dir, item.filename)
        with open(path, "wb") as f:
            f.write(data)
        staged.append(path)
    return staged


# Seconds the network check may take in all (name lookup included): a reachable host answers a
# TCP connect in well under a second, and without a network the alternative is tfds's retries.
NETWORK_TIMEOUT_S = 3.0


def download_endpoint(url: str) -> tuple[str, int]:
    """The (host, port) a download of `url` connects to first: its proxy when one is set."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        default = 443 if proxy_parts.scheme == "https" else 80
        return proxy_parts.hostname or "", proxy_parts.port or default
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def reachable(host: str, port: int, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds, lookup included.

    The connect runs in a daemon thread because name resolution ignores socket timeouts (an
    unreachable DNS server can hold it for tens of seconds).
    """
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, name="cnnjax-network-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
