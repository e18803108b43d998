"""make_loader: batches, determinism, resumable state, sharding, eval padding, corrupt images."""

from __future__ import annotations

import io
import json
from collections import Counter

import grain
import numpy as np
import pytest
from PIL import Image

import cnnjax.data as data
from cnnjax.data import augment
from cnnjax.data.catalog import IMAGENET_MEAN, IMAGENET_STD
from cnnjax.data.sources import FakeSource, InMemorySource, PaddedShard
from cnnjax.data.testing import write_tiny_imagenet

CORRUPT_TRAIN = "n01443537_2.JPEG"
CORRUPT_VAL = "ILSVRC2012_val_00000004.JPEG"
IMAGENET_LOW = (0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD)  # bounds of normalised pixels
IMAGENET_HIGH = (1 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """Tiny ImageNet (12 train, 6 validation JPEGs, one corrupt in each) prepared with tfds."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tiny_imagenet")
    files = write_tiny_imagenet(
        root / "manual",
        train_per_class=4,
        num_validation=6,
        corrupt=(CORRUPT_TRAIN, CORRUPT_VAL),
    )
    data.prepare("imagenet2012", data_dir=root / "data", manual_dir=root / "manual")
    synsets = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    val_synsets = (
        tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
    )
    labels = {name: synsets.index(name.split("_")[0]) for name in files.train}
    for name in files.validation:
        labels[name] = synsets.index(val_synsets[int(name[-13:-5]) - 1])
    return {"files": files, "data_dir": root / "data", "labels": labels}


def _imagenet_loader(imagenet, split="train", **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("train", split == "train")
    kwargs.setdefault("image_size", 24)
    kwargs.setdefault("read_threads", 2)
    if not kwargs["train"]:
        kwargs.setdefault("resize_size", 28)
    return data.make_loader("imagenet2012", split, data_dir=imagenet["data_dir"], **kwargs)


def _assert_batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _take(loader, n: int) -> list[dict]:
    return [next(loader) for _ in range(n)]


# ----------------------------------------------------------------------------- ImageNet


def test_imagenet_train_batches(imagenet):
    loader = _imagenet_loader(imagenet)
    train_labels = {imagenet["labels"][n] for n in imagenet["files"].train}
    for batch in _take(loader, 5):  # more than an epoch (11 decodable images)
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (4, 24, 24, 3) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
        assert set(batch["label"].tolist()) <= train_labels
        assert IMAGENET_LOW - 1e-4 <= batch["image"].min() <= batch["image"].max()
        assert batch["image"].max() <= IMAGENET_HIGH + 1e-4
        assert np.all(batch["image"].std(axis=(1, 2, 3)) > 0)  # no constant (black) images


def test_imagenet_eval_scores_every_image_once_and_masks_the_corrupt_one(imagenet):
    files, labels = imagenet["files"], imagenet["labels"]
    expected = {}
    for name, jpeg in files.validation.items():
        if name != CORRUPT_VAL:
            view = augment.imagenet_eval(jpeg, image_size=24, resize_size=28)
            image = augment.normalize(view, IMAGENET_MEAN, IMAGENET_STD)
            expected[name] = (image, labels[name])
    scored, skipped, batches_per_process = [], 0, set()
    for index in range(2):
        loader = _imagenet_loader(imagenet, "validation", batch_size=2, shard=(index, 2))
        batches = list(loader)
        batches_per_process.add(len(batches))
        assert len(batches) == loader.num_batches == 2  # ceil(ceil(6 / 2) / 2)
        for batch in batches:
            assert batch["mask"].dtype == np.bool_ and batch["mask"].shape == (2,)
            for image, label, mask in zip(
                batch["image"], batch["label"], batch["mask"], strict=True
            ):
                if mask:
                    scored.append((image, int(label)))
        skipped += loader.num_skipped
    assert batches_per_process == {2}
    assert skipped == 1
    assert len(scored) == len(expected) == 5
    unmatched = dict(expected)
    for image, label in scored:
        match = [
            n
            for n, (e, lab) in unmatched.items()
            if lab == label and np.allclose(e, image, atol=1e-5)
        ]
        assert len(match) == 1, "every scored image is exactly one validation file"
        del unmatched[match[0]]
    assert not unmatched


def test_imagenet_ten_crop_and_bfloat16(imagenet):
    ten = next(_imagenet_loader(imagenet, "validation", batch_size=3, ten_crop=True))
    assert ten["image"].shape == (3, 10, 24, 24, 3)
    np.testing.assert_array_equal(ten["image"][:, 5:], ten["image"][:, :5, :, ::-1])
    single = next(_imagenet_loader(imagenet, "validation", batch_size=3))
    np.testing.assert_array_equal(single["image"], ten["image"][:, 4])  # the centre crop
    half = next(_imagenet_loader(imagenet, "validation", batch_size=3, dtype="bfloat16"))
    assert half["image"].dtype.name == "bfloat16"
    np.testing.assert_allclose(half["image"].astype(np.float32), single["image"], atol=0.02)


def test_corrupt_training_image_is_skipped_and_counted(imagenet):
    loader = _imagenet_loader(imagenet, batch_size=1, num_epochs=1)
    batches = list(loader)
    assert loader.num_skipped == 1
    train = imagenet["files"].train
    expected = Counter(imagenet["labels"][n] for n in train if n != CORRUPT_TRAIN)
    assert Counter(int(b["label"][0]) for b in batches) == expected
    assert all(b["image"].std() > 0 for b in batches)


def test_training_order_is_a_function_of_the_seed(imagenet):
    first = _take(_imagenet_loader(imagenet, seed=3), 4)
    again = _take(_imagenet_loader(imagenet, seed=3, read_threads=5), 4)
    for a, b in zip(first, again, strict=True):
        _assert_batches_equal(a, b)
    other = _take(_imagenet_loader(imagenet, seed=4), 4)
    assert any(
        not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True)
    )


def test_state_round_trip_at_every_step(imagenet):
    """Resuming from the state before batch k yields batch k, also across the corrupt image.

    With batch 5 and one undecodable image per 12, training batches straddle grain batches,
    so the state must carry the leftover rows.
    """
    reference = _imagenet_loader(imagenet, batch_size=5, seed=1)
    states, batches, skipped = [], [], []
    for _ in range(7):
        states.append(json.loads(json.dumps(reference.get_state())))  # as orbax stores it
        batches.append(next(reference))
        skipped.append(reference.num_skipped)
    assert skipped[-1] == 3  # 35 examples read: three passes over the corrupt one
    assert any(s["leftover"] for s in states)
    for state, batch, count in zip(states, batches, skipped, strict=True):
        resumed = _imagenet_loader(imagenet, batch_size=5, seed=1)
        resumed.set_state(state)
        _assert_batches_equal(next(resumed), batch)
        assert resumed.num_skipped == count


def test_state_round_trip_through_orbax(imagenet, tmp_path):
    import orbax.checkpoint as ocp

    loader = _imagenet_loader(imagenet, batch_size=5, seed=2)
    _take(loader, 3)
    skipped_at_save = loader.num_skipped
    assert loader.get_state()["leftover"] > 0  # 15 read, one skipped: a batch is split
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(loader)))
        manager.wait_until_finished()
        expected = _take(loader, 2)
        fresh = _imagenet_loader(imagenet, batch_size=5, seed=2)
        manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)),
        )
    assert fresh.num_skipped == skipped_at_save
    for got, want in zip(_take(fresh, 2), expected, strict=True):
        _assert_batches_equal(got, want)
    assert fresh.num_skipped == loader.num_skipped


def test_missing_dataset_error_gives_the_prepare_command(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.make_loader("cifar10", "train", batch_size=8, train=True, data_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f"python -m cnnjax.data.prepare --dataset=cifar10 --data_dir={tmp_path}" in message
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.make_loader("imagenet2012", "train", batch_size=8, train=True, data_dir=tmp_path)
    assert "--manual_dir=" in str(err.value) and "ILSVRC2012_img_val.tar" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_split_lists_the_available_ones(imagenet):
    with pytest.raises(data.UnknownSplitError, match="available: train, validation"):
        _imagenet_loader(imagenet, "test")


def test_epoch_lengths(imagenet):
    d = imagenet["data_dir"]
    assert data.num_examples("imagenet2012", "train", d) == 12
    assert data.num_examples("imagenet2012", "train[:50%]", d) == 6
    assert (
        data.steps_per_epoch(
            "imagenet2012", "train", batch_size=5, train=True, data_dir=d, process_count=1
        )
        == 2
    )  # 12 // 5
    assert (
        data.steps_per_epoch(
            "imagenet2012", "validation", batch_size=1, train=False, data_dir=d, process_count=4
        )
        == 2
    )  # ceil(6 / 4) / 1


# ----------------------------------------------------------------------------- fake data


def _fake_index(spec: data.FakeSpec, split: str, size: int) -> dict[bytes, int]:
    """Pixel bytes -> index, from the source itself (train and eval views are un-augmented)."""
    source = FakeSource(split, image_size=size, spec=spec)
    return {source[i]["image"].tobytes(): i for i in range(len(source))}


def _pixels(image: np.ndarray) -> bytes:
    """Undo the fake normalisation (mean 0.5, std 0.25) to the uint8 source pixels."""
    return np.round((image * 0.25 + 0.5) * 255).astype(np.uint8).tobytes()


def test_fake_examples_are_deterministic_and_learnable():
    import jax
    import jax.numpy as jnp

    spec = data.FakeSpec(num_classes=4, channels=3, train_examples=512)
    a, b = (
        FakeSource("train", image_size=8, spec=spec),
        FakeSource("train", image_size=8, spec=spec),
    )
    np.testing.assert_array_equal(a[17]["image"], b[17]["image"])
    assert a[17]["label"] == b[17]["label"]
    test = FakeSource("test", image_size=8, spec=spec)
    assert not np.array_equal(a[0]["image"], test[0]["image"])
    assert set(Counter(a[i]["label"] for i in range(512))) == set(range(4))

    # A linear softmax classifier trained for 30 steps more than halves its loss.
    loader = data.make_loader("fake", "train", batch_size=32, train=True, image_size=8, fake=spec)

    def loss_fn(w, x, y):
        logits = x.reshape(len(x), -1) @ w
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    grad = jax.jit(jax.value_and_grad(loss_fn))
    w = jnp.zeros((8 * 8 * 3, 4))
    losses = []
    for batch in _take(loader, 30):
        loss, g = grad(w, batch["image"], batch["label"])
        losses.append(float(loss))
        w = w - 0.05 * g
    assert losses[0] == pytest.approx(np.log(4), rel=1e-5)
    assert np.mean(losses[-5:]) < 0.5 * losses[0]


def test_train_shards_are_disjoint_and_cover_the_split_every_epoch():
    spec = data.FakeSpec(train_examples=37, num_classes=5)
    index = _fake_index(spec, "train", 6)
    streams = []
    for shard in range(2):
        loader = data.make_loader(
            "fake",
            "train",
            batch_size=1,
            train=True,
            image_size=6,
            fake=spec,
            num_epochs=2,
            shard=(shard, 2),
            seed=5,
        )
        streams.append([index[_pixels(b["image"][0])] for b in loader])
    assert [len(s) for s in streams] == [37, 37]  # 74 positions, alternately to each process
    merged = [x for pair in zip(*streams, strict=True) for x in pair]  # the global stream
    for epoch in (merged[:37], merged[37:]):
        assert sorted(epoch) == list(range(37))
    assert merged[:37] != merged[37:]  # re-shuffled each epoch
    assert not set(streams[0][:18]) & set(streams[1][:18])


def _fake_train_loader(shard, batch_size, workers=0):
    spec = data.FakeSpec(train_examples=37, num_classes=5)
    return data.make_loader(
        "fake",
        "train",
        batch_size=batch_size,
        train=True,
        image_size=6,
        fake=spec,
        shard=shard,
        workers=workers,
        seed=5,
    )


def test_global_batches_and_their_augmentation_are_the_same_for_any_process_count():
    one = _fake_train_loader((0, 1), batch_size=4)
    two = [_fake_train_loader((k, 2), batch_size=2) for k in range(2)]
    for _ in range(12):  # beyond the first epoch (9 batches of 4 out of 37)
        whole = next(one)
        parts = [next(loader) for loader in two]
        for key in ("image", "label"):
            # Process k holds the k-th half of each global batch: the rows in the same order.
            np.testing.assert_array_equal(
                np.concatenate([parts[0][key], parts[1][key]]), whole[key]
            )


def _state(position: int, skipped: int = 0, leftover: int = 0) -> dict:
    return {"pipeline": {"next_index": position}, "leftover": leftover, "num_skipped": skipped}


@pytest.mark.parametrize("workers", [0, 2])
def test_carried_over_state_continues_the_global_stream(workers):
    straight = _fake_train_loader((0, 1), batch_size=4)
    expected = [next(straight)["image"] for _ in range(12)]
    # Two processes with a global batch of 4 read 5 batches each: 20 stream positions.
    state, uncertain = data.carry_over_state(
        [_state(5), _state(5)], saved_batch_size=4, batch_size=4, shard=(0, 1), workers=workers
    )
    assert uncertain == 0
    resumed = _fake_train_loader((0, 1), batch_size=4, workers=workers)
    resumed.set_state(state)
    for step in range(5, 12):
        np.testing.assert_array_equal(next(resumed)["image"], expected[step])


def test_carried_over_state_when_the_worker_count_changes():
    loader = _fake_train_loader((0, 1), batch_size=4, workers=2)
    for _ in range(7):
        next(loader)
    saved = loader.get_state()
    state, _ = data.carry_over_state(
        [saved], saved_batch_size=4, batch_size=4, shard=(0, 1), workers=0
    )
    assert state["pipeline"] == {"next_index": 7}
    state, _ = data.carry_over_state(
        [state], saved_batch_size=4, batch_size=4, shard=(0, 1), workers=2
    )
    assert state["pipeline"] == saved["pipeline"]


def test_carried_over_position_in_examples_and_what_is_uncertain():
    # 3 processes at batches 10, 10, 9 of a global batch of 6 -> 60 examples; batch 8 -> 7 r 4.
    saved = [_state(10, skipped=1), _state(10, leftover=2), _state(9)]
    state, uncertain = data.carry_over_state(
        saved, saved_batch_size=6, batch_size=8, shard=(1, 2), workers=0
    )
    assert state == {"pipeline": {"next_index": 7}, "leftover": 0, "num_skipped": 0}
    assert uncertain == 1 + 2 + 6 + 4  # skipped + leftover + the lagging process + remainder


def test_eval_padding_gives_each_process_the_same_steps_and_every_example_once():
    spec = data.FakeSpec(eval_examples=23, num_classes=3)
    index = _fake_index(spec, "test", 5)
    source = FakeSource("test", image_size=5, spec=spec)
    seen, lengths = [], set()
    for shard in range(3):
        loader = data.make_loader(
            "fake", "test", batch_size=4, train=False, image_size=5, fake=spec, shard=(shard, 3)
        )
        batches = list(loader)
        lengths.add(len(batches))
        assert sum(int(b["mask"].sum()) for b in batches) == len(range(shard, 23, 3))
        for batch in batches:
            for image, label, mask in zip(
                batch["image"], batch["label"], batch["mask"], strict=True
            ):
                if mask:
                    i = index[_pixels(image)]
                    assert label == source[i]["label"]
                    seen.append(i)
                else:
                    assert not image.any()
    assert lengths == {2}  # ceil(ceil(23 / 3) / 4)
    assert sorted(seen) == list(range(23))
    assert (
        data.steps_per_epoch("fake", "test", batch_size=4, train=False, process_count=3, fake=spec)
        == 2
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_a_rewound_eval_loader_repeats_its_pass(workers):
    # The runner builds its eval loader once and rewinds it before every evaluation.
    spec = data.FakeSpec(eval_examples=11, num_classes=3)
    loader = data.make_loader(
        "fake", "test", batch_size=4, train=False, image_size=5, fake=spec, workers=workers
    )
    try:
        first = list(loader)
        loader.rewind()
        second = list(loader)
    finally:
        loader.close()
    assert len(first) == 3 and sum(int(b["mask"].sum()) for b in first) == 11
    assert len(second) == len(first)
    for a, b in zip(first, second, strict=True):
        _assert_batches_equal(a, b)


def test_workers_give_the_same_batches_and_resume(tmp_path):
    spec = data.FakeSpec(train_examples=50)
    kwargs = dict(batch_size=4, train=True, image_size=8, fake=spec, seed=9)
    in_process = _take(data.make_loader("fake", "train", **kwargs), 4)
    loader = data.make_loader("fake", "train", workers=2, **kwargs)
    try:
        got = _take(loader, 2)
        state = loader.get_state()
        got += _take(loader, 2)
    finally:
        loader.close()
    for a, b in zip(got, in_process, strict=True):
        _assert_batches_equal(a, b)
    resumed = data.make_loader("fake", "train", workers=2, **kwargs)
    try:
        resumed.set_state(state)
        _assert_batches_equal(next(resumed), in_process[2])
    finally:
        resumed.close()


def test_worker_processes_send_raw_pixels_and_match_in_process_imagenet(imagenet):
    # With workers, batches cross processes as uint8 (float32 with lighting) and are normalised
    # after the hand-over: the scored values must equal the in-process ones exactly.
    for kwargs, batches in (
        (dict(split="train", lighting_sigma=0.1), 3),
        (dict(split="validation"), 2),
    ):
        in_process = _take(_imagenet_loader(imagenet, **kwargs), batches)
        loader = _imagenet_loader(imagenet, workers=2, **kwargs)
        try:
            got = _take(loader, batches)  # the whole (padded) validation split
            assert loader.num_skipped >= 1  # the corrupt image, counted across processes too
        finally:
            loader.close()
        for a, b in zip(got, in_process, strict=True):
            keep = a.get("mask", np.ones(len(a["label"]), bool))
            np.testing.assert_array_equal(a["label"], b["label"])
            np.testing.assert_array_equal(a["image"][keep], b["image"][keep])
            assert a["image"].dtype == b["image"].dtype == np.float32


def test_raw_pixel_batches_normalised_on_the_device_equal_the_host_normalised_ones(imagenet):
    # What training consumes: uint8 (+ the lighting offset), in-process or from workers, and
    # normalised by the steps' device_inputs; it must equal make_loader's own float batches.
    import jax

    from cnnjax.train.step import device_inputs

    normalise = jax.jit(lambda b: device_inputs(b, (IMAGENET_MEAN, IMAGENET_STD), np.float32))
    for kwargs, batches in (
        (dict(split="train", lighting_sigma=0.1), 3),
        (dict(split="train", workers=2, lighting_sigma=0.1), 3),
        (dict(split="validation", ten_crop=True), 2),
    ):
        floats = _take(_imagenet_loader(imagenet, **{**kwargs, "workers": 0}), batches)
        loader = _imagenet_loader(imagenet, normalize=False, **kwargs)
        try:
            raw = _take(loader, batches)
        finally:
            loader.close()
        for a, b in zip(raw, floats, strict=True):
            assert a["image"].dtype == np.uint8
            assert (data.preprocess.LIGHTING in a) == ("lighting_sigma" in kwargs)
            keep = a.get("mask", np.ones(len(a["label"]), bool))
            got = np.asarray(normalise(a)["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
            np.testing.assert_allclose(got[keep], b["image"][keep], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- CIFAR / MNIST


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def cifar_records(monkeypatch):
    """Eight PNG records shaped like tfds cifar10's, served in place of a prepared dataset."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    records = [
        {"image": _png(im), "label": i % 10, "id": f"train_{i}"} for i, im in enumerate(images)
    ]
    monkeypatch.setattr(data.loader, "open_tfds_source", lambda info, split, data_dir: records)
    return images


