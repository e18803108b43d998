"""Decode a rectangle of a JPEG without entropy-decoding the rest of it, through restart markers.

Entropy (Huffman) decoding is most of a JPEG decode (docs/benchmarks.md), and a plain JPEG
can only be entropy-decoded from its start: TF's `decode_and_crop_jpeg` still reads every row
above the crop. A restart marker resets the decoder's state, so when a JPEG has one after every
MCU (minimum coded unit, the 8x8 or 16x16 pixel tile) each MCU's bytes decode on their own:

* `add_restart_markers` (dataset preparation) rewrites a JPEG with `jpegtran -restart 1B
  -optimize`, a lossless transcode: the DCT coefficients, hence the decoded pixels, are
  unchanged, and the optimised Huffman tables keep the file about as large as before (95.7 KB
  from 97.7 KB for the benchmark's images, whose 2 % of markers alone would add 3 KB);
* `restart_layout` finds where each MCU's bytes are (one NumPy scan for the markers);
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
import subprocess

import numpy as np

_SOF_HUFFMAN_SEQUENTIAL = (0xC0, 0xC1)  # baseline and extended sequential DCT, Huffman-coded
_OTHER_SOF = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_EOI = 0xD9
_RST0 = 0xD0
JPEGTRAN_ARGS = ("-restart", "1B", "-optimize", "-copy", "all")


@dataclasses.dataclass(frozen=True)
class RestartLayout:
    """Where each MCU's entropy-coded bytes lie in a JPEG with a restart marker after every MCU."""

    header: bytes  # SOI up to and including the SOS segment
    size_offset: int  # offset of the SOF's height field in `header`
    height: int
    width: int
    mcu_height: int
    mcu_width: int
    starts: np.ndarray  # (rows * cols,) first byte of MCU i (row-major)
    ends: np.ndarray  # (rows * cols,) one past its last byte (where the next marker starts)

    @property
    def cols(self) -> int:
        return -(-self.width // self.mcu_width)


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def restart_layout(data: bytes) -> RestartLayout | None:
    """The MCU byte ranges of a one-scan Huffman JPEG with restart interval 1; else None."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, sof, interval, scan = 2, None, 0, None
    try:
        while scan is None:
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
            elif marker == 0xDA:
                scan = pos
            pos += 2 + length
    except IndexError:
        return None
    if sof is None or interval != 1:
        return None
    height, width, components = _u16(data, sof + 5), _u16(data, sof + 7), data[sof + 9]
    if height == 0 or width == 0 or data[scan + 4] != components:
        return None  # DNL-defined height, or components in separate scans
    if components == 1:  # a non-interleaved scan: the MCU is one 8x8 block
        mcu_height = mcu_width = 8
    else:
        factors = [data[sof + 11 + 3 * i] for i in range(components)]
        mcu_height = 8 * max(f & 0x0F for f in factors)
        mcu_width = 8 * max(f >> 4 for f in factors)
    count = math.ceil(height / mcu_height) * math.ceil(width / mcu_width)

    body = np.frombuffer(data, np.uint8, offset=pos)
    ff = np.flatnonzero(body[:-1] == 0xFF)
    following = body[ff + 1]
    is_marker = following != 0  # 0xFF 0x00 is a stuffed data byte
    markers, kinds = ff[is_marker] + pos, following[is_marker]
    if len(kinds) < count or kinds[count - 1] != _EOI:
        return None
    expected = _RST0 + (np.arange(count - 1) & 7)
    if not np.array_equal(kinds[: count - 1], expected):
        return None
    starts = np.concatenate([[pos], markers[: count - 1] + 2])
    return RestartLayout(
        header=data[:pos],
        size_offset=sof + 5,
        height=height,
        width=width,
        mcu_height=mcu_height,
        mcu_width=mcu_width,
        starts=starts,
        ends=markers[:count],
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

    # Each MCU row of the region is one contiguous run of the source (its inner markers
    # included); the runs are joined with a marker and every marker is then renumbered.
    first = np.arange(row0, row1) * cols + col0
    run_starts, run_ends = layout.starts[first], layout.ends[first + (col1 - col0 - 1)]
    header = bytearray(layout.header)
    header[layout.size_offset : layout.size_offset + 4] = bytes(
        [region_h >> 8, region_h & 0xFF, region_w >> 8, region_w & 0xFF]
    )
    source = np.frombuffer(data, np.uint8)
    out = np.empty(len(header) + int((run_ends - run_starts).sum()) + 2 * len(first), np.uint8)
    out[: len(header)] = np.frombuffer(bytes(header), np.uint8)
    pos = len(header)
    for start, end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        out[pos : pos + end - start] = source[start:end]
        pos += end - start + 2
        out[pos - 2] = 0xFF
    mcus = (np.arange(row0, row1)[:, None] * cols + np.arange(col0, col1)).ravel()
    second_bytes = len(header) + np.cumsum(layout.ends[mcus] - layout.starts[mcus] + 2) - 1
    out[second_bytes[:-1]] = _RST0 + (np.arange(len(mcus) - 1) & 7)
    out[-1] = _EOI
    return Region(out.tobytes(), row0 * mh, col0 * mw, region_h, region_w)


def jpegtran_available() -> bool:
    """Whether the `jpegtran` tool (libjpeg-turbo-progs / jpeg-turbo) is on PATH."""
    return shutil.which("jpegtran") is not None


def add_restart_markers(data: bytes) -> bytes:
    """`data` losslessly rewritten with a restart marker after every MCU (see module doc).

    A progressive JPEG becomes a sequential one with the same coefficients. Returns `data`
    unchanged when it is not a JPEG or jpegtran reports any damage (damaged files are left
    for the loader, which counts and skips them).
    """
    if data[:2] != b"\xff\xd8" or restart_layout(data) is not None:
        return data
    result = subprocess.run(
        ["jpegtran", *JPEGTRAN_ARGS], input=data, capture_output=True, check=False
    )
    if result.returncode != 0 or restart_layout(result.stdout) is None:
        return data
    return result.stdout
