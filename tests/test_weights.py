"""Importing published weights: the run directory, its use by every tool, and every misfit refused.

The weight files are the reference script's synthetic torchvision/timm state_dicts
(tests/weights_reference.py), written in the published formats (.safetensors here; .pth too
where torch is installed), under the published file names.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file
from weights_reference import reference, relative_error, source_state_dict

import cnnjax.checkpoint
from cnnjax.data.catalog import IMAGENET_MEAN, IMAGENET_STD
from cnnjax.weights import (
    WeightsFileError,
    WeightsMismatchError,
    convert,
    identify,
    import_weights,
    load_pretrained,
)
from cnnjax.weights.synthetic import synthetic_images

REPO = Path(__file__).resolve().parent.parent
RESNET18_FILE = "resnet18-f37072fd.safetensors"  # torchvision's file name, as safetensors
HAS_TORCH = importlib.util.find_spec("torch") is not None


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    return write_safetensors(folder / RESNET18_FILE, source_state_dict("torchvision", "resnet18"))


@pytest.fixture(scope="module")
def imported(resnet18_file, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("runs") / "resnet18-tv"
    return import_weights(resnet18_file, "resnet18", workdir, source="torchvision")


def _cli(module: str, *flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_run_directory_holds_weights_config_and_preprocessing(imported, resnet18_file):
    config = json.loads((imported / "config.json").read_text())
    assert config["model"] == "resnet18" and config["num_classes"] == 1000
    assert tuple(config["mean"]) == IMAGENET_MEAN and tuple(config["std"]) == IMAGENET_STD
    assert config["resize_size"] == 256 and config["image_size"] == 224
    provenance = json.loads((imported / "weights.json").read_text())
    assert provenance["file"] == RESNET18_FILE and provenance["weights"] == "IMAGENET1K_V1"
    assert provenance["params"] == 11_689_512  # torchvision's num_params (model_zoo.md)
    assert provenance["published_top1"] == 69.758
    model, variables, loaded_config = cnnjax.checkpoint.load(imported)
    assert loaded_config.imported_from.startswith("torchvision IMAGENET1K_V1")
    _, arrays = reference()
    logits = model.apply(variables, synthetic_images(2, 224), train=False)
    assert relative_error(logits, arrays["torchvision/resnet18/224"]) <= 1e-4


def test_the_python_api_returns_the_model_and_its_variables(resnet18_file):
    model, variables = load_pretrained(resnet18_file, "resnet18")
    assert set(variables) == {"params", "batch_stats"}
    direct = convert(source_state_dict("torchvision", "resnet18"), "resnet18", "torchvision")
    for ours, expected in zip(jax.tree.leaves(variables), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(np.asarray(ours), expected)
    assert model.num_classes == 1000


def test_the_command_line_import_as_documented(resnet18_file, tmp_path):
    workdir = tmp_path / "runs" / "resnet18-tv"
    done = _cli(
        "cnnjax.weights",
        "--source=torchvision",
        "--model=resnet18",
        f"--file={resnet18_file}",
        f"--workdir={workdir}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IMAGENET1K_V1" in done.stdout and "cnnjax.evaluate" in done.stdout
    assert cnnjax.checkpoint.read_config(workdir).model == "resnet18"
    again = _cli(
        "cnnjax.weights", "--model=resnet18", f"--file={resnet18_file}", f"--workdir={workdir}"
    )
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    assert "Traceback" not in again.stderr


def test_the_preprocessing_follows_the_published_weights():
    v2 = identify("torchvision", "resnet50", "downloads/resnet50-11ad3fa6.pth")
    assert (v2.name, v2.resize_size, v2.top1) == ("IMAGENET1K_V2", 232, 80.858)
    v1 = identify("torchvision", "resnet50", "resnet50-0676ba61.safetensors")
    assert (v1.name, v1.resize_size) == ("IMAGENET1K_V1", 256)
    googlenet = identify("torchvision", "googlenet_bn", "googlenet-1378be20.pth")
    assert googlenet.mean == googlenet.std == (0.5, 0.5, 0.5)  # its transform_input
    a1 = identify("timm", "resnet50", "model.safetensors", weights="a1_in1k")
    assert (a1.resize_size, a1.interpolation) == (235, "bicubic")  # floor(224 / 0.95)
    with pytest.raises(ValueError, match="pass --weights= one of IMAGENET1K_V1, IMAGENET1K_V2"):
        identify("torchvision", "resnet50", "my-resnet50.pth")


def _shift(tensors: dict, key: str, value: np.ndarray | None) -> dict:
    changed = dict(tensors)
    if value is None:
        del changed[key]
    else:
        changed[key] = value
    return changed


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: _shift(t, "layer3.1.bn2.running_var", None),
            "tensor 'layer3.1.bn2.running_var' (shape (256,)) is missing",
        ),
        (
            lambda t: _shift(t, "extra.weight", np.zeros(3, np.float32)),
            "tensor 'extra.weight' (shape (3,)) has no place in it",
        ),
        (
            lambda t: _shift(t, "layer1.0.conv1.weight", np.zeros((64, 64, 1, 1), np.float32)),
            "tensor 'layer1.0.conv1.weight' has shape (64, 64, 1, 1), expected (64, 64, 3, 3)",
        ),
        (
            lambda t: _shift(t, "fc.weight", np.zeros((10, 512), np.float32)),
            "the file's classifier has 10 classes: pass --num_classes=10",
        ),
    ],
    ids=["missing", "extra", "misshapen", "head"],
)
def test_a_file_that_does_not_fit_is_refused_naming_the_tensor(change, message, tmp_path):
    tensors = change(source_state_dict("torchvision", "resnet18"))
    path = write_safetensors(tmp_path / RESNET18_FILE, tensors)
    workdir = tmp_path / "run"
    with pytest.raises(WeightsMismatchError, match="resnet18") as error:
        import_weights(path, "resnet18", workdir)
    assert message in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESNET18_FILE]  # nothing written


def test_weights_of_another_model_are_refused_at_the_first_tensor(tmp_path):
    path = write_safetensors(
        tmp_path / "x.safetensors", source_state_dict("torchvision", "resnet34")
    )
    with pytest.raises(WeightsMismatchError, match="'layer1.2.conv1.weight'.*has no place"):
        convert(source_state_dict("torchvision", "resnet34"), "resnet18", "torchvision")
    done = _cli("cnnjax.weights", "--model=resnet18", f"--file={path}", f"--workdir={tmp_path}/r")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "has no place in it" in done.stderr and not (tmp_path / "r").exists()


def test_names_and_formats_get_one_line_advice(tmp_path):
    with pytest.raises(ValueError, match="torchvision's googlenet is cnnjax's googlenet_bn"):
        identify("torchvision", "googlenet", "googlenet-1378be20.pth")
    with pytest.raises(ValueError, match="no timm weights load into it"):
        identify("timm", "googlenet_bn", "model.safetensors")
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(WeightsFileError, match="unknown format .txt"):
        load_pretrained(text, "resnet18")
    garbage = tmp_path / RESNET18_FILE
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsFileError, match="not a readable .safetensors file"):
        load_pretrained(garbage, "resnet18")


@pytest.mark.skipif(HAS_TORCH, reason="checks the message shown where torch is not installed")
def test_a_pytorch_file_without_torch_says_what_to_do(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(WeightsFileError, match="needs torch.*or pass the same tensors as"):
        load_pretrained(path, "resnet18")


@pytest.mark.skipif(not HAS_TORCH, reason="torch is an optional extra")
def test_a_pytorch_state_dict_loads_and_a_pickled_object_is_refused(tmp_path):
    import torch

    tensors = source_state_dict("torchvision", "resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, path)
    _, variables = load_pretrained(path, "resnet18")
    direct = convert(tensors, "resnet18", "torchvision")
    for ours, expected in zip(jax.tree.leaves(variables), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(np.asarray(ours), expected)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"fc.weight": torch.zeros(2), "hook": subprocess.CompletedProcess}, unsafe)
    with pytest.raises(WeightsFileError, match="cannot be read as a state_dict"):
        load_pretrained(unsafe, "resnet18")
    renamed = tmp_path / "resnet18-f37072fd.pth"
    path.rename(renamed)  # not the published bytes: the name's hash does not match
    with pytest.raises(WeightsFileError, match="damaged or not the published file"):
        load_pretrained(renamed, "resnet18")


def _flat(tree) -> dict:
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
def test_fine_tune_imported_weights_with_a_frozen_backbone(imported, tmp_path):
    # CIFAR-shaped synthetic data (32×32×3, 10 classes): a new head on the imported backbone.
    target = tmp_path / "tuned"
    run = _cli(
        "experiments.fake",
        "--model=resnet18",
        "--image_size=32",
        "--num_classes=10",
        "--batch_size=16",
        "--max_steps=4",
        "--eval_every_epochs=100",
        "--freeze=backbone",
        f"--init_from={imported}",
        f"--workdir={target}",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    said = run.stderr + run.stdout
    assert f"the --init_from run's ({imported}), not fake's" in said
    _, before, _ = cnnjax.checkpoint.load(imported)
    _, after, config = cnnjax.checkpoint.load(target)
    assert config.mean == IMAGENET_MEAN and config.std == IMAGENET_STD
    old, new = _flat(before["params"]), _flat(after["params"])
    assert new["fc/kernel"].shape == (512, 10)
    for name, value in old.items():
        if not name.startswith("fc/"):
            np.testing.assert_array_equal(new[name], value, err_msg=name)
    for name, value in _flat(before["batch_stats"]).items():
        np.testing.assert_array_equal(_flat(after["batch_stats"])[name], value, err_msg=name)
    refused = _cli("experiments.fake", "--model=resnet18", f"--workdir={imported}")
    assert refused.returncode == 2 and "holds weights imported from torchvision" in refused.stderr
    assert f"--init_from={imported}" in refused.stderr


@pytest.mark.slow
def test_evaluate_scores_an_imported_run_with_its_own_preprocessing(tmp_path):
    # timm's resnet18.a1_in1k was evaluated with the shorter side at floor(224 / 0.95) = 235:
    # cnnjax.evaluate must read the tiny ImageNet's validation JPEGs that way, not at 256.
    from cnnjax import data
    from cnnjax.data import augment
    from cnnjax.data.testing import write_tiny_imagenet
    from cnnjax.evaluate import member_probabilities

    files = write_tiny_imagenet(tmp_path / "manual", train_per_class=1, num_validation=3)
    data.prepare("imagenet2012", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    weights = write_safetensors(
        tmp_path / "model.safetensors", source_state_dict("timm", "resnet18")
    )
    workdir = import_weights(
        weights, "resnet18", tmp_path / "run", source="timm", weights="a1_in1k"
    )
    assert cnnjax.checkpoint.read_config(workdir).resize_size == 235
    probs, _ = member_probabilities(workdir, data_dir=str(tmp_path / "data"), batch_size=4)
    model, variables, _ = cnnjax.checkpoint.load(workdir)

    def expected(resize: int) -> np.ndarray:
        views = [
            augment.normalize(
                augment.imagenet_eval(b, image_size=224, resize_size=resize),
                IMAGENET_MEAN,
                IMAGENET_STD,
            )
            for _, b in sorted(files.validation.items())
        ]
        logits = model.apply(variables, np.stack(views), train=False)
        return np.asarray(jax.nn.softmax(logits))

    def matched(ours: np.ndarray, theirs: np.ndarray) -> float:
        # The split's order is tfds's; compare each expected row with its nearest scored row.
        return max(float(np.min(np.abs(ours - row).max(axis=1))) for row in theirs)

    assert probs.shape == (3, 1000)
    assert matched(probs, expected(235)) < 1e-5
    assert matched(probs, expected(256)) > 1e-4  # the resize makes a difference here


@pytest.mark.slow
def test_visualize_and_features_read_an_imported_run(imported, tmp_path):
    from PIL import Image

    from cnnjax.features import features

    photo = tmp_path / "photo.jpg"
    gradient = np.linspace(0, 255, 300 * 400 * 3).reshape(300, 400, 3).astype(np.uint8)
    Image.fromarray(gradient).save(photo, quality=90)
    for what, flags in (("filters", ()), ("saliency", (f"--image={photo}",))):
        out = tmp_path / f"{what}.png"
        drawn = _cli(
            "cnnjax.visualize", f"--workdir={imported}", f"--what={what}", f"--out={out}", *flags
        )
        assert drawn.returncode == 0, drawn.stderr[-2000:]
        assert out.stat().st_size > 1000
    model, variables, _ = cnnjax.checkpoint.load(imported)
    feats = features(model, variables, synthetic_images(2, 224), layers=["layer4", "fc"])
    assert feats["layer4"].shape == (2, 7, 7, 512) and feats["fc"].shape == (2, 1000)
