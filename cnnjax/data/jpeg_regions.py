"""Decode a rectangle of a JPEG without entropy-decoding the rest of it, through restart markers.

Entropy (Huffman) decoding is most of a JPEG decode (docs/benchmarks.md), and a plain JPEG
can only be entropy-decoded from its start: TF's `decode_and_crop_jpeg` still reads every row
above the crop. A restart marker resets the decoder's state, so when a JPEG has one after every
MCU (minimum coded unit, the 8x8 or 16x16 pixel tile) each MCU's bytes decode on their own:

* `make_croppable` (dataset preparation) rewrites a JPEG with `jpegtran -restart 1B
  -optimize` (`add_restart_markers`), a lossless transcode: the DCT coefficients, hence the
  decoded pixels, are unchanged, and the optimised Huffman tables keep the file about as large
  as before (95.7 KB from 97.7 KB for the benchmark's images, whose 2 % of markers alone would
  add 3 KB). It then stores where each MCU's bytes are (`add_mcu_index`: an APP15 segment of
  one uint16 per MCU, +1.6 %, which decoders skip like any unknown APP segment);
* `restart_layout` reads the MCU byte ranges from that index, checked against the markers
  (0.02 ms), or finds them by scanning the entropy-coded data (0.05 ms, and it reads all of it);
* `crop_jpeg` copies the MCUs covering a box into a new, valid JPEG (header with the new
  size, the MCUs' bytes, markers renumbered), which any decoder reads as an ordinary image.

Decoded with plain (non-"fancy") chroma upsampling, which never looks across an MCU border,
the cropped JPEG's pixels equal the same rectangle of the whole decoded image, at any DCT
scaling (tests/test_jpeg_regions.py). JPEGs without the markers (progressive, arithmetic-coded,
other restart intervals) give `restart_layout(...) is None` and are decoded whole as before.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import struct
import subprocess

import numpy as np

_SOF_HUFFMAN_SEQUENTIAL = (0xC0, 0xC1)  # baseline and extended sequential DCT, Huffman-coded
_OTHER_SOF = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_EOI = 0xD9
_RST0 = 0xD0
# The MCU index: APP15 segments (ignored by decoders) just before the SOS, holding each MCU's
# entropy-coded byte count as big-endian uint16, 32,757 per segment (the segment size limit).
_INDEX_MARKER = 0xEF
_INDEX_ID = b"cnnjax MCU lengths\x00"
_INDEX_ENTRIES_PER_SEGMENT = (0xFFFF - 2 - len(_INDEX_ID)) // 2
JPEGTRAN_ARGS = ("-restart", "1B", "-optimize", "-copy", "all")


@dataclasses.dataclass(frozen=True)
class RestartLayout:
    """Where each MCU's entropy-coded bytes lie in a JPEG with a restart marker after every MCU."""

    header: bytes  # SOI up to and including the SOS segment, without the MCU index
    size_offset: int  # offset of the SOF's height field in `header`
    height: int
    width: int
    mcu_height: int
    mcu_width: int
    starts: np.ndarray  # (rows * cols,) first byte of MCU i (row-major)
    ends: np.ndarray  # (rows * cols,) one past its last byte (where the next marker starts)
    indexed: bool  # read from the stored MCU index (else found by a scan)

    @property
    def cols(self) -> int:
        return -(-self.width // self.mcu_width)


_Ranges = tuple[np.ndarray, np.ndarray]  # (starts, ends) of every MCU's entropy-coded bytes


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


@dataclasses.dataclass(frozen=True)
class _Header:
    """Offsets of the segments before the entropy-coded data that region decoding needs."""

    sof: int | None  # SOF0/1 marker, None if absent
    interval: int  # restart interval (DRI), 0 if none
    sos: int  # SOS marker
    scan_start: int  # first entropy-coded byte (end of the SOS segment)
    index: tuple[tuple[int, int], ...]  # (start, end) of each MCU-index APP segment


def _parse_header(data: bytes) -> _Header | None:
    """Walk the marker segments from SOI to SOS; None if not a one-scan Huffman sequential JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, sof, interval, index = 2, None, 0, []
    try:
        while True:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            length = _u16(data, pos + 2)
            if marker in _SOF_HUFFMAN_SEQUENTIAL:
                sof = pos
            elif marker in _OTHER_SOF:
                return None  # progressive, lossless or arithmetic-coded
            elif marker == 0xDD:
                interval = _u16(data, pos + 4)
            elif marker == _INDEX_MARKER and data[pos + 4 : pos + 4 + len(_INDEX_ID)] == _INDEX_ID:
                index.append((pos, pos + 2 + length))
            elif marker == 0xDA:
                if pos + 2 + length > len(data):
                    return None
                return _Header(sof, interval, pos, pos + 2 + length, tuple(index))
            pos += 2 + length
    except IndexError:
        return None


def _without(data: bytes, segments: tuple[tuple[int, int], ...], end: int) -> bytes:
    """data[:end] with the given (start, end) byte ranges left out."""
    pieces, pos = [], 0
    for start, stop in segments:
        pieces.append(data[pos:start])
        pos = stop
    return b"".join([*pieces, data[pos:end]])


def _marker_codes(count: int) -> np.ndarray:
    """The marker after each of `count` MCUs: RST0, RST1, ..., RST7, RST0, ..., then EOI."""
    codes = _RST_CYCLE[:count].copy() if count <= len(_RST_CYCLE) else _rst_codes(count)
    codes[-1] = _EOI
    return codes


def _rst_codes(count: int) -> np.ndarray:
    return (_RST0 + (np.arange(count) & 7)).astype(np.uint8)


_RST_CYCLE = _rst_codes(1 << 16)  # precomputed up to 65,536 MCUs (4096 x 4096 px in 16 x 16 MCUs)


def _indexed_ranges(data: bytes, header: _Header, count: int) -> _Ranges | None:
    """MCU (starts, ends) from the stored index, if it matches the data's markers exactly."""
    payload = b"".join(data[s + 4 + len(_INDEX_ID) : e] for s, e in header.index)
    if len(payload) != 2 * count:
        return None
    lengths = np.frombuffer(payload, ">u2").astype(np.intp)
    ends = np.cumsum(lengths + 2)
    ends += header.scan_start - 2
    if ends[-1] + 2 > len(data):
        return None
    source = np.frombuffer(data, np.uint8)
    codes = source[ends + 1]
    if not (np.all(source[ends] == 0xFF) and np.array_equal(codes, _marker_codes(count))):
        return None  # stale or damaged index: scan instead
    return ends - lengths, ends


def _scanned_ranges(data: bytes, header: _Header, count: int) -> _Ranges | None:
    """MCU (starts, ends) found by scanning the entropy-coded data for its markers."""
    body = np.frombuffer(data, np.uint8, offset=header.scan_start)
    ff = np.flatnonzero(body[:-1] == 0xFF)
    following = body[ff + 1]
    is_marker = following != 0  # 0xFF 0x00 is a stuffed data byte
    markers, kinds = ff[is_marker][:count] + header.scan_start, following[is_marker][:count]
    if len(kinds) < count or not np.array_equal(kinds, _marker_codes(count)):
        return None
    return np.concatenate([[header.scan_start], markers[:-1] + 2]), markers


def restart_layout(data: bytes) -> RestartLayout | None:
    """The MCU byte ranges of a one-scan Huffman JPEG with restart interval 1; else None.

    Read from the MCU index that `make_croppable` stores when it is there and matches the
    markers; otherwise found by scanning the whole entropy-coded data (~3x slower).
    """
    header = _parse_header(data)
    if header is None or header.sof is None or header.interval != 1:
        return None
    sof = header.sof
    height, width, components = _u16(data, sof + 5), _u16(data, sof + 7), data[sof + 9]
    if height == 0 or width == 0 or data[header.sos + 4] != components:
        return None  # DNL-defined height, or components in separate scans
    if components == 1:  # a non-interleaved scan: the MCU is one 8x8 block
        mcu_height = mcu_width = 8
    else:
        factors = [data[sof + 11 + 3 * i] for i in range(components)]
        mcu_height = 8 * max(f & 0x0F for f in factors)
        mcu_width = 8 * max(f >> 4 for f in factors)
    count = math.ceil(height / mcu_height) * math.ceil(width / mcu_width)

    ranges = _indexed_ranges(data, header, count) if header.index else None
    indexed = ranges is not None
    if not indexed:
        ranges = _scanned_ranges(data, header, count)
    if ranges is None:
        return None
    dropped_before_sof = sum(e - s for s, e in header.index if e <= sof)
    return RestartLayout(
        header=_without(data, header.index, header.scan_start),
        size_offset=sof + 5 - dropped_before_sof,
        height=height,
        width=width,
        mcu_height=mcu_height,
        mcu_width=mcu_width,
        starts=ranges[0],
        ends=ranges[1],
        indexed=indexed,
    )


@dataclasses.dataclass(frozen=True)
class Region:
    """A standalone JPEG of part of an image and where that part lies in the image (pixels)."""

    jpeg: bytes
    top: int
    left: int
    height: int
    width: int


def crop_jpeg(
    data: bytes, layout: RestartLayout, top: int, left: int, height: int, width: int
) -> Region:
    """The smallest MCU-aligned region of `data` holding the box, as a JPEG of its own."""
    if top < 0 or left < 0 or height <= 0 or width <= 0:
        raise ValueError(f"invalid box (top={top}, left={left}, height={height}, width={width})")
    if top + height > layout.height or left + width > layout.width:
        raise ValueError(
            f"box (top={top}, left={left}, height={height}, width={width}) exceeds the "
            f"{layout.height}x{layout.width} image"
        )
    mh, mw, cols = layout.mcu_height, layout.mcu_width, layout.cols
    row0, row1 = top // mh, -(-(top + height) // mh)
    col0, col1 = left // mw, -(-(left + width) // mw)
    region_h = min(layout.height, row1 * mh) - row0 * mh
    region_w = min(layout.width, col1 * mw) - col0 * mw

    # Each MCU row of the region is one contiguous run of the source, its inner markers
    # included; the runs are copied one after another, two bytes apart, and every marker
    # (the 2 bytes after each MCU) is then written anew: RST0, RST1, ... and a final EOI.
    mcus = np.arange(row0, row1)[:, None] * cols + np.arange(col0, col1)
    starts, ends = layout.starts[mcus], layout.ends[mcus]
    header = layout.header
    markers = len(header) + np.cumsum(ends - starts + 2) - 2
    out = bytearray(int(markers[-1]) + 2)
    out[: len(header)] = header
    out[layout.size_offset : layout.size_offset + 4] = struct.pack(">HH", region_h, region_w)
    source, pos = memoryview(data), len(header)
    for start, end in zip(starts[:, 0].tolist(), ends[:, -1].tolist(), strict=True):
        out[pos : pos + end - start] = source[start:end]
        pos += end - start + 2
    written = np.frombuffer(out, np.uint8)
    written[markers] = 0xFF
    written[markers + 1] = _marker_codes(markers.size)
    return Region(bytes(out), row0 * mh, col0 * mw, region_h, region_w)


def jpegtran_available() -> bool:
    """Whether the `jpegtran` tool (libjpeg-turbo-progs / jpeg-turbo) is on PATH."""
    return shutil.which("jpegtran") is not None


def add_restart_markers(data: bytes) -> bytes:
    """`data` losslessly rewritten with a restart marker after every MCU (see module doc).

    A progressive JPEG becomes a sequential one with the same coefficients. Returns `data`
    unchanged when it is not a JPEG, already has the markers, or jpegtran reports any damage
    (damaged files are left for the loader, which counts and skips them).
    """
    if data[:2] != b"\xff\xd8" or restart_layout(data) is not None:
        return data
    result = subprocess.run(
        ["jpegtran", *JPEGTRAN_ARGS], input=data, capture_output=True, check=False
    )
    if result.returncode != 0 or restart_layout(result.stdout) is None:
        return data
    return result.stdout


def add_mcu_index(data: bytes) -> bytes:
    """`data` with the MCU index (APP15 segments before the scan) that `restart_layout` reads.

    Unchanged when `data` has no restart marker after every MCU, or already a matching index;
    a stale index is replaced.
    """
    layout = restart_layout(data)
    if layout is None or layout.indexed:
        return data
    lengths = layout.ends - layout.starts
    if lengths.max() > 0xFFFF:
        return data  # cannot happen for valid MCUs (at most 10 blocks); scan instead
    header = _parse_header(data)
    if header.index:
        data = _without(data, header.index, len(data))
        header = _parse_header(data)
    payload = lengths.astype(">u2").tobytes()
    step = 2 * _INDEX_ENTRIES_PER_SEGMENT
    segments = [
        bytes([0xFF, _INDEX_MARKER])
        + (2 + len(_INDEX_ID) + len(chunk)).to_bytes(2, "big")
        + _INDEX_ID
        + chunk
        for chunk in (payload[i : i + step] for i in range(0, len(payload), step))
    ]
    return b"".join([data[: header.sos], *segments, data[header.sos :]])


def make_croppable(data: bytes) -> bytes:
    """What `prepare` stores for ImageNet-style datasets: restart markers and the MCU index."""
    return add_mcu_index(add_restart_markers(data))
