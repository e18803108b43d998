"""Trustworthy data: no network fails at once with the offline recipe; a damaged prepared
dataset fails with one line naming the file; prepare rebuilds it (on its own, or --force).

No test sends traffic anywhere but 127.0.0.1: downloads are pointed at a closed local port
(as a proxy) and tfds's downloader is made to fail the test if it is ever reached.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cnnjax.data as data
from cnnjax.data import offline
from cnnjax.data.sources import DatasetDamagedError
from cnnjax.data.testing import write_tiny_imagenet

REPO = Path(__file__).resolve().parents[1]
prepare_module = importlib.import_module("cnnjax.data.prepare")  # the module, not the function
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_VERSION = "fashion_mnist/3.0.1"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR),
    reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)",
)


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline(monkeypatch: pytest.MonkeyPatch) -> int:
    """Route every download through a dead local proxy; fail the test if tfds downloads."""
    from tensorflow_datasets.core.download import downloader

    port = _closed_port()
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")

    def no_download(*args, **kwargs):
        raise AssertionError("tfds started a download; the network check should have stopped it")

    monkeypatch.setattr(downloader._Downloader, "download", no_download)
    return port


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "cnnjax.data.prepare", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )


def _command_args(message: str, marker: str) -> list[str]:
    """The flags of the `python -m cnnjax.data.prepare ...` command a message ends with."""
    command = shlex.split(message.split(marker, 1)[1])
    assert command[:3] == ["python", "-m", "cnnjax.data.prepare"]
    return command[3:]


# ----------------------------------------------------------------------------- network check


def test_download_endpoint_is_the_proxy_when_one_is_set(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    url = "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz"
    assert offline.download_endpoint(url) == ("storage.googleapis.com", 443)
    assert offline.download_endpoint("http://example.org:8080/a.gz") == ("example.org", 8080)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert offline.download_endpoint(url) == ("127.0.0.1", 3128)
    monkeypatch.setenv("NO_PROXY", "storage.googleapis.com")
    assert offline.download_endpoint(url) == ("storage.googleapis.com", 443)


def test_reachable_answers_quickly_for_local_ports():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert offline.reachable("127.0.0.1", server.getsockname()[1], timeout=2.0)
    start = time.monotonic()
    assert not offline.reachable("127.0.0.1", _closed_port(), timeout=2.0)
    assert time.monotonic() - start < 1.0  # refused at once, no waiting for the timeout


def test_reachable_gives_up_at_the_timeout_even_when_the_lookup_hangs(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(10)
        raise OSError("lookup hung")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    try:
        assert not offline.reachable("127.0.0.1", 9, timeout=0.3)
        assert time.monotonic() - start < 1.5
    finally:
        release.set()


def test_no_network_fails_at_once_with_the_offline_recipe(monkeypatch, tmp_path):
    port = _offline(monkeypatch)
    start = time.monotonic()
    with pytest.raises(prepare_module.NoNetworkError) as err:
        data.prepare("mnist", data_dir=tmp_path)
    assert time.monotonic() - start < 15  # tfds's retries took minutes
    message = _one_line(err)
    assert isinstance(err.value, data.DatasetNotPreparedError)
    assert f"127.0.0.1:{port} (the proxy) does not answer" in message
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        assert f"{name}-idx{3 if 'images' in name else 1}-ubyte.gz" in message
    args = _command_args(message, "run: ")
    assert args == ["--dataset=mnist", f"--data_dir={tmp_path}", "--source_dir=DIR"]


def test_no_network_for_cifar_names_the_archive_and_manual_dir(monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(prepare_module.NoNetworkError) as err:
        data.prepare("cifar10", data_dir=tmp_path)
    message = _one_line(err)
    assert "cifar-10-binary.tar.gz (https://www.cs.toronto.edu/~kriz/" in message
    assert _command_args(message, "run: ")[-1] == "--manual_dir=DIR"


def test_files_in_manual_dir_need_no_network(monkeypatch, tmp_path):
    """The command the cifar error prints takes the archive from --manual_dir, offline."""
    _offline(monkeypatch)
    monkeypatch.setattr(offline, "reachable", lambda *a, **k: pytest.fail("network checked"))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not the real archive")
    with pytest.raises(prepare_module.PrepareError) as err:
        data.prepare("cifar10", data_dir=tmp_path / "d", manual_dir=tmp_path)
    assert "cifar-10-binary.tar.gz" in _one_line(err)  # checked against tfds's checksum
    assert not isinstance(err.value, prepare_module.NoNetworkError)


# ----------------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fashion_build(tmp_path_factory) -> Path:
    """Fashion-MNIST prepared by the very command the no-network error prints, DIR = Debian's.

    Tests damage copies of it, never this build.
    """
    data_dir = tmp_path_factory.mktemp("fashion") / "data"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _offline(monkeypatch)
        monkeypatch.setattr(prepare_module, "_local_source_dir", lambda *a: None)  # no Debian
        with pytest.raises(prepare_module.NoNetworkError) as err:
            data.prepare("fashion_mnist", data_dir=data_dir)
    message = _one_line(err)
    assert "apt-get install dataset-fashion-mnist" in message
    args = [a.replace("=DIR", f"={FASHION_DIR}") for a in _command_args(message, "run: ")]
    assert args == [
        "--dataset=fashion_mnist",
        f"--data_dir={data_dir}",
        f"--source_dir={FASHION_DIR}",
    ]
    out = _run_cli(args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fashion_mnist: ready in" in out.stdout
    return data_dir


def _copy(build: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(build, data_dir)
    return data_dir


def _shard(data_dir: Path, split: str) -> Path:
    return data_dir / FASHION_VERSION / f"fashion_mnist-{split}.array_record-00000-of-00001"


def _damaged(call) -> str:
    with pytest.raises(DatasetDamagedError) as err:
        call()
    return _one_line(err)


def _assert_loads_fully(data_dir: Path) -> None:
    """60,000 / 10,000 examples (the Fashion-MNIST release) and every test example loads."""
    assert data.num_examples("fashion_mnist", "train", data_dir) == 60_000
    assert data.num_examples("fashion_mnist", "test", data_dir) == 10_000
    loader = data.make_loader(
        "fashion_mnist", "test", batch_size=2500, train=False, data_dir=data_dir
    )
    labels = np.concatenate([batch["label"] for batch in loader])
    assert np.bincount(labels).tolist() == [1000] * 10  # the test set is balanced


@pytest.mark.slow
@needs_fashion
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_broken_shard_is_one_line_naming_it(fashion_build, tmp_path, damage):
    data_dir = _copy(fashion_build, tmp_path)
    shard = _shard(data_dir, "test")
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    else:
        shard.unlink()
    fix = f"python -m cnnjax.data.prepare --dataset=fashion_mnist --data_dir={data_dir} --force"
    for call in (
        lambda: data.num_examples("fashion_mnist", "test", data_dir),
        lambda: data.make_loader(
            "fashion_mnist", "test", batch_size=8, train=False, data_dir=data_dir
        ),
    ):
        message = _damaged(call)
        assert f"{shard} is {'missing' if damage == 'deleted' else 'unreadable'}" in message
        assert message.endswith(fix)
    assert data.num_examples("fashion_mnist", "train", data_dir) == 60_000  # the intact split


@pytest.mark.slow
@needs_fashion
def test_a_record_broken_inside_a_shard_is_one_line_when_read(fashion_build, tmp_path):
    data_dir = _copy(fashion_build, tmp_path)
    shard = _shard(data_dir, "test")
    content = bytearray(shard.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 4096] = bytes(4096)  # footer and index intact, records not
    shard.write_bytes(bytes(content))
    assert data.num_examples("fashion_mnist", "test", data_dir) == 10_000  # opens fine
    loader = data.make_loader(
        "fashion_mnist", "test", batch_size=500, train=False, data_dir=data_dir
    )
    message = _damaged(lambda: list(loader))
    assert f"{shard} cannot be read at record" in message
    assert message.endswith("--force")


@pytest.mark.slow
@needs_fashion
def test_missing_dataset_info_is_named_and_its_printed_command_rebuilds(fashion_build, tmp_path):
    data_dir = _copy(fashion_build, tmp_path)
    info_file = data_dir / FASHION_VERSION / "dataset_info.json"
    info_file.unlink()
    message = _damaged(lambda: data.num_examples("fashion_mnist", "train", data_dir))
    assert f"{info_file} is missing" in message
    out = _run_cli(_command_args(message, "rebuild it with: "))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith(f"fashion_mnist: ready in {data_dir / FASHION_VERSION}")
    assert "is damaged" in out.stderr  # said why it rebuilt
    assert info_file.is_file()
    assert not list((data_dir / "fashion_mnist").glob(".*"))  # the old build was removed
    _assert_loads_fully(data_dir)


# ----------------------------------------------------------------------------- rebuilds


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ImageNet (6 train, 3 validation JPEGs) prepared from its manual tars."""
    root = tmp_path_factory.mktemp("imagenet")
    write_tiny_imagenet(root / "manual", train_per_class=2, num_validation=3)
    data.prepare("imagenet2012", data_dir=root / "data", manual_dir=root / "manual")
    return root / "data", root / "manual"


