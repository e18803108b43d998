"""Several processes on 127.0.0.1 (jax.distributed, gloo): saves mid-run with evaluations in
between, kill -9 of one process and an exact resume, and resumes on other process counts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import cnnjax.checkpoint

REPO = Path(__file__).resolve().parent.parent
# 312 steps per epoch at batch 32: saves every 4 steps, an evaluation every 12 (0.04 epochs).
FLAGS = [
    "--model=lenet5",
    "--batch_size=32",
    "--lr=0.01",
    "--seed=3",
    "--log_every_steps=4",
    "--checkpoint_every_steps=4",
    "--eval_every_epochs=0.04",
]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(processes: int, workdir: Path, *flags: str, devices: int = 1) -> list[subprocess.Popen]:
    """`processes` copies of experiments.fake joined by jax.distributed (as a scheduler would)."""
    port = _free_port()
    procs = []
    for index in range(processes):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNNJAX_")}
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        if processes > 1:
            env.update(
                CNNJAX_COORDINATOR=f"127.0.0.1:{port}",
                CNNJAX_NUM_PROCESSES=str(processes),
                CNNJAX_PROCESS_ID=str(index),
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "experiments.fake", *FLAGS, *flags, f"--workdir={workdir}"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen], timeout: int = 300) -> list[str]:
    """Wait for every process; assert they all succeeded; their stderr texts."""
    outs = [p.communicate(timeout=timeout) for p in procs]
    for proc, (_, stderr) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    return [stderr for _, stderr in outs]


def _run(processes: int, workdir: Path, *flags: str, devices: int = 1) -> list[str]:
    return _finish(_start(processes, workdir, *flags, devices=devices))


def _params(workdir: Path, step: int) -> list[np.ndarray]:
    _, variables, _ = cnnjax.checkpoint.load(workdir, step)
    return [np.asarray(x) for x in jax.tree.leaves(variables)]


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return (
        sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of 36 steps (checkpoints 28, 32 and 36 are kept)."""
    workdir = tmp_path_factory.mktemp("straight")
    _run(2, workdir, "--max_steps=36")
    return workdir


def test_two_processes_killed_mid_run_resume_bit_identical(tmp_path, straight):
    killed = tmp_path / "killed"
    procs = _start(2, killed, "--max_steps=36")
    deadline = time.time() + 240
    while time.time() < deadline and max(_steps(killed), default=0) < 16:
        time.sleep(0.01)
    assert max(_steps(killed), default=0) >= 16, "no mid-run checkpoint was written"
    procs[1].send_signal(signal.SIGKILL)  # one process dies mid-run, between saves
    start = time.time()
    _, stderr = procs[0].communicate(timeout=120)
    procs[1].communicate()
    # Its peer stops within a minute (a failed collective, or the 30 s heartbeat), in one line.
    assert time.time() - start < 60 and procs[0].returncode != 0
    assert "another process of this run failed" in stderr
    assert max(_steps(killed)) < 36
    resumed = _run(2, killed, "--max_steps=36")
    assert "resumed" in resumed[0]
    for a, b in zip(_params(straight, 36), _params(killed, 36), strict=True):
        np.testing.assert_array_equal(a, b)
    # Evaluations came between the saves (every 4 steps); the latest 3 are kept.
    evals = [e["step"] for e in _events(straight) if e["split"] == "eval"]
    assert evals == [12, 24, 36] and _steps(straight) == [28, 32, 36]


def test_resume_on_other_process_and_device_counts_continues_the_same_run(tmp_path, straight):
    elastic = tmp_path / "elastic"
    # 2 -> 1 -> 2 -> 4 processes (the last with 2 devices each): (processes, devices, last step).
    legs = [(2, 1, 8), (1, 1, 16), (2, 1, 24), (4, 2, 32)]
    previous = 0
    for processes, devices, last in legs:
        logs = _run(processes, elastic, f"--max_steps={last}", devices=devices)
        if previous:
            assert f"resumed {elastic} from step {previous}" in logs[0]
            assert "the data position carries over exactly" in logs[0]
        assert max(_steps(elastic)) == last
        previous = last
    # The same global batches in the same order as the uninterrupted run: the same run, up to
    # float reassociation in the gradient all-reduce over 1, 2 and 8 devices.
    for a, b in zip(_params(straight, 32), _params(elastic, 32), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
