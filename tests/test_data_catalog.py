"""The dataset catalog: names, shapes, classes, normalisation constants and import hygiene."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cnnjax.data import DATASETS, UnknownDatasetError, dataset_info
from cnnjax.data.catalog import default_data_dir, resolve_data_dir

EXPECTED_NAMES = {
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imagenet2012",
    "imagenette",
    "fake",
}


def test_catalog_has_every_dataset_of_the_issue():
    # tests/test_text_data.py
    text_names = {"mr", "trec", "sst1", "sst2_trees", "sst2", "imdb_reviews", "subj", "cr", "mpqa"}
    assert set(DATASETS) == EXPECTED_NAMES | text_names


def test_unknown_name_is_one_line_listing_the_names():
    with pytest.raises(UnknownDatasetError) as err:
        dataset_info("cifar11")
    message = str(err.value)
    assert "\n" not in message
    assert "cifar10" in message and "did you mean" in message
    for name in EXPECTED_NAMES:
        assert name in message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    "name, mean, std",
    [
        # ImageNet: torchvision's published statistics.
        ("imagenet2012", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("imagenette", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        # CIFAR: fb.resnet.torch's 0-255 values divided by 255, to its 0.1/255 rounding.
        ("cifar10", np.array([125.3, 123.0, 113.9]) / 255, np.array([63.0, 62.1, 66.7]) / 255),
        ("cifar100", np.array([129.3, 124.1, 112.4]) / 255, np.array([68.2, 65.4, 70.4]) / 255),
        ("mnist", (0.1307,), (0.3081,)),
        ("fashion_mnist", (0.2860,), (0.3530,)),
    ],
)
def test_normalisation_constants_match_their_sources(name, mean, std):
    info = dataset_info(name)
    np.testing.assert_allclose(info.mean, mean, atol=0.5 / 255)
    np.testing.assert_allclose(info.std, std, atol=0.5 / 255)
    assert len(info.mean) == len(info.std) == info.channels


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES - {"fake"}))
def test_catalog_agrees_with_the_tfds_builder(name, tmp_path):
    """Classes, channels and splits as the tfds builder code defines them (no data needed)."""
    import tensorflow_datasets as tfds

    info = dataset_info(name)
    builder = tfds.builder(info.tfds_name, data_dir=str(tmp_path))
    features = builder.info.features
    assert features["label"].num_classes == info.num_classes
    assert features["image"].shape[-1] in (info.channels, None)
    if info.pipeline in ("mnist", "cifar"):
        assert features["image"].shape == (info.image_size, info.image_size, info.channels)
    assert builder.MANUAL_DOWNLOAD_INSTRUCTIONS is not None or not info.manual_download


def test_split_names_and_manual_flags():
    assert dataset_info("imagenet2012").eval_split == "validation"
    assert dataset_info("imagenet2012").manual_download
    assert set(dataset_info("imagenet2012").manual_files) == {
        "ILSVRC2012_img_train.tar",
        "ILSVRC2012_img_val.tar",
    }
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        assert (dataset_info(name).train_split, dataset_info(name).eval_split) == ("train", "test")
        assert not dataset_info(name).manual_download


def test_default_data_dir_follows_tfds(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    assert resolve_data_dir(None) == str(tmp_path)
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert default_data_dir().endswith("tensorflow_datasets")
    assert resolve_data_dir("~/x") == str(tmp_path.home() / "x")


def test_loading_never_imports_tensorflow():
    """`import cnnjax.data`, a loader and the catalog run without TensorFlow in sys.modules."""
    code = textwrap.dedent(
        """
        import sys
        import cnnjax.data
        import cnnjax.data.loader
        from cnnjax.data import FakeSpec, make_loader, num_examples
        batch = next(make_loader("fake", "train", batch_size=2, train=True,
                                 fake=FakeSpec(train_examples=4)))
        assert batch["image"].shape == (2, 32, 32, 3)
        assert num_examples("fake", "test") == FakeSpec().eval_examples
        print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