def _imagenet_copy(tiny_imagenet, tmp_path: Path) -> tuple[Path, Path, Path]:
    build, manual = tiny_imagenet
    data_dir = _copy(build, tmp_path)
    return data_dir, manual, data_dir / "imagenet2012" / "5.1.0"


def _imagenet_counts(data_dir: Path) -> tuple[int, int]:
    return (
        data.num_examples("imagenet2012", "train", data_dir),
        data.num_examples("imagenet2012", "validation", data_dir),
    )


@pytest.mark.parametrize("damage", ["truncated", "deleted", "half-written"])
def test_prepare_rebuilds_a_damaged_build_on_its_own(tiny_imagenet, tmp_path, damage):
    data_dir, manual, version_dir = _imagenet_copy(tiny_imagenet, tmp_path)
    shard = version_dir / "imagenet2012-validation.array_record-00000-of-00001"
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:70_000])
    elif damage == "deleted":
        shard.unlink()
    else:  # an interrupted copy: some files, no dataset_info.json
        (version_dir / "dataset_info.json").unlink()
    with pytest.raises(DatasetDamagedError) as err:
        _imagenet_counts(data_dir)
    assert "--force --manual_dir=DIR (DIR holding ILSVRC2012_img_train.tar" in _one_line(err)
    path = data.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual)
    assert path == str(version_dir)
    assert _imagenet_counts(data_dir) == (6, 3)


