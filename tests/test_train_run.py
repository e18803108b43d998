"""End-to-end runs of `experiments.fake`: learning, artifacts, exact resume after kill -9,
2 processes == 1 process, NaN stop, workdir mismatch, and one-line errors for bad flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnjax.checkpoint

REPO = Path(__file__).resolve().parent.parent
COMMON = ["--model=lenet5", "--batch_size=32", "--lr=0.01", "--log_every_steps=5", "--seed=3"]


def _env(devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNJAX_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _run(*flags: str, devices: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.fake", *flags],
        cwd=REPO,
        env=_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _params(workdir: Path, step: int | None = None) -> list[np.ndarray]:
    _, variables, _ = cnnjax.checkpoint.load(workdir, step)
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(variables)]


def test_short_run_learns_and_writes_its_artifacts(tmp_path):
    out = _run(*COMMON, "--max_steps=40", f"--workdir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    train = [e for e in _events(tmp_path) if e["split"] == "train"]
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert {"step", "epoch", "wall_time", "loss", "top1", "top5", "lr", "grad_norm"} <= set(
        train[0]
    )
    evals = [e for e in _events(tmp_path) if e["split"] == "eval"]
    assert evals and evals[-1]["examples"] == 2000  # every fake test example, scored once
    for name in ("config.json", "curves.png", "metrics.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert any((tmp_path / "tensorboard").iterdir())
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "lenet5"
    assert "best eval top-1" in out.stdout
    # The console shows each evaluation: step, top-1, top-5 and loss, as metrics.jsonl has them.
    last = evals[-1]
    assert (
        f"eval step {last['step']} (epoch {last['epoch']:.2f}): top-1 {100 * last['top1']:.2f}%, "
        f"top-5 {100 * last['top5']:.2f}%, loss {last['loss']:.4f} (2,000 examples)"
    ) in out.stderr


@pytest.mark.slow
def test_kill_minus_9_then_resume_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    flags = [*COMMON, "--max_steps=40", "--checkpoint_every_steps=4"]
    assert _run(*flags, f"--workdir={straight}").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.fake", *flags, f"--workdir={killed}"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts, deadline = killed / "checkpoints", time.time() + 240
    # Kill the moment a save is in flight after step 12 (or once step 24 is safely written).
    while time.time() < deadline and proc.poll() is None:
        names = [p.name for p in ckpts.iterdir()] if ckpts.exists() else []
        steps = [int(n) for n in names if n.isdigit()]
        if (any("tmp" in n for n in names) and max(steps, default=0) >= 12) or 24 in steps:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = _run(*flags, f"--workdir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stderr
    for a, b in zip(_params(straight, 40), _params(killed, 40), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not [p for p in (killed / "checkpoints").iterdir() if "tmp" in p.name]


def test_nan_loss_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    assert _run(*COMMON, "--max_steps=10", f"--workdir={tmp_path}").returncode == 0
    diverge = _run(
        *COMMON[:2],
        "--lr=1e9",
        "--log_every_steps=1",
        "--max_steps=30",
        "--allow_config_change",
        f"--workdir={tmp_path}",
    )
    assert diverge.returncode == 2
    assert diverge.stderr.strip().splitlines()[-1].startswith("error: loss became nan")
    assert "Traceback" not in diverge.stderr
    assert all(np.isfinite(p).all() for p in _params(tmp_path))
    assert max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == 10


def test_a_workdir_of_another_model_is_refused_untouched(tmp_path):
    assert _run(*COMMON, "--max_steps=5", f"--workdir={tmp_path}").returncode == 0
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    other = _run("--model=small_convnet", "--max_steps=5", f"--workdir={tmp_path}")
    assert other.returncode == 2
    assert "holds checkpoints of another run (model 'lenet5' → 'small_convnet')" in other.stderr
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


@pytest.mark.parametrize(
    "flags,devices,message",
    [
        (["--model=lenet"], 1, "unknown model 'lenet' (did you mean lenet5"),
        (["--batch_size=100"], 8, "use --batch_size=96 or 104"),
        (["--recipe=resnet"], 1, "unknown recipe 'resnet'; choose one of"),
        (["--batch_size=20000"], 1, "exceeds the 10000 training examples"),
    ],
)
def test_bad_flags_fail_in_one_line(tmp_path, flags, devices, message):
    out = _run(*flags, f"--workdir={tmp_path}", devices=devices)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in out.stderr


@pytest.mark.slow
def test_sigterm_saves_then_the_run_resumes_on_more_devices(tmp_path):
    proc = _start(tmp_path, "--max_steps=400", "--checkpoint_every_steps=1000")
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped at step" in stdout
    saved = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved and 0 < max(saved) < 400  # a checkpoint at the step SIGTERM arrived
    # Resume the same run on 8 devices (batch 32 splits 4 per device): the state is resharded.
    resumed = _run(*COMMON, f"--max_steps={max(saved) + 8}", f"--workdir={tmp_path}", devices=8)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {tmp_path} from step {max(saved)}" in resumed.stderr


def test_bfloat16_compute_trains(tmp_path):
    out = _run(*COMMON, "--dtype=bfloat16", "--max_steps=30", f"--workdir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    train = [e for e in _events(tmp_path) if e["split"] == "train"]
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert all(p.dtype == np.float32 for p in _params(tmp_path))  # params stay float32


def _start_cluster(workdir: Path) -> list[subprocess.Popen]:
    """Two processes started as a cluster scheduler would (no launch.sh watching them)."""
    port = _free_port()
    procs = []
    for index in range(2):
        env = {
            **_env(),
            "CNNJAX_COORDINATOR": f"127.0.0.1:{port}",
            "CNNJAX_NUM_PROCESSES": "2",
            "CNNJAX_PROCESS_ID": str(index),
        }
        command = [
            sys.executable,
            "-m",
            "experiments.fake",
            *COMMON,
            "--max_steps=100000",
            f"--workdir={workdir}",
        ]
        procs.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.time() + 180
    while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
        time.sleep(0.1)
    assert (workdir / "metrics.jsonl").exists(), "training never started"
    return procs


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_saved_step(tmp_path):
    procs = _start_cluster(tmp_path)
    procs[1].send_signal(signal.SIGTERM)  # JAX's preemption sync picks one safe step for all
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    steps = {
        line.split()[3].rstrip(":")
        for out in outs
        for line in out.splitlines()
        if line.startswith("stopped at step")
    }
    saved = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and saved == [steps.pop()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snapshot(workdir: Path) -> dict[str, bytes]:
    """Every file of a workdir and its bytes (to show that a refused run wrote nothing)."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_changed_configuration_is_refused_untouched_unless_allowed(tmp_path):
    assert _run(*COMMON, "--max_steps=8", f"--workdir={tmp_path}").returncode == 0
    before = _snapshot(tmp_path)
    changed = _run(
        *COMMON, "--max_steps=16", "--batch_size=64", "--lr=0.5", f"--workdir={tmp_path}"
    )
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    last = changed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path} was trained with other settings: ")
    assert "batch_size 32 → 64, lr 0.01 → 0.5;" in last and "--allow_config_change" in last
    assert "max_steps" not in last  # extending a run is allowed
    assert _snapshot(tmp_path) == before
    allowed = _run(
        *COMMON, "--max_steps=16", "--lr=0.02", "--allow_config_change", f"--workdir={tmp_path}"
    )
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "resuming with changed settings: lr 0.01 → 0.02" in allowed.stderr
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.02


