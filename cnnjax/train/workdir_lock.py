"""One run per workdir: an exclusive lock file `<workdir>/.lock`, held for the life of the run.

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `<workdir>/.lock`, so the kernel drops it when
its process ends in any way (even `kill -9`); the file's JSON content {pid, host, started,
command} only serves the error message and the take-over warning. A file left behind by a dead
owner is taken over with one warning; release unlocks and removes it.

Where the filesystem does not support flock (ENOLCK, EOPNOTSUPP, ENOSYS), the lock is the file
itself, created with O_EXCL. A file left there is stale when its owner is on this host and its
pid is gone, or, for an owner on another host (or unreadable content), when its modification
time is older than `STALE_AFTER_S`: the holder touches it every `HEARTBEAT_S` from a daemon
thread. (Two processes that find the same stale file at the same instant may both take it.)

With several JAX processes only process 0 takes the lock; it publishes the outcome through the
job's key-value store and the other processes raise the same one-line error (`acquire_for_run`).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from absl import logging

LOCK_NAME = ".lock"
HEARTBEAT_S = 60.0  # fallback mode: the holder touches the file this often
STALE_AFTER_S = 600.0  # fallback mode: an untouched lock of another host is stale after this
BUSY_READ_WAIT_S = 1.0  # a holder writes its content just after locking: wait that long for it
DEFAULT_TIMEOUT_S = 300.0  # processes > 0 wait this long for process 0's outcome
_FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_MAX_COMMAND_CHARS = 300


class WorkdirLockError(ValueError):
    """The workdir could not be locked for this run (one line, shown without a traceback)."""


class WorkdirBusyError(WorkdirLockError):
    """Another run holds the workdir: one line naming its pid, host, start time and command."""


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, as written in the lock file."""

    pid: int
    host: str
    started: str  # ISO 8601 with the writer's UTC offset
    command: str

    @classmethod
    def current(cls) -> Owner:
        """This process, now."""
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.now().astimezone().isoformat(timespec="seconds"),
            command=_command_line(),
        )

    def to_json(self) -> str:
        """The lock file's content."""
        return json.dumps(
            {"pid": self.pid, "host": self.host, "started": self.started, "command": self.command}
        )

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner in a lock file's content; None when it is empty or garbled."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                started=str(data["started"]),
                command=str(data["command"]),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def started_local(self) -> str:
        """The start time in this machine's local time, like 2026-11-29 22:05:13."""
        try:
            stamp = datetime.fromisoformat(self.started)
        except ValueError:
            return self.started
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone()
        return stamp.strftime("%Y-%m-%d %H:%M:%S")


def _command_line() -> str:
    """This process's command line on one line, shortened for messages."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    command = " ".join(shlex.join(argv).split())
    if len(command) > _MAX_COMMAND_CHARS:
        command = command[: _MAX_COMMAND_CHARS - 3] + "..."
    return command


def busy_message(workdir: str, owner: Owner | None, lock_path: Path) -> str:
    """The one-line refusal for a workdir that another run holds."""
    if owner is None:
        who = f"another process (its lock {lock_path} is held but its content is unreadable)"
    else:
        who = (
            f"process {owner.pid} on host {owner.host} since {owner.started_local()} "
            f"(started by: {owner.command})"
        )
    return f"workdir {workdir} is in use by {who}; wait for it to finish or pass another --workdir"


def _read(fd: int) -> str:
    """The whole content of an open file, decoded leniently."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _read_owner(fd: int, wait_s: float) -> Owner | None:
    """The owner in a held lock file, waiting up to `wait_s` for a just-started holder to write."""
    deadline = time.monotonic() + wait_s
    while True:
        owner = Owner.parse(_read(fd))
        if owner is not None or time.monotonic() >= deadline:
            return owner
        time.sleep(0.05)


def _write(fd: int, owner: Owner) -> None:
    """Replace a lock file's content with `owner` and flush it to disk."""
    data = owner.to_json().encode() + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the open file `fd` (a releasing holder may have removed it)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


