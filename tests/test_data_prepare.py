"""Dataset preparation: tiny ImageNet from the real manual format, offline Fashion-MNIST, errors."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

import cnnjax.data as data
from cnnjax.data import jpeg_regions, offline
from cnnjax.data.catalog import dataset_info
from cnnjax.data.testing import write_tiny_imagenet

REPO = Path(__file__).resolve().parents[1]
prepare_module = importlib.import_module("cnnjax.data.prepare")  # the module, not the function
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TFDS_IMAGENET = "datasets/imagenet2012/{}"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "cnnjax.data.prepare", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def _tfds_lines(name: str) -> list[str]:
    import tensorflow_datasets as tfds

    return tfds.core.tfds_path(TFDS_IMAGENET.format(name)).read_text().split()


# ----------------------------------------------------------------------------- gzip headers


def _stripped(data: bytes) -> bytes:
    """What strip-nondeterminism does to a gzip header: drop FNAME, set a new MTIME."""
    assert data[3] & 0x08, "expected an FNAME field"
    end = data.index(b"\0", 10)
    return (
        data[:3]
        + bytes([data[3] & ~0x08])
        + (1591347949).to_bytes(4, "little")
        + data[8:10]
        + data[end + 1 :]
    )


def test_restore_gzip_name_inverts_strip_nondeterminism():
    payload = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    with gzip.GzipFile("train-labels-idx1-ubyte", "wb", fileobj=buffer, mtime=1504176606) as f:
        f.write(payload)
    original = buffer.getvalue()
    stripped = _stripped(original)
    assert len(original) - len(stripped) == len("train-labels-idx1-ubyte") + 1
    restored = offline.restore_gzip_name(stripped, "train-labels-idx1-ubyte.gz", mtime=1504176606)
    assert restored == original
    assert gzip.decompress(restored) == payload
    assert offline.restore_gzip_name(original, "x.gz", 0) is None  # header not bare
    assert offline.restore_gzip_name(b"not gzip at all, clearly", "x.gz", 0) is None


def test_stage_rejects_a_wrong_file_and_names_missing_ones(tmp_path):
    good = b"hello"
    expected = [
        offline.ExpectedFile("a.gz", len(good), hashlib.sha256(good).hexdigest()),
        offline.ExpectedFile("b.gz", 3, "0" * 64),
    ]
    (tmp_path / "a.gz").write_bytes(good)
    with pytest.raises(offline.SourceFilesMissingError, match="lacks b.gz"):
        offline.stage_source_files(tmp_path, expected, tmp_path / "out")
    (tmp_path / "b.gz").write_bytes(b"bad")
    with pytest.raises(offline.ChecksumMismatchError, match="b.gz") as err:
        offline.stage_source_files(tmp_path, expected, tmp_path / "out")
    assert "\n" not in str(err.value)
    staged = offline.stage_source_files(tmp_path, expected[:1], tmp_path / "out")
    assert Path(staged[0]).read_bytes() == good


# ----------------------------------------------------------------------------- ImageNet


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """Tiny ImageNet written in the manual format and prepared through the CLI."""
    root = tmp_path_factory.mktemp("imagenet")
    manual, data_dir = root / "manual", root / "data"
    files = write_tiny_imagenet(manual, train_per_class=3, num_validation=5)
    out = _run_cli("--dataset=imagenet2012", f"--data_dir={data_dir}", f"--manual_dir={manual}")
    assert out.returncode == 0, out.stderr[-3000:]
    return files, data_dir


def test_imagenet_prepared_from_manual_tars(tiny_imagenet):
    import tensorflow_datasets as tfds

    files, data_dir = tiny_imagenet
    assert data.num_examples("imagenet2012", "train", data_dir) == len(files.train) == 9
    assert data.num_examples("imagenet2012", "validation", data_dir) == 5
    synsets = _tfds_lines("labels.txt")
    val_synsets = _tfds_lines("validation_labels.txt")
    for split, expected_files in (("train", files.train), ("validation", files.validation)):
        source = tfds.data_source(
            "imagenet2012",
            split=split,
            data_dir=str(data_dir),
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        seen = {}
        for i in range(len(source)):
            record = source[i]
            seen[record["file_name"].decode()] = (record["image"], record["label"])
        assert set(seen) == set(expected_files)
        for name, (image, label) in seen.items():
            original = expected_files[name]
            if jpeg_regions.jpegtran_available():  # stored losslessly, markers and MCU index
                assert jpeg_regions.restart_layout(original) is None
                assert jpeg_regions.restart_layout(image).indexed
                np.testing.assert_array_equal(
                    simplejpeg.decode_jpeg(image), simplejpeg.decode_jpeg(original)
                )
            else:
                assert image == original
            if split == "train":
                assert label == synsets.index(name.split("_")[0])
            else:  # tfds's bundled list: line i is the synset of ILSVRC2012_val_<i>
                assert label == synsets.index(val_synsets[int(name[-13:-5]) - 1])


def test_restart_markers_need_jpegtran_only_when_asked(monkeypatch, caplog):
    monkeypatch.setattr(jpeg_regions, "jpegtran_available", lambda: False)
    imagenet, mnist = dataset_info("imagenet2012"), dataset_info("mnist")
    assert prepare_module._use_restart_markers(imagenet, None) is False  # auto: warn, go on
    assert "apt-get install libjpeg-turbo-progs" in caplog.text
    with pytest.raises(prepare_module.PrepareError, match="--restart_markers=off") as err:
        prepare_module._use_restart_markers(imagenet, True)
    assert "\n" not in str(err.value)
    assert prepare_module._use_restart_markers(imagenet, False) is False
    assert prepare_module._use_restart_markers(mnist, True) is False  # not JPEGs
    monkeypatch.setattr(jpeg_regions, "jpegtran_available", lambda: True)
    assert prepare_module._use_restart_markers(imagenet, None) is True


def test_transcoding_keeps_order_and_reads_streams_before_moving_on(monkeypatch):
    """Examples come out in order; a file object is read before the next one is produced."""
    monkeypatch.setattr(jpeg_regions, "add_restart_markers", lambda b: b"rst:" + b)

    class OneShot(io.BytesIO):  # like a tar stream member: dead once the generator moves on
        def __init__(self, data, alive):
            super().__init__(data)
            self.alive = alive

        def read(self, *args):
            assert self.alive[0], "read after the generator moved on"
            return super().read(*args)

    def generate(count):
        for i in range(count):
            alive = [True]
            yield i, {"image": OneShot(f"img{i}".encode(), alive), "label": i}
            alive[0] = False

    wrapped = prepare_module._transcoding(generate, threads=3)
    out = list(wrapped(count=200))
    assert [key for key, _ in out] == list(range(200))
    assert [ex["image"] for _, ex in out] == [f"rst:img{i}".encode() for i in range(200)]
    assert [ex["label"] for _, ex in out] == list(range(200))


def test_imagenet_missing_tar_is_one_line_naming_it(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        data.prepare("imagenet2012", data_dir=tmp_path / "data", manual_dir=manual)
    message = str(err.value)
    assert "\n" not in message
    assert "missing: ILSVRC2012_img_val.tar" in message
    assert str(manual) in message and "--manual_dir" in message


def test_cli_reports_missing_tars_without_traceback(tmp_path):
    out = _run_cli(
        "--dataset=imagenet2012", f"--data_dir={tmp_path}", f"--manual_dir={tmp_path / 'none'}"
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: imagenet2012 needs")
    assert "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar" in last
    assert "Traceback" not in out.stderr


def test_cli_rejects_unknown_dataset(tmp_path):
    out = _run_cli("--dataset=imagenet2013", f"--data_dir={tmp_path}")
    assert out.returncode != 0
    assert "unknown dataset 'imagenet2013'" in out.stderr and "imagenet2012" in out.stderr


def test_prepare_is_callable_after_importing_the_submodule():
    import cnnjax.data.prepare as prepare_module

    assert callable(prepare_module) and callable(data.prepare)
    with pytest.raises(data.UnknownDatasetError):
        data.prepare("nope")
    assert data.prepare("fake") is None


# ----------------------------------------------------------------------------- Fashion-MNIST


def _idx(path: str) -> np.ndarray:
    """Independent IDX parser: big-endian magic (0x0000 08 ndim) and dims, then uint8 data."""
    raw = gzip.decompress(Path(path).read_bytes())
    assert raw[:3] == b"\0\0\x08"
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR),
    reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    """Fashion-MNIST prepared offline from the Debian IDX files (auto-detected source)."""
    data_dir = tmp_path_factory.mktemp("fashion")
    path = data.prepare("fashion_mnist", data_dir=data_dir)
    assert path is not None and os.path.isdir(path)
    return data_dir


@needs_fashion
def test_debian_files_restore_to_the_checksums_tfds_records(tmp_path):
    import tensorflow_datasets as tfds

    url_infos = tfds.builder("fashion_mnist", data_dir=str(tmp_path)).url_infos
    expected = [offline.ExpectedFile(u.filename, u.size, u.checksum) for u in url_infos.values()]
    staged = offline.stage_source_files(
        FASHION_DIR, expected, tmp_path, mtimes=offline.UPSTREAM_GZIP_MTIMES["fashion_mnist"]
    )
    by_name = {u.filename: u for u in url_infos.values()}
    for path in staged:
        content = Path(path).read_bytes()
        info = by_name[Path(path).name]
        assert hashlib.sha256(content).hexdigest() == info.checksum
        assert len(content) == info.size
        # Same decompressed IDX data as the Debian file.
        local = gzip.decompress(Path(FASHION_DIR, Path(path).name).read_bytes())
        assert gzip.decompress(content) == local


@needs_fashion
def test_fashion_mnist_offline_matches_the_idx_files(fashion_dir):
    images = {
        s: _idx(f"{FASHION_DIR}/{p}-images-idx3-ubyte.gz")
        for s, p in (("train", "train"), ("test", "t10k"))
    }
    labels = {
        s: _idx(f"{FASHION_DIR}/{p}-labels-idx1-ubyte.gz")
        for s, p in (("train", "train"), ("test", "t10k"))
    }
    assert data.num_examples("fashion_mnist", "train", fashion_dir) == 60_000
    assert data.num_examples("fashion_mnist", "test", fashion_dir) == 10_000
    # The catalog's normalisation is the training set's pixel statistics.
    pixels = images["train"] / 255.0
    info = data.dataset_info("fashion_mnist")
    assert abs(pixels.mean() - info.mean[0]) < 5e-5 and abs(pixels.std() - info.std[0]) < 5e-5

    # tfds stores the examples shuffled (by a hash of their key), so compare as multisets of
    # (pixels, label) pairs, with pixels recovered from the normalised values.
    loader = data.make_loader(
        "fashion_mnist", "test", batch_size=2500, train=False, data_dir=fashion_dir
    )
    batches = list(loader)
    assert len(batches) == loader.num_batches == 4
    assert all(b["mask"].all() for b in batches)
    label = np.concatenate([b["label"] for b in batches])
    assert set(np.unique(label)) == set(range(10))
    image = np.concatenate([b["image"] for b in batches])[..., 0]
    pixels = (image * 0.3530 + 0.2860) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    loaded = Counter(zip(_rows(np.round(pixels).astype(np.uint8)), label.tolist(), strict=True))
    assert loaded == Counter(zip(_rows(images["test"]), labels["test"].tolist(), strict=True))


def _rows(images: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in images.reshape(len(images), -1)]


@needs_fashion
def test_fashion_mnist_train_split_and_lenet_padding(fashion_dir):
    pairs = set(
        zip(
            _rows(_idx(f"{FASHION_DIR}/train-images-idx3-ubyte.gz")),
            _idx(f"{FASHION_DIR}/train-labels-idx1-ubyte.gz").tolist(),
            strict=True,
        )
    )
    loader = data.make_loader(
        "fashion_mnist",
        "train[:8]",
        batch_size=8,
        train=False,
        data_dir=fashion_dir,
        image_size=32,
    )
    batch = next(loader)
    assert batch["image"].shape == (8, 32, 32, 1)
    background = (0 - 0.2860) / 0.3530
    np.testing.assert_allclose(batch["image"][:, :2], background, atol=1e-6)  # 2-px zero pad
    np.testing.assert_allclose(batch["image"][:, -2:], background, atol=1e-6)
    np.testing.assert_allclose(batch["image"][:, :, :2], background, atol=1e-6)
    np.testing.assert_allclose(batch["image"][:, :, -2:], background, atol=1e-6)
    centre = np.round((batch["image"][:, 2:30, 2:30, 0] * 0.3530 + 0.2860) * 255)
    for pixels, label in zip(_rows(centre.astype(np.uint8)), batch["label"].tolist(), strict=True):
        assert (pixels, label) in pairs
    # Preparing again reuses the build.
    assert data.prepare("fashion_mnist", data_dir=fashion_dir).endswith("3.0.1")


def test_explicit_source_dir_without_files_names_them(tmp_path):
    with pytest.raises(offline.SourceFilesMissingError) as err:
        data.prepare("mnist", data_dir=tmp_path / "d", source_dir=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(err.value) and "\n" not in str(err.value)


@needs_fashion
def test_a_damaged_local_file_is_refused_before_generation(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for path in Path(FASHION_DIR).glob("*.gz"):
        (source / path.name).write_bytes(path.read_bytes())
    damaged = bytearray((source / "t10k-labels-idx1-ubyte.gz").read_bytes())
    damaged[100] ^= 0xFF
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(damaged))
    with pytest.raises(offline.ChecksumMismatchError, match="t10k-labels-idx1-ubyte.gz"):
        data.prepare("fashion_mnist", data_dir=tmp_path / "d", source_dir=source)
    assert not (tmp_path / "d" / "fashion_mnist").exists()