def _start(workdir: Path, *flags: str) -> subprocess.Popen:
    """A long run in the background, returned once it has written a new log line."""
    log = workdir / "metrics.jsonl"
    size = log.stat().st_size if log.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.fake", *COMMON, *flags, f"--workdir={workdir}"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (log.stat().st_size if log.exists() else 0) == size:
        time.sleep(0.05)
    assert log.exists() and log.stat().st_size > size, "training never started"
    return proc


@pytest.mark.slow
def test_a_busy_workdir_is_refused_in_one_line(tmp_path):
    first = _start(tmp_path, "--max_steps=100000", "--checkpoint_every_steps=10")
    try:
        second = _run(*COMMON, "--max_steps=100000", f"--workdir={tmp_path}")
        assert second.returncode == 2 and "Traceback" not in second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: workdir {tmp_path} is in use by process {first.pid} on ")
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert not (tmp_path / ".lock").exists()  # released: the next run may start


@pytest.mark.slow
def test_ctrl_c_saves_and_stops_then_the_run_resumes(tmp_path):
    run = _start(tmp_path, "--max_steps=100000", "--checkpoint_every_steps=100000")
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0 and "Traceback" not in stderr
    assert "stopped at step" in stdout and "run the same command to resume" in stdout
    saved = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and saved[0] > 0  # the step Ctrl-C arrived at, not a scheduled save
    assert not (tmp_path / ".lock").exists()
    resumed = _run(*COMMON, f"--max_steps={saved[0] + 4}", f"--workdir={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {tmp_path} from step {saved[0]}" in resumed.stderr


def test_a_second_ctrl_c_stops_at_once_after_freeing_the_workdir(monkeypatch, capsys):
    # (In a real run the first Ctrl-C's save and stop take well under a second here, too fast
    # to press twice; the handler is exercised directly.)
    from cnnjax.train import runner

    released, exits = [], []
    monkeypatch.setattr(runner.os, "_exit", exits.append)
    before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT
    with runner._Preemption(on_abort=lambda: released.append(True)) as preemption:
        assert signal.getsignal(signal.SIGINT) == preemption._handle
        preemption._handle(signal.SIGINT, None)
        assert preemption.reached(5) and not released and not exits
        preemption._handle(signal.SIGINT, None)
    assert released == [True] and exits == [130]
    assert "stopped at once; the last complete checkpoint is intact" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (needs root, as CI has); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_the_run_resumes(small_disk):
    workdir = small_disk / "run"
    # Each checkpoint of LeNet-5 with momentum is about 0.5 MiB: the disk fills within 6 saves.
    flags = [*COMMON, "--checkpoint_every_steps=5", "--keep_checkpoints=20", f"--workdir={workdir}"]
    full = _run(*flags, "--max_steps=200")
    assert full.returncode == 2 and "Traceback" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1 and errors[0].startswith("error: saving checkpoint ")
    assert "the disk is full (it needs about 0.5 MiB" in errors[0]
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) >= 2 and any("tmp" in p.name for p in (workdir / "checkpoints").iterdir())
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = _run(*flags, f"--max_steps={max(saved) + 5}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {workdir} from step {max(saved)}" in resumed.stderr
    assert not [p for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]


def test_several_processes_agree_on_a_stop_by_counting_steps_and_eval_batches(monkeypatch):
    # JAX's sync manager picks one tick for all processes; every process counts train steps and
    # evaluation batches alike, so the agreed tick is the same place on each: here the 3rd
    # batch of an evaluation after 2 train steps.
    from jax.experimental import multihost_utils

    from cnnjax.train import runner

    seen = []
    monkeypatch.setattr(
        multihost_utils,
        "reached_preemption_sync_point",
        lambda tick: seen.append(tick) or tick == 5,
    )
    preemption = runner._Preemption(on_abort=lambda: None)
    preemption.multi_process = True
    assert not preemption.reached(101) and not preemption.reached(102)
    assert [preemption.between_eval_batches() for _ in range(3)] == [False, False, True]
    assert preemption.reached(102) and seen == [1, 2, 3, 4, 5, 6]
