"""Region decoding through restart markers: exact against whole decodes; safe fallbacks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import simplejpeg

from cnnjax.data import jpeg_regions

SAMPLINGS = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}
needs_jpegtran = pytest.mark.skipif(
    not jpeg_regions.jpegtran_available(),
    reason="jpegtran not installed (apt-get install libjpeg-turbo-progs)",
)


def _image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth gradients plus noise, so every MCU has non-trivial AC coefficients."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [128 + 80 * np.sin(xx / (7 + 3 * c) + yy / (11 + c)) for c in range(channels)]
    pixels = np.stack(planes, -1) + rng.normal(0, 25, (height, width, channels))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return buf.tobytes()


def _restart_jpeg(pixels: np.ndarray, sampling: str = "420") -> bytes:
    factor = SAMPLINGS[sampling]
    return _encode(
        pixels, cv2.IMWRITE_JPEG_RST_INTERVAL, 1, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor
    )


def _decode(data: bytes, scale: int = 1, gray: bool = False) -> np.ndarray:
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    return simplejpeg.decode_jpeg(
        data,
        colorspace="GRAY" if gray else "RGB",
        fastdct=True,
        fastupsample=True,
        min_height=-(-height // scale),
        min_width=-(-width // scale),
    )


@pytest.mark.parametrize("sampling, mcu", [("420", (16, 16)), ("422", (8, 16)), ("444", (8, 8))])
def test_layout_counts_every_mcu(sampling, mcu):
    data = _restart_jpeg(_image(75, 101), sampling)
    layout = jpeg_regions.restart_layout(data)
    assert layout is not None
    assert (layout.height, layout.width) == (75, 101)
    assert (layout.mcu_height, layout.mcu_width) == mcu
    # ceil(75 / mcu_h) rows × ceil(101 / mcu_w) columns of MCUs
    assert len(layout.starts) == -(-75 // mcu[0]) * -(-101 // mcu[1])
    assert np.all(layout.ends > layout.starts)
    assert np.all(layout.starts[1:] == layout.ends[:-1] + 2)  # one 2-byte marker between MCUs


@pytest.mark.parametrize("sampling", ["420", "422", "444"])
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_region_equals_the_same_pixels_of_the_whole_decode(sampling, scale):
    data = _restart_jpeg(_image(150, 203, seed=1), sampling)
    layout = jpeg_regions.restart_layout(data)
    whole = _decode(data, scale)
    rng = np.random.default_rng(scale)
    boxes = [(0, 0, 150, 203), (149, 202, 1, 1), (17, 33, 70, 90)]
    boxes += [
        (int(t), int(left), int(rng.integers(1, 151 - t)), int(rng.integers(1, 204 - left)))
        for t, left in rng.integers(0, (150, 203), size=(6, 2))
    ]
    for top, left, h, w in boxes:
        region = jpeg_regions.crop_jpeg(data, layout, top, left, h, w)
        # the region is MCU-aligned and holds the box
        assert region.top % layout.mcu_height == 0 and region.left % layout.mcu_width == 0
        assert region.top <= top and top + h <= region.top + region.height
        assert region.left <= left and left + w <= region.left + region.width
        assert region.top + region.height <= 150 and region.left + region.width <= 203
        pixels = _decode(region.jpeg, scale)
        y, x = region.top // scale, region.left // scale
        expected = whole[y : y + pixels.shape[0], x : x + pixels.shape[1]]
        assert pixels.shape == (-(-region.height // scale), -(-region.width // scale), 3)
        np.testing.assert_array_equal(pixels, expected)


def test_grayscale_region():
    data = _restart_jpeg(_image(64, 90, seed=2, channels=1))
    layout = jpeg_regions.restart_layout(data)
    assert (layout.mcu_height, layout.mcu_width) == (8, 8)
    region = jpeg_regions.crop_jpeg(data, layout, 9, 20, 30, 41)
    assert (region.top, region.left, region.height, region.width) == (8, 16, 32, 48)
    whole = _decode(data, gray=True)
    np.testing.assert_array_equal(_decode(region.jpeg, gray=True), whole[8:40, 16:64])


def test_markers_are_renumbered_in_sequence():
    """A region of 2 x 3 MCUs from the middle has markers RST0..RST4 in order (strict decoders)."""
    data = _restart_jpeg(_image(96, 128, seed=3))  # 6 x 8 MCUs of 16 px
    layout = jpeg_regions.restart_layout(data)
    region = jpeg_regions.crop_jpeg(data, layout, 35, 50, 20, 40)  # rows 2-3, columns 3-5
    assert (region.height, region.width) == (32, 48)
    body = np.frombuffer(region.jpeg, np.uint8)[len(layout.header) :]
    ff = np.flatnonzero(body[:-1] == 0xFF)
    markers = body[ff + 1][body[ff + 1] != 0]
    assert markers.tolist() == [0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD9]
    sub = jpeg_regions.restart_layout(region.jpeg)
    assert sub is not None and len(sub.starts) == 6


def test_jpegs_without_per_mcu_restarts_have_no_layout():
    pixels = _image(40, 40)
    assert jpeg_regions.restart_layout(_encode(pixels)) is None  # no restart markers
    assert jpeg_regions.restart_layout(_encode(pixels, cv2.IMWRITE_JPEG_RST_INTERVAL, 2)) is None
    progressive = _encode(pixels, cv2.IMWRITE_JPEG_RST_INTERVAL, 1, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert jpeg_regions.restart_layout(progressive) is None
    good = _restart_jpeg(pixels)
    assert jpeg_regions.restart_layout(good[: len(good) // 2]) is None  # truncated
    assert jpeg_regions.restart_layout(good[:40]) is None  # cut inside the header
    assert jpeg_regions.restart_layout(b"\x89PNG\r\n\x1a\n" + bytes(50)) is None
    assert jpeg_regions.restart_layout(b"") is None


def test_box_outside_the_image_is_refused():
    data = _restart_jpeg(_image(40, 40))
    layout = jpeg_regions.restart_layout(data)
    with pytest.raises(ValueError, match="exceeds the 40x40 image"):
        jpeg_regions.crop_jpeg(data, layout, 30, 0, 20, 10)
    with pytest.raises(ValueError, match="invalid box"):
        jpeg_regions.crop_jpeg(data, layout, 0, 0, 0, 10)


@needs_jpegtran
@pytest.mark.parametrize("sampling, progressive", [("420", 0), ("444", 0), ("420", 1)])
def test_make_croppable_is_lossless(sampling, progressive):
    """Same pixels; a progressive JPEG becomes a sequential one with the same coefficients."""
    original = _encode(
        _image(120, 170, seed=4),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        SAMPLINGS[sampling],
        cv2.IMWRITE_JPEG_PROGRESSIVE,
        progressive,
    )
    rewritten = jpeg_regions.make_croppable(original)
    assert jpeg_regions.restart_layout(original) is None
    assert jpeg_regions.restart_layout(rewritten).indexed
    for fast in (False, True):  # the whole image, with either IDCT and upsampling
        np.testing.assert_array_equal(
            simplejpeg.decode_jpeg(rewritten, fastdct=fast, fastupsample=fast),
            simplejpeg.decode_jpeg(original, fastdct=fast, fastupsample=fast),
        )
    assert jpeg_regions.make_croppable(rewritten) == rewritten  # already done


@needs_jpegtran
def test_make_croppable_leaves_other_files_alone():
    png = cv2.imencode(".png", _image(20, 20))[1].tobytes()
    assert jpeg_regions.make_croppable(png) == png
    good = _encode(_image(64, 64))
    truncated = good[: len(good) // 2]
    assert jpeg_regions.make_croppable(truncated) == truncated


def _index_segments(data: bytes) -> list[int]:
    """Length fields of the APP15 MCU-index segments, found by walking the markers by hand."""
    sizes, pos = [], 2
    while data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xEF and data[pos + 4 : pos + 8] == b"cnnj":
            sizes.append(length)
        pos += 2 + length
    return sizes


@pytest.mark.parametrize("sampling", ["420", "422", "444"])
def test_mcu_index_gives_the_scanned_layout(sampling):
    """The index is found, gives the ranges the scan finds, and no decoder sees a difference."""
    data = _restart_jpeg(_image(150, 203, seed=5), sampling)
    indexed = jpeg_regions.add_mcu_index(data)
    scanned, layout = jpeg_regions.restart_layout(data), jpeg_regions.restart_layout(indexed)
    assert not scanned.indexed and layout.indexed
    count = len(scanned.starts)
    # one segment: 2-byte length + identifier + a uint16 per MCU; inserted before the scan
    identifier = len(b"cnnjax MCU lengths\x00")
    assert _index_segments(indexed) == [2 + identifier + 2 * count]
    shift = len(indexed) - len(data)
    assert shift == 4 + identifier + 2 * count
    np.testing.assert_array_equal(layout.starts, scanned.starts + shift)
    np.testing.assert_array_equal(layout.ends, scanned.ends + shift)
    assert layout.header == scanned.header  # the index is left out of region headers
    assert jpeg_regions.crop_jpeg(indexed, layout, 20, 30, 60, 70) == jpeg_regions.crop_jpeg(
        data, scanned, 20, 30, 60, 70
    )
    np.testing.assert_array_equal(_decode(indexed), _decode(data))
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(indexed, np.uint8), 1),
        cv2.imdecode(np.frombuffer(data, np.uint8), 1),
    )
    assert jpeg_regions.add_mcu_index(indexed) == indexed  # already indexed


def test_stale_index_is_not_trusted_and_is_replaced():
    data = _restart_jpeg(_image(64, 96, seed=6))
    indexed = bytearray(jpeg_regions.add_mcu_index(data))
    lengths_at = indexed.index(b"cnnjax MCU lengths\x00") + len(b"cnnjax MCU lengths\x00")
    first, second = (
        bytes(indexed[lengths_at : lengths_at + 2]),
        bytes(indexed[lengths_at + 2 : lengths_at + 4]),
    )
    assert first != second
    indexed[lengths_at : lengths_at + 4] = second + first  # two MCUs' lengths swapped
    stale = bytes(indexed)
    layout = jpeg_regions.restart_layout(stale)
    assert layout is not None and not layout.indexed  # scanned instead
    shift = len(stale) - len(data)
    np.testing.assert_array_equal(layout.starts, jpeg_regions.restart_layout(data).starts + shift)
    fixed = jpeg_regions.add_mcu_index(stale)
    assert fixed == jpeg_regions.add_mcu_index(data)  # the stale index is replaced, not added to
    assert jpeg_regions.restart_layout(stale[: len(stale) - 40]) is None  # truncated


def test_index_of_a_large_image_spans_segments():
    """A segment holds at most 32,757 lengths; 200 x 175 grayscale MCUs need two segments."""
    data = _restart_jpeg(_image(1400, 1600, seed=7, channels=1))
    indexed = jpeg_regions.add_mcu_index(data)
    identifier = len(b"cnnjax MCU lengths\x00")
    per_segment = (65535 - 2 - identifier) // 2
    assert per_segment == 32757
    assert _index_segments(indexed) == [
        2 + identifier + 2 * per_segment,
        2 + identifier + 2 * (35000 - per_segment),
    ]
    layout = jpeg_regions.restart_layout(indexed)
    assert layout.indexed and len(layout.starts) == 200 * 175
    region = jpeg_regions.crop_jpeg(indexed, layout, 1300, 1500, 100, 100)  # the last MCUs
    whole = _decode(indexed, gray=True)
    np.testing.assert_array_equal(_decode(region.jpeg, gray=True), whole[1296:1400, 1496:1600])