def test_cifar_train_view_is_a_padded_shifted_maybe_flipped_copy(cifar_records):
    mean, std = data.dataset_info("cifar10").mean, data.dataset_info("cifar10").std
    loader = data.make_loader("cifar10", "train", batch_size=8, train=True, num_epochs=1)
    batch = next(loader)
    assert batch["image"].shape == (8, 32, 32, 3)
    pixels = np.round((batch["image"] * np.array(std) + np.array(mean)) * 255)
    for out, label in zip(pixels, batch["label"], strict=True):
        padded = np.pad(cifar_records[label], ((4, 4), (4, 4), (0, 0))).astype(np.float64)
        views = [
            view
            for dy in range(9)
            for dx in range(9)
            for view in (padded[dy : dy + 32, dx : dx + 32],)
            for view in (view, view[:, ::-1])
        ]
        assert any(np.array_equal(out, v) for v in views)


def test_cifar_eval_is_the_normalised_image(cifar_records):
    info = data.dataset_info("cifar10")
    batch = next(data.make_loader("cifar10", "test", batch_size=8, train=False))
    expected = (cifar_records / 255.0 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(batch["image"], expected, atol=1e-5)
    np.testing.assert_array_equal(batch["label"], np.arange(8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(shard=(2, 2)), "shard"),
        (dict(dtype="int8"), "dtype"),
        (dict(image_size=20), "image_size must be >= 28"),
        (dict(ten_crop=True, train=False), "ImageNet-style"),
        (dict(workers=-1), "workers"),
        (dict(num_epochs=2, train=False), "single pass"),
        (dict(fake=data.FakeSpec()), "only applies"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, match, tmp_path):
    args = dict(batch_size=2, train=True, data_dir=tmp_path) | kwargs
    with pytest.raises(data.LoaderConfigError, match=match) as err:
        data.make_loader("mnist", "train", **args)
    assert "\n" not in str(err.value)


def test_in_memory_source_reads_in_chunks_and_pickles_without_its_records():
    import pickle

    class Counting(list):
        batched_reads = 0

        def __getitems__(self, keys):
            Counting.batched_reads += 1
            return [self[k] for k in keys]

    source = InMemorySource(Counting(range(10)), chunk=4)
    assert len(source) == 10 and source[7] == 7 and source.__getitems__([9, 0]) == [9, 0]
    assert Counting.batched_reads == 3  # ceil(10 / 4), once
    source[3]
    assert Counting.batched_reads == 3
    plain = InMemorySource(list(range(10)))
    assert plain[2] == 2  # loaded
    clone = pickle.loads(pickle.dumps(plain))
    assert clone._records is None and clone[5] == 5


@pytest.mark.parametrize("total, count, batch", [(23, 3, 4), (10, 4, 3), (5, 8, 2), (0, 2, 4)])
def test_padded_shard_arithmetic(total, count, batch):
    source = list(range(100, 100 + total))
    shards = [PaddedShard(source, k, count, batch) for k in range(count)]
    per_process = -(-total // count)  # ceil, by hand: the largest shard
    assert {len(s) for s in shards} == {-(-per_process // batch) * batch}
    real = []
    for shard in shards:
        items = [shard[i] for i in range(len(shard))]
        assert shard.__getitems__(list(range(len(shard)))[::-1]) == items[::-1]
        kept = [it["record"] for it in items if it["valid"]]
        assert all(it["record"] is None for it in items[len(kept) :])  # padding at the end
        real += kept
    assert sorted(real) == source
