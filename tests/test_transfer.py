"""Transfer learning: --init_from copies the backbone, --freeze=backbone keeps it bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import cnnjax
import cnnjax.checkpoint
from cnnjax.train.transfer import freeze_labels, head_paths

REPO = Path(__file__).resolve().parent.parent


def _run(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.fake", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_head_is_the_classifier_and_everything_else_is_frozen():
    model = cnnjax.create_model("googlenet", num_classes=7)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    heads = head_paths(params["params"], 7)
    assert heads == {("fc",), ("aux1", "classifier"), ("aux2", "classifier")}
    labels = traverse_util.flatten_dict(freeze_labels(params["params"], 7))
    trained = {p for p, label in labels.items() if label == "train"}
    assert {p[:-1] for p in trained} == heads
    with pytest.raises(ValueError, match="found no classifier with 5 outputs"):
        freeze_labels(params["params"], 5)


def test_fine_tune_with_a_frozen_backbone(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    common = ["--model=lenet5", "--batch_size=32", "--lr=0.01", "--log_every_steps=5"]
    assert _run(*common, "--max_steps=15", f"--workdir={source}").returncode == 0
    tuned = _run(
        *common,
        "--max_steps=10",
        "--num_classes=4",
        "--freeze=backbone",
        f"--init_from={source}",
        f"--workdir={target}",
    )
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    _, before, _ = cnnjax.checkpoint.load(source)
    _, after, config = cnnjax.checkpoint.load(target)
    assert config.num_classes == 4 and config.freeze == "backbone"
    for layer in ("c1", "c3", "c5", "f6"):
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(
                after["params"][layer][name], before["params"][layer][name]
            )
    assert after["params"]["output"]["kernel"].shape == (84, 4)


def test_init_from_a_different_architecture_fails_in_one_line(tmp_path):
    source = tmp_path / "source"
    assert (
        _run("--model=lenet5", "--max_steps=5", "--batch_size=32", f"--workdir={source}").returncode
        == 0
    )
    other = _run(
        "--model=small_convnet",
        "--max_steps=5",
        "--batch_size=32",
        f"--init_from={source}",
        f"--workdir={tmp_path / 'other'}",
    )
    assert other.returncode == 2
    assert "shares no parameter with this model" in other.stderr.strip().splitlines()[-1]


def test_rgb_filters_are_summed_for_one_channel_inputs():
    from cnnjax.train.transfer import _merge, rgb_to_gray_kernel

    rgb = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    gray = rgb_to_gray_kernel(rgb, (2, 2, 1, 4))
    np.testing.assert_array_equal(gray[..., 0, :], rgb[..., 0, :] + rgb[..., 1, :] + rgb[..., 2, :])
    assert rgb_to_gray_kernel(rgb, (2, 2, 2, 4)) is None  # only RGB -> 1 channel
    assert rgb_to_gray_kernel(rgb, (3, 3, 1, 4)) is None
    fresh = {"conv1": {"kernel": jnp.zeros((2, 2, 1, 4))}, "fc": {"kernel": jnp.zeros((4, 7))}}
    source = {"conv1": {"kernel": rgb}, "fc": {"kernel": np.ones((4, 10), np.float32)}}
    merged, copied, kept = _merge(fresh, source, "params")
    np.testing.assert_array_equal(np.asarray(merged["conv1"]["kernel"]), gray)
    assert (copied, kept) == (["conv1/kernel"], ["fc/kernel"])
