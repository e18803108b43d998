"""One run per workdir: busy refusal from another process, take-over after kill -9, release,
garbled lock files, the no-flock fallback, and process 0's outcome shared with the others."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cnnjax.train import workdir_lock
from cnnjax.train.workdir_lock import WorkdirBusyError, WorkdirLock, WorkdirLockError

MODULE = Path(workdir_lock.__file__)
# Loads the module by path: a subprocess then starts in a fraction of a second (no jax import).
LOAD = (
    "import importlib.util, sys\n"
    f"spec = importlib.util.spec_from_file_location('workdir_lock', {str(MODULE)!r})\n"
    "wl = sys.modules['workdir_lock'] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(wl)\n"
)
HOLD = LOAD + (
    "lock = wl.WorkdirLock(sys.argv[1]); lock.acquire()\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"  # hold until the test closes stdin (or kills us)
    "lock.release()\n"
)
TRY = LOAD + (
    "try:\n"
    "    wl.WorkdirLock(sys.argv[1]).acquire()\n"
    "except wl.WorkdirBusyError as e:\n"
    "    print(e); sys.exit(3)\n"
    "print('acquired')\n"
)
SUFFIX = "; wait for it to finish or pass another --workdir"
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
def holder():
    """Start processes that hold a workdir's lock until stdin closes; end them afterwards."""
    started: list[subprocess.Popen] = []

    def start(workdir: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _busy_pattern(workdir: Path, pid: int) -> str:
    return (
        rf"workdir {re.escape(str(workdir))} is in use by process {pid} on host "
        rf"{re.escape(socket.gethostname())} since {TIME} \(started by: .+\){re.escape(SUFFIX)}"
    )


def _takeover_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_busy_in_another_process_names_the_holder_and_leaves_the_file(tmp_path, holder):
    workdir = tmp_path / "runs" / "x"
    proc = holder(workdir)
    lock_file = workdir / ".lock"
    before = lock_file.read_bytes()
    assert json.loads(before)["pid"] == proc.pid

    with pytest.raises(WorkdirBusyError) as error:
        WorkdirLock(str(workdir)).acquire()
    message = str(error.value)
    assert "\n" not in message
    assert re.fullmatch(_busy_pattern(workdir, proc.pid), message), message
    assert f"{sys.executable} -c" in message  # the holder's command line

    # A third process is refused with the same message.
    other = subprocess.run(
        [sys.executable, "-c", TRY, str(workdir)], capture_output=True, text=True, timeout=60
    )
    assert other.returncode == 3, other.stderr
    assert other.stdout.strip() == message
    assert lock_file.read_bytes() == before

    proc.stdin.close()  # the holder releases and exits
    assert proc.wait(timeout=60) == 0
    assert not lock_file.exists()


def test_lock_of_a_killed_process_is_taken_over_with_one_warning(tmp_path, holder, caplog):
    workdir = tmp_path / "run"
    proc = holder(workdir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((workdir / ".lock").read_text())["pid"] == proc.pid  # left behind

    caplog.set_level(logging.WARNING)
    with WorkdirLock(str(workdir)) as lock:
        assert lock.mode == "flock"
        content = json.loads((workdir / ".lock").read_text())
        assert (content["pid"], content["host"]) == (os.getpid(), socket.gethostname())
    warnings = _takeover_warnings(caplog)
    assert len(warnings) == 1
    assert re.fullmatch(
        rf"workdir {re.escape(str(workdir))}: taking over the lock left by dead process "
        rf"{proc.pid} on host {re.escape(socket.gethostname())} \(since {TIME}\)",
        warnings[0],
    ), warnings


def test_release_removes_the_file_and_the_workdir_can_be_locked_again(tmp_path, caplog):
    workdir = tmp_path / "run"
    caplog.set_level(logging.WARNING)
    lock = WorkdirLock(str(workdir))
    lock.acquire()
    assert (workdir / ".lock").exists()
    lock.release()
    assert not (workdir / ".lock").exists()
    lock.release()  # idempotent

    other = subprocess.run(
        [sys.executable, "-c", TRY, str(workdir)], capture_output=True, text=True, timeout=60
    )
    assert (other.returncode, other.stdout.strip()) == (0, "acquired")
    assert not (workdir / ".lock").exists()  # released at its exit, though it did not call release
    with WorkdirLock(str(workdir)):
        pass
    assert not (workdir / ".lock").exists()
    assert _takeover_warnings(caplog) == []  # clean releases leave nothing to take over


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    workdir = tmp_path / "run"
    with WorkdirLock(str(workdir)), pytest.raises(WorkdirBusyError, match=f"process {os.getpid()}"):
        WorkdirLock(str(workdir)).acquire()


@pytest.mark.parametrize("content", ["", "{not json", '{"pid": 1}', "\x00\xff garbage"])
def test_garbled_lock_file_is_taken_over_with_a_warning(tmp_path, caplog, content):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / ".lock").write_text(content, errors="surrogateescape")
    caplog.set_level(logging.WARNING)
    with WorkdirLock(str(workdir)):
        assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()
    warnings = _takeover_warnings(caplog)
    assert len(warnings) == 1 and "unreadable" in warnings[0], warnings


def test_busy_message_when_the_held_file_is_unreadable(tmp_path):
    message = workdir_lock.busy_message("runs/x", None, tmp_path / ".lock")
    assert message.startswith("workdir runs/x is in use by another process")
    assert message.endswith(SUFFIX) and "\n" not in message


# The fallback where flock is unsupported.


@pytest.fixture
def no_flock(monkeypatch):
    def unsupported(fd, op):
        raise OSError(workdir_lock.errno.ENOLCK, "No locks available")

    monkeypatch.setattr(workdir_lock.fcntl, "flock", unsupported)


def _write_owner(workdir: Path, pid: int, host: str) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    content = json.dumps(
        {"pid": pid, "host": host, "started": "2026-11-29T22:05:13+00:00", "command": "python x"}
    )
    (workdir / ".lock").write_text(content)
    return content


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_fallback_refuses_a_live_holder_and_releases(tmp_path, no_flock):
    workdir = tmp_path / "run"
    with WorkdirLock(str(workdir)) as lock:
        assert lock.mode == "exclusive"
        with pytest.raises(WorkdirBusyError) as error:
            WorkdirLock(str(workdir)).acquire()
        assert re.fullmatch(_busy_pattern(workdir, os.getpid()), str(error.value))
    assert not (workdir / ".lock").exists()


def test_fallback_takes_over_a_dead_pid_of_this_host(tmp_path, no_flock, caplog):
    workdir = tmp_path / "run"
    pid = _dead_pid()
    _write_owner(workdir, pid, socket.gethostname())
    caplog.set_level(logging.WARNING)
    with WorkdirLock(str(workdir)):
        assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()
    warnings = _takeover_warnings(caplog)
    assert len(warnings) == 1 and f"dead process {pid} on host" in warnings[0], warnings


def test_fallback_other_host_is_live_until_stale(tmp_path, no_flock, caplog):
    workdir = tmp_path / "run"
    content = _write_owner(workdir, 12345, "elsewhere.example")
    with pytest.raises(WorkdirBusyError, match="process 12345 on host elsewhere.example"):
        WorkdirLock(str(workdir)).acquire()
    assert (workdir / ".lock").read_text() == content

    old = time.time() - 2 * workdir_lock.STALE_AFTER_S
    os.utime(workdir / ".lock", (old, old))
    caplog.set_level(logging.WARNING)
    with WorkdirLock(str(workdir)):
        assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()
    assert "dead process 12345 on host elsewhere.example" in _takeover_warnings(caplog)[0]


def test_fallback_heartbeat_keeps_the_file_fresh(tmp_path, no_flock):
    workdir = tmp_path / "run"
    with WorkdirLock(str(workdir), heartbeat_s=0.05):
        old = time.time() - 3600
        os.utime(workdir / ".lock", (old, old))
        deadline = time.time() + 10
        while (workdir / ".lock").stat().st_mtime < old + 1800 and time.time() < deadline:
            time.sleep(0.05)
        assert (workdir / ".lock").stat().st_mtime > old + 1800


# Several processes: process 0 decides, the others raise the same error.


class FakeStore:
    """An in-memory key-value store with blocking reads, like the jax.distributed client's."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.waiting = threading.Event()
        self._changed = threading.Condition()

    def set(self, key: str, value: str) -> None:
        with self._changed:
            self.values[key] = value
            self._changed.notify_all()

    def get(self, key: str, timeout_s: float) -> str:
        with self._changed:
            self.waiting.set()
            if not self._changed.wait_for(lambda: key in self.values, timeout_s):
                raise TimeoutError(f"DEADLINE_EXCEEDED: {key}")
            return self.values[key]


def _as_process(index: int, workdir: Path, store: FakeStore, monkeypatch, timeout_s: float = 30):
    """acquire_for_run as process `index` of 2 (each process starts with its own call count)."""
    monkeypatch.setattr(workdir_lock, "_sequence", 0)
    return workdir_lock.acquire_for_run(
        str(workdir), process_index=index, process_count=2, store=store, timeout_s=timeout_s
    )


def test_other_processes_raise_process_0s_busy_error(tmp_path, holder, monkeypatch):
    workdir = tmp_path / "run"
    proc = holder(workdir)
    store = FakeStore()
    with pytest.raises(WorkdirBusyError) as first:
        _as_process(0, workdir, store, monkeypatch)
    with pytest.raises(WorkdirBusyError) as second:
        _as_process(1, workdir, store, monkeypatch)
    assert str(second.value) == str(first.value)
    assert re.fullmatch(_busy_pattern(workdir, proc.pid), str(second.value))


def test_other_processes_wait_for_process_0_and_go_on(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    store = FakeStore()
    outcome: list[object] = []
    monkeypatch.setattr(workdir_lock, "_sequence", 0)
    waiter = threading.Thread(
        target=lambda: outcome.append(
            workdir_lock.acquire_for_run(
                str(workdir), process_index=1, process_count=2, store=store, timeout_s=30
            )
        )
    )
    waiter.start()
    assert store.waiting.wait(10)  # process 1 is blocked on process 0's word
    lock = _as_process(0, workdir, store, monkeypatch)
    waiter.join(10)
    assert outcome == [None]
    assert lock is not None and lock.held
    lock.release()
    assert not (workdir / ".lock").exists()


def test_other_processes_report_process_0s_other_failure(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    store = FakeStore()
    with pytest.raises(OSError):
        _as_process(0, not_a_dir / "run", store, monkeypatch)
    with pytest.raises(WorkdirLockError, match="process 0 could not lock workdir .*Error"):
        _as_process(1, not_a_dir / "run", store, monkeypatch)


def test_other_processes_time_out_without_word_from_process_0(tmp_path, monkeypatch):
    with pytest.raises(WorkdirLockError, match="no word from process 0 .* within 0.2 s"):
        _as_process(1, tmp_path / "run", FakeStore(), monkeypatch, timeout_s=0.2)


def test_one_process_needs_no_store_and_run_lock_releases(tmp_path):
    workdir = tmp_path / "run"
    with workdir_lock.run_lock(str(workdir)) as lock:
        assert lock is not None and (workdir / ".lock").exists()
    assert not (workdir / ".lock").exists()
    with pytest.raises(ValueError, match="process index"):
        workdir_lock.acquire_for_run(str(workdir), process_index=1, process_count=1)


JAX_PROCESS = """
import sys, jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from cnnjax.train import workdir_lock as wl
for workdir in sys.argv[3:]:
    try:
        lock = wl.acquire_for_run(
            workdir, process_index=jax.process_index(), process_count=jax.process_count()
        )
        print("held" if lock is not None else "none", flush=True)
    except wl.WorkdirBusyError as e:
        print("busy", e, flush=True)
"""


@pytest.mark.slow
def test_two_jax_processes_share_the_outcome(tmp_path):
    busy, free = tmp_path / "busy", tmp_path / "free"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with WorkdirLock(str(busy)):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    JAX_PROCESS,
                    f"127.0.0.1:{port}",
                    str(i),
                    str(busy),
                    str(free),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
    lines = [out.splitlines() for out, _ in outputs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert lines[0][0] == lines[1][0] and lines[0][0].startswith("busy workdir "), lines
    assert f"process {os.getpid()} on host {socket.gethostname()}" in lines[0][0]
    assert [lines[0][1], lines[1][1]] == ["held", "none"]
