"""Hand batches from grain worker processes to the training process through reused shared memory.

grain's `mp_prefetch` puts every batch in a fresh shared-memory segment. Touching a fresh page
is slow on some machines (on the benchmark VM, 0.13-0.18 ms per 150 KB image, a quarter of a
training view; docs/benchmarks.md), so here each worker writes its batches into a few fixed
slots of one segment that lives as long as the worker (`SlotWriter`, the worker pipeline's
last step), grain carries only a small `SlotHandle`, and the training process copies the
arrays out and frees the slot (`SlotReader`, the first step after `mp_prefetch`).

Nothing can block: when every slot is taken the batch goes through grain's own path, and a
handle that grain drops without reading it (e.g. elements discarded by `set_state`) frees its
slot when it is garbage-collected. Batches are the same either way (tests/test_batch_slots.py).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from multiprocessing import shared_memory
from typing import Any

import numpy as np

# Per worker: one batch in grain's queue, one in its interleave buffer, one being written and
# one being copied out in the training process.
DEFAULT_SLOTS = 4
_ALIGN = 64  # array offsets are cache-line aligned


class SlotHandle:
    """Where a batch lies in a worker's segment (of `slots` slots): slot index and
    (key, shape, dtype, offset) of each array."""

    def __init__(
        self,
        segment: str,
        slots: int,
        slot: int,
        arrays: tuple[tuple[str | None, tuple[int, ...], str, int], ...],  # None: a bare array
        sent: list[bool] | None = None,
    ):
        self.segment, self.slots, self.slot, self.arrays = segment, slots, slot, arrays
        self._sent = sent if sent is not None else [True]
        self.release = lambda: None  # set in the training process

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        self._sent[0] = True  # pickled for the training process, which now frees the slot
        return _received, (self.segment, self.slots, self.slot, self.arrays)


def _received(segment: str, slots: int, slot: int, arrays: tuple[Any, ...]) -> SlotHandle:
    """Unpickled in the training process: the slot is freed on reading or garbage collection."""
    handle = SlotHandle(segment, slots, slot, arrays)
    handle.release = weakref.finalize(handle, _free_slot, segment, slot)
    return handle


def _slot_flags(shm: shared_memory.SharedMemory, slots: int) -> np.ndarray:
    """The segment's header: one int32 per slot, 1 while a batch is in it."""
    return np.ndarray((slots,), np.int32, shm.buf)


def _free_slot(segment: str, slot: int) -> None:
    flags = _ATTACHED.get(segment)
    if flags is not None:
        flags[slot] = 0


# Training-process side: slot flags of the workers' segments that a live SlotReader attached.
_ATTACHED: dict[str, np.ndarray] = {}


def _offsets(batch: dict[str | None, np.ndarray]) -> tuple[list[int], int]:
    offsets, size = [], 0
    for value in batch.values():
        offsets.append(size)
        size += -(-value.nbytes // _ALIGN) * _ALIGN
    return offsets, size


class SlotWriter:
    """Worker side: copy a batch (an array or a dict of arrays) into a free slot; its handle."""

    def __init__(self, slots: int = DEFAULT_SLOTS):
        self.slots = slots
        self._shm: shared_memory.SharedMemory | None = None
        self._header = -(-4 * slots // _ALIGN) * _ALIGN  # the slot flags, then the slots
        self._slot_bytes = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"slots": self.slots}  # each worker process makes its own segment

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["slots"])

    def __call__(self, batch: Any) -> Any:
        arrays = {None: batch} if isinstance(batch, np.ndarray) else batch
        if not isinstance(arrays, dict) or not all(
            isinstance(v, np.ndarray) and not v.dtype.hasobject for v in arrays.values()
        ):
            return batch
        offsets, size = _offsets(arrays)
        with self._lock:
            if self._shm is None:  # sized by the first batch, which is a full one
                self._slot_bytes = size
                self._shm = shared_memory.SharedMemory(
                    create=True, size=self._header + self.slots * size
                )
            flags = _slot_flags(self._shm, self.slots)
            free = np.flatnonzero(flags == 0)
            if size > self._slot_bytes or free.size == 0:
                return batch  # grain's own hand-off
            slot = int(free[0])
            flags[slot] = 1
        base = self._header + slot * self._slot_bytes
        placed = []
        for (key, value), offset in zip(arrays.items(), offsets, strict=True):
            target = np.ndarray(value.shape, value.dtype, self._shm.buf, base + offset)
            target[...] = value
            placed.append((key, value.shape, value.dtype.str, base + offset))
        sent = [False]
        handle = SlotHandle(self._shm.name, self.slots, slot, tuple(placed), sent)
        # Dropped in the worker without being sent (its pipeline was reset): free the slot.
        weakref.finalize(handle, _free_unsent, weakref.ref(self), slot, sent)
        return handle


def _free_unsent(writer_ref: weakref.ref, slot: int, sent: list[bool]) -> None:
    writer = writer_ref()
    if not sent[0] and writer is not None and writer._shm is not None:
        _slot_flags(writer._shm, writer.slots)[slot] = 0


class SlotReader:
    """Training-process side: a `SlotHandle` back into its batch (a copy); else pass through."""

    def __init__(self) -> None:
        self._segments: dict[str, shared_memory.SharedMemory] = {}
        weakref.finalize(self, _detach, self._segments)

    def __call__(self, element: Any) -> Any:
        if not isinstance(element, SlotHandle):
            return element
        shm = self._segments.get(element.segment)
        if shm is None:
            shm = shared_memory.SharedMemory(name=element.segment)
            shm.unlink()  # the mapping stays; the name is not needed again
            self._segments[element.segment] = shm
            _ATTACHED[element.segment] = _slot_flags(shm, element.slots)
        batch = {
            key: np.ndarray(shape, np.dtype(dtype), shm.buf, offset).copy()
            for key, shape, dtype, offset in element.arrays
        }
        element.release()
        return batch.pop(None) if None in batch else batch


def _detach(segments: dict[str, shared_memory.SharedMemory]) -> None:
    """Unmap a reader's segments once the reader (the loader's pipeline) is gone."""
    for name, shm in segments.items():
        _ATTACHED.pop(name, None)
        with contextlib.suppress(BufferError):  # a view is still alive; it keeps the mapping
            shm.close()
