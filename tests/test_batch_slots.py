"""Batch hand-off through reused shared-memory slots: same arrays, slots freed, never blocking."""

from __future__ import annotations

import gc
import pickle

import numpy as np

from cnnjax import data
from cnnjax.data import loader
from cnnjax.data.batch_slots import SlotHandle, SlotReader, SlotWriter


def _batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, 4).astype(np.int32),
        "mask": rng.random(4) < 0.5,
    }


def _send(handle: SlotHandle) -> SlotHandle:
    """What grain does between the processes: pickle in the worker, unpickle in the trainer."""
    return pickle.loads(pickle.dumps(handle))


def _flags(writer: SlotWriter) -> list[int]:
    return np.ndarray((writer.slots,), np.int32, writer._shm.buf).tolist()


def test_round_trip_gives_equal_copies_and_frees_the_slot():
    writer, reader = SlotWriter(slots=2), SlotReader()
    for seed in range(5):  # more batches than slots: each slot is reused
        batch = _batch(seed)
        handle = writer(batch)
        assert isinstance(handle, SlotHandle) and _flags(writer).count(1) == 1
        got = reader(_send(handle))
        assert set(got) == set(batch)
        for key, value in batch.items():
            assert got[key].dtype == value.dtype
            np.testing.assert_array_equal(got[key], value)
        assert _flags(writer) == [0, 0]
    image = _batch(9)["image"]  # a bare array comes back as a bare array
    np.testing.assert_array_equal(reader(_send(writer(image))), image)


def test_full_slots_fall_back_to_the_batch_itself():
    writer, reader = SlotWriter(slots=2), SlotReader()
    held = [_send(writer(_batch(0))), _send(writer(_batch(1)))]
    third = _batch(2)
    assert writer(third) is third  # no free slot: grain's own path, no waiting
    assert reader(third) is third  # and the reader passes it through
    big = {"image": np.zeros((64, 64, 64, 3), np.uint8)}
    reader(held.pop())  # a slot is free again, but this batch is larger than a slot
    assert writer(big) is big
    assert writer([1, 2]) == [1, 2]  # not arrays: passed through


def test_handle_dropped_unread_frees_its_slot():
    writer, reader = SlotWriter(slots=2), SlotReader()
    reader(_send(writer(_batch(0))))  # attaches the segment
    received = _send(writer(_batch(1)))
    assert _flags(writer) == [1, 0]
    del received  # e.g. grain discarding prefetched elements on set_state
    gc.collect()
    assert _flags(writer) == [0, 0]
    unsent = writer(_batch(2))  # made in the worker but never sent (its pipeline was reset)
    assert _flags(writer) == [1, 0]
    del unsent
    gc.collect()
    assert _flags(writer) == [0, 0]


def test_writer_pickles_without_its_segment():
    writer = SlotWriter(slots=3)
    writer(_batch(0))
    copy = pickle.loads(pickle.dumps(writer))  # what each worker process receives
    assert copy.slots == 3 and copy._shm is None


def test_loader_workers_hand_over_through_slots(monkeypatch):
    handles = []

    class CountingReader(SlotReader):
        def __call__(self, element):
            handles.append(isinstance(element, SlotHandle))
            return super().__call__(element)

    monkeypatch.setattr(loader, "SlotReader", CountingReader)
    spec = data.FakeSpec(train_examples=40)
    kwargs = dict(batch_size=4, train=True, image_size=8, fake=spec, seed=3)
    in_process = data.make_loader("fake", "train", **kwargs)
    expected = [next(in_process) for _ in range(3)]
    workers = data.make_loader("fake", "train", workers=2, **kwargs)
    try:
        got = [next(workers) for _ in range(3)]
    finally:
        workers.close()
    assert handles and any(handles)
    for a, b in zip(got, expected, strict=True):
        for key in b:
            np.testing.assert_array_equal(a[key], b[key])
