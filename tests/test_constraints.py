"""Post-update weight constraints: Kim's max-norm and Zeiler & Fergus's filter RMS, every step."""

from __future__ import annotations

import numpy as np
import pytest

import cnnjax
from cnnjax import ops
from cnnjax.train.config import TrainConfig
from cnnjax.train.optim import make_optimizer
from cnnjax.train.recipes import build_config
from cnnjax.train.step import Steps, make_mesh


def test_max_norm_columns_rescales_only_the_long_columns():
    kernel = np.array([[3.0, 0.3], [4.0, 0.4]], np.float32)  # column norms 5 and 0.5
    out = np.asarray(ops.max_norm_columns(kernel, 3.0))
    np.testing.assert_allclose(out[:, 0], [1.8, 2.4], rtol=1e-6)  # 3/5 of (3, 4)
    np.testing.assert_array_equal(out[:, 1], kernel[:, 1])


def test_cap_filter_rms_rescales_filters_above_the_radius():
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    kernel[..., 0] = 0.2  # RMS 0.2 -> every weight 0.1
    kernel[..., 1] = 0.05  # RMS 0.05 stays
    out = np.asarray(ops.cap_filter_rms(kernel, 0.1))
    np.testing.assert_allclose(out[..., 0], 0.1, rtol=1e-6)
    np.testing.assert_array_equal(out[..., 1], kernel[..., 1])


def _textcnn_norms(max_norm: float, steps_count: int = 6) -> list[float]:
    """Largest fc column norm after each Adadelta step of a TextCNN on random sentences."""
    config = build_config(
        TrainConfig(model="textcnn", num_classes=2), {"max_norm": max_norm}, "kim2014"
    ).replace(batch_size=8, lr=50.0)  # a large step, so that the columns do outgrow 3
    model = cnnjax.create_model("textcnn", num_classes=2, vocab_size=50, embed_dim=16)
    steps = Steps(model, make_optimizer(config, 10), config, make_mesh())
    rng = np.random.default_rng(0)
    state = steps.init(np.ones((8, 12), np.int32))
    largest = []
    for _ in range(steps_count):
        batch = {
            "image": rng.integers(1, 50, (8, 12)).astype(np.int32),
            "label": rng.integers(0, 2, 8).astype(np.int32),
        }
        state, _ = steps.train(state, steps.to_global(batch))
        kernel = np.asarray(state.params["fc"]["kernel"])  # (features, classes)
        largest.append(float(np.linalg.norm(kernel, axis=0).max()))
    return largest


def test_kim_max_norm_holds_after_every_step():
    assert max(_textcnn_norms(max_norm=0.0)) > 3.0  # unconstrained, the columns outgrow 3
    assert max(_textcnn_norms(max_norm=3.0)) <= 3.0 * (1 + 1e-6)


def test_zf_filter_rms_holds_after_every_step():
    config = build_config(TrainConfig(model="lenet5"), {}, "zfnet_paper").replace(
        batch_size=8, lr=5.0
    )
    assert config.filter_rms == 0.1
    model = cnnjax.create_model("lenet5")
    steps = Steps(model, make_optimizer(config, 10), config, make_mesh())
    rng = np.random.default_rng(0)
    state = steps.init(np.zeros((8, 32, 32, 1), np.float32))
    for _ in range(3):
        batch = {
            "image": rng.normal(size=(8, 32, 32, 1)).astype(np.float32),
            "label": rng.integers(0, 10, 8).astype(np.int32),
        }
        state, _ = steps.train(state, steps.to_global(batch))
        for name in ("c1", "c3"):
            kernel = np.asarray(state.params[name]["kernel"])
            rms = np.sqrt(np.mean(kernel.reshape(-1, kernel.shape[-1]) ** 2, axis=0))
            assert rms.max() <= 0.1 * (1 + 1e-5), name


def test_the_recipes_say_what_the_papers_did():
    kim = build_config(TrainConfig(model="textcnn"), {}, "kim2014")
    assert (kim.optimizer, kim.batch_size, kim.max_norm, kim.lr, kim.weight_decay) == (
        "adadelta",
        50,
        3.0,
        1.0,
        0.0,
    )
    zf = build_config(TrainConfig(model="zfnet"), {}, "zfnet_paper")
    assert (zf.filter_rms, zf.batch_size, zf.lr, zf.momentum, zf.epochs) == (
        0.1,
        128,
        0.01,
        0.9,
        70,
    )


@pytest.mark.parametrize("field", ["max_norm", "filter_rms"])
def test_constraints_are_validated(field):
    from cnnjax.train.validation import ConfigError, validate_config

    with pytest.raises(ConfigError, match=f"--{field}=-1"):
        validate_config(TrainConfig(**{field: -1.0}), processes=1)