def test_force_rebuilds_an_intact_build(tiny_imagenet, tmp_path):
    data_dir, manual, version_dir = _imagenet_copy(tiny_imagenet, tmp_path)
    shard = version_dir / "imagenet2012-train.array_record-00000-of-00001"
    before = shard.stat().st_ino
    data.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual)  # intact: reused
    assert shard.stat().st_ino == before
    data.prepare("imagenet2012", data_dir=data_dir, manual_dir=manual, force=True)
    assert shard.stat().st_ino != before
    assert _imagenet_counts(data_dir) == (6, 3)


def test_a_failed_rebuild_puts_the_old_build_back(tiny_imagenet, tmp_path):
    data_dir, _, version_dir = _imagenet_copy(tiny_imagenet, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(prepare_module.ManualFilesMissingError):
        data.prepare("imagenet2012", data_dir=data_dir, manual_dir=tmp_path / "empty", force=True)
    assert _imagenet_counts(data_dir) == (6, 3)  # refused before touching the build
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (corrupt / name).write_bytes(b"not a tar archive")
    with pytest.raises(tarfile.ReadError):  # the build itself fails
        data.prepare("imagenet2012", data_dir=data_dir, manual_dir=corrupt, force=True)
    assert sorted(p.name for p in version_dir.parent.iterdir()) == ["5.1.0"]
    assert _imagenet_counts(data_dir) == (6, 3)
