"""uint8 to the device: the steps normalise as the host does; device prefetch resumes exactly."""

from __future__ import annotations

import jax
import ml_dtypes
import numpy as np
import pytest

import cnnjax
import cnnjax.data as data
from cnnjax.data import augment
from cnnjax.data.preprocess import LIGHTING
from cnnjax.train.config import TrainConfig
from cnnjax.train.optim import make_optimizer
from cnnjax.train.step import Steps, device_inputs, make_mesh

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
@pytest.mark.parametrize("shape", [(4, 5, 5, 3), (2, 10, 5, 5, 3)])  # one view; 10-crop
def test_device_normalisation_equals_the_host_normalisation(dtype, shape):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    got = jax.jit(lambda b: device_inputs(b, (MEAN, STD), dtype))({"image": pixels})["image"]
    want = augment.normalize(pixels, MEAN, STD, dtype)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(
        np.asarray(got, np.float32), want.astype(np.float32), rtol=1e-6, atol=1e-6
    )


def test_device_lighting_equals_the_host_float_path():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    offset = rng.normal(0, 10, size=(3, 3)).astype(np.float32)
    batch = {"image": pixels, LIGHTING: offset, "label": np.zeros(3, np.int32)}
    got = jax.jit(lambda b: device_inputs(b, (MEAN, STD), np.float32))(batch)
    want = augment.normalize(pixels.astype(np.float32) + offset[:, None, None, :], MEAN, STD)
    assert set(got) == {"image", "label"}
    np.testing.assert_allclose(np.asarray(got["image"]), want, rtol=1e-6, atol=1e-6)


def test_no_normalization_passes_token_ids_through():
    ids = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert device_inputs({"image": ids}, None, np.float32)["image"] is ids


def _fake_loader(normalize: bool, **kwargs):
    return data.make_loader(
        "fake",
        "train",
        batch_size=8,
        train=True,
        image_size=28,
        fake=data.FakeSpec(train_examples=64, num_classes=10, channels=1),
        seed=3,
        normalize=normalize,
        **kwargs,
    )


def test_train_steps_on_uint8_follow_the_host_normalised_trajectory():
    config = TrainConfig(lr=0.05, momentum=0.9, batch_size=8)
    info = data.dataset_info("fake")
    model = cnnjax.create_model("lenet5", num_classes=10)
    host = Steps(model, make_optimizer(config, 100), config, make_mesh())
    device = Steps(
        model, make_optimizer(config, 100), config, make_mesh(), normalization=(info.mean, info.std)
    )
    floats, raw = _fake_loader(True), _fake_loader(False)
    first = next(raw)
    assert first["image"].dtype == np.uint8
    state_h = host.init(np.zeros((8, 28, 28, 1), np.float32))
    state_d = device.init(np.zeros((8, 28, 28, 1), np.float32))
    losses = []
    for i in range(4):
        state_h, mh = host.train(state_h, host.to_global(next(floats)))
        state_d, md = device.train(state_d, device.to_global(first if i == 0 else next(raw)))
        losses.append((float(mh["loss"]), float(md["loss"])))
    np.testing.assert_allclose(*zip(*losses, strict=True), rtol=1e-5)
    evals = [
        s.eval(st, s.to_global(next(_fake_loader(n)) | {"mask": np.ones(8, bool)}))
        for s, st, n in ((host, state_h, True), (device, state_d, False))
    ]
    np.testing.assert_allclose(float(evals[0]["loss_sum"]), float(evals[1]["loss_sum"]), rtol=1e-5)


def test_device_prefetch_gives_the_loader_batches_and_resumes_exactly():
    config = TrainConfig(batch_size=8)
    steps = Steps(cnnjax.create_model("lenet5"), make_optimizer(config, 10), config, make_mesh())
    plain = _fake_loader(False)
    expected = [next(plain) for _ in range(5)]
    batches = steps.prefetch(_fake_loader(False))
    try:
        for want in expected[:3]:
            got = next(batches)
            assert isinstance(got["image"], jax.Array)
            np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
        state = batches.get_state()  # after 3 batches, although more are in flight
    finally:
        batches.close()
    resumed = steps.prefetch(_fake_loader(False))
    resumed.set_state(state)
    try:
        for want in expected[3:]:
            np.testing.assert_array_equal(np.asarray(next(resumed)["label"]), want["label"])
    finally:
        resumed.close()