class WorkdirLock:
    """Exclusive hold of one workdir for the life of a run: `acquire()`/`release()` or `with`."""

    def __init__(
        self,
        workdir: str,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.workdir = str(workdir)
        self.path = Path(workdir) / LOCK_NAME
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.mode: str | None = None  # "flock" or "exclusive" while held
        self._fd: int | None = None
        self._stop_heartbeat: threading.Event | None = None
        self._pid = 0  # the process that holds it (a forked child only closes its copy)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self.mode is not None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise WorkdirBusyError naming its holder and leave the file as is."""
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this object")
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        while True:
            fd, created = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd, BUSY_READ_WAIT_S)
                os.close(fd)
                raise WorkdirBusyError(busy_message(self.workdir, owner, self.path)) from None
            except OSError as e:
                if e.errno not in _FLOCK_UNSUPPORTED:
                    os.close(fd)
                    raise
                self._acquire_exclusive(fd, created)
                return
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed it while releasing: lock the new file instead
        try:
            if not created:
                self._warn_takeover(Owner.parse(_read(fd)))
            _write(fd, Owner.current())
        except BaseException:
            os.close(fd)
            raise
        self._hold(fd, "flock")

    def release(self) -> None:
        """Remove the lock file and unlock; a no-op when not held."""
        if not self.held or self._fd is None:
            return
        atexit.unregister(self.release)
        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
            self._stop_heartbeat = None
        # Remove before unlocking, so a waiter that then locks the old file sees it is gone.
        if os.getpid() == self._pid and _same_file(self._fd, self.path):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # drops the flock (in a forked child: only its copy of the descriptor)
        self._fd, self.mode = None, None

    def _hold(self, fd: int, mode: str) -> None:
        """Record the held lock; it is also released at interpreter exit if the caller forgets."""
        self._fd, self.mode, self._pid = fd, mode, os.getpid()
        atexit.register(self.release)

    def _open(self) -> tuple[int, bool]:
        """Open (creating if missing) the lock file; also whether this call created it."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            pass
        try:
            return os.open(self.path, os.O_RDWR), False
        except FileNotFoundError:  # removed in between by a releasing holder
            return self._open()

    def _warn_takeover(self, previous: Owner | None) -> None:
        """Log that a lock left behind is taken over (its owner is gone or its content garbled)."""
        if previous is None:
            logging.warning(
                "workdir %s: taking over a lock file with unreadable content (%s)",
                self.workdir,
                self.path,
            )
        elif (previous.pid, previous.host) != (os.getpid(), socket.gethostname()):
            logging.warning(
                "workdir %s: taking over the lock left by dead process %d on host %s (since %s)",
                self.workdir,
                previous.pid,
                previous.host,
                previous.started_local(),
            )

    # Fallback where flock is unsupported: the O_EXCL-created file is the lock.

    def _acquire_exclusive(self, fd: int, created: bool) -> None:
        """Hold the lock as the file this call created, taking over a stale one; or raise busy."""
        if not created:
            owner = _read_owner(fd, BUSY_READ_WAIT_S)
            age = time.time() - os.fstat(fd).st_mtime
            os.close(fd)
            if not self._stale(owner, age):
                raise WorkdirBusyError(busy_message(self.workdir, owner, self.path))
            self.path.unlink(missing_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:  # another process took it over first
                fd = os.open(self.path, os.O_RDONLY)
                owner = _read_owner(fd, BUSY_READ_WAIT_S)
                os.close(fd)
                raise WorkdirBusyError(busy_message(self.workdir, owner, self.path)) from None
            self._warn_takeover(owner)
        try:
            _write(fd, Owner.current())
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self._hold(fd, "exclusive")
        self._start_heartbeat()

    def _stale(self, owner: Owner | None, age_s: float) -> bool:
        """Whether a lock file of the fallback mode was left by a run that is gone."""
        if owner is not None and owner.host == socket.gethostname():
            return not pid_alive(owner.pid)
        return age_s > self.stale_after_s  # another host (or garbled): untouched for too long

    def _start_heartbeat(self) -> None:
        """Touch the lock file every `heartbeat_s` so that other hosts see it is alive."""
        stop = threading.Event()
        path = self.path

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                with contextlib.suppress(OSError):
                    os.utime(path)

        threading.Thread(target=beat, name="workdir-lock-heartbeat", daemon=True).start()
        self._stop_heartbeat = stop


# Several processes: process 0 locks and publishes the outcome; the others raise the same error.


class KeyValueStore(Protocol):
    """The job-wide key-value store that every process of a run can reach."""

    def set(self, key: str, value: str) -> None:
        """Publish `value` under `key`."""

    def get(self, key: str, timeout_s: float) -> str:
        """The value under `key`, waiting up to `timeout_s` for it to be published."""


class _JaxClientStore:
    """KeyValueStore over the `jax.distributed` coordination service client."""

    def __init__(self, client: object) -> None:
        self._client = client

    def set(self, key: str, value: str) -> None:
        self._client.key_value_set(key, value, allow_overwrite=True)

    def get(self, key: str, timeout_s: float) -> str:
        return str(self._client.blocking_key_value_get(key, int(timeout_s * 1000)))


def jax_key_value_store() -> KeyValueStore:
    """The store of the running `jax.distributed` job (call after `distributed.initialize()`)."""
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    if client is None:
        raise RuntimeError("jax.distributed is not initialized: no key-value store to publish to")
    return _JaxClientStore(client)


_OK, _BUSY, _ERROR = "ok", "busy", "error"
_sequence = 0  # calls of acquire_for_run in this process: the same on every process of a job


def _next_key() -> str:
    """A fresh key per call, identical across processes that make their calls in the same order."""
    global _sequence
    _sequence += 1
    return f"cnnjax/workdir_lock/{_sequence}"


def acquire_for_run(
    workdir: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    store: KeyValueStore | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> WorkdirLock | None:
    """Lock `workdir` for a run of one or several processes; the held lock on process 0, else None.

    Every process must call it, in the same order relative to other calls. Process 0 takes the
    lock and, with several processes, publishes the outcome to `store` (default: the
    `jax.distributed` job's); the others wait for it and raise the same WorkdirBusyError, so no
    process goes on to collectives that another will not join.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is not in [0, {process_count})")
    if process_count == 1:
        return _acquire_and_publish(workdir, None, "")
    return _acquire_and_publish(
        workdir,
        store if store is not None else jax_key_value_store(),
        _next_key(),
        process_index,
        timeout_s,
    )


def _acquire_and_publish(
    workdir: str,
    store: KeyValueStore | None,
    key: str,
    process_index: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> WorkdirLock | None:
    """Process 0: lock and publish the outcome (when there is a store); others: await it."""
    if process_index != 0:
        return _await_outcome(store, key, workdir, timeout_s)
    lock = WorkdirLock(workdir)
    try:
        lock.acquire()
    except WorkdirBusyError as e:
        if store is not None:
            store.set(key, f"{_BUSY}\t{e}")
        raise
    except Exception as e:
        if store is not None:
            store.set(key, f"{_ERROR}\t{_one_line(e)}")
        raise
    if store is not None:
        try:
            store.set(key, _OK)
        except BaseException:
            lock.release()
            raise
    return lock


def _one_line(error: BaseException) -> str:
    """An exception as one line: its type and message."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def _await_outcome(store: KeyValueStore, key: str, workdir: str, timeout_s: float) -> None:
    """Wait for process 0's outcome and raise the error it met, if any."""
    try:
        value = store.get(key, timeout_s)
    except Exception as e:
        raise WorkdirLockError(
            f"no word from process 0 about the lock on workdir {workdir} within {timeout_s:g} s "
            f"({_one_line(e)})"
        ) from None
    kind, _, message = value.partition("\t")
    if kind == _OK:
        return None
    if kind == _BUSY:
        raise WorkdirBusyError(message)
    raise WorkdirLockError(f"process 0 could not lock workdir {workdir}: {message}")


@contextlib.contextmanager
def run_lock(
    workdir: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    store: KeyValueStore | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[WorkdirLock | None]:
    """`acquire_for_run` as a context manager: released (on process 0) when the block ends."""
    lock = acquire_for_run(
        workdir,
        process_index=process_index,
        process_count=process_count,
        store=store,
        timeout_s=timeout_s,
    )
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
