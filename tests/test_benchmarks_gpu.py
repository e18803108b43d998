"""`python -m benchmarks.gpu` runs end to end on CPU in a tiny configuration (the CI smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnjax.summary import summarize

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu_and_reports_every_row():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    args = [
        "--model=resnet20",
        "--image_size=32",
        "--batch_size=4",
        "--steps=2",
        "--warmup=1",
        "--loader_images=9",
        "--loader_cores=1",
        "--flag_sets=latency-hiding scheduler",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| step")]
    assert len(rows) == 3, out.stdout
    assert "--xla_gpu_enable_latency_hiding_scheduler=true" in rows[1]
    assert "1 host cores, threads" in rows[2]
    assert all(float(row.split("|")[3].replace(",", "")) > 0 for row in rows)
    assert all(row.rstrip(" |").endswith("n/a") for row in rows)  # no peak FLOP/s for a CPU
    macs = summarize("resnet20").total_macs  # ~41 MMACs: the count the report must quote
    assert f"{macs / 1e9:.2f} GMAC/image" in out.stdout
