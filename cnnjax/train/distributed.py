"""Multi-process start-up: `jax.distributed` from launch.sh's variables, SLURM or a TPU pod."""

from __future__ import annotations

import os

import jax
from absl import logging

# Set by `launch.sh --nproc=N`; the same code path as N hosts.
ENV_COORDINATOR = "CNNJAX_COORDINATOR"
ENV_NUM_PROCESSES = "CNNJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "CNNJAX_PROCESS_ID"
HEARTBEAT_TIMEOUT_S = 30  # a dead peer is detected and the others stop within a minute


def _cluster_detected() -> bool:
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ
    return slurm or tpu_pod


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join the job's processes, when there are several; a no-op for a single process."""
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and ENV_NUM_PROCESSES in os.environ:
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
    if process_id is None and ENV_PROCESS_ID in os.environ:
        process_id = int(os.environ[ENV_PROCESS_ID])
    explicit = coordinator is not None and (num_processes or 1) > 1
    if not explicit and not _cluster_detected():
        return
    if getattr(initialize, "_done", False):  # (asking jax.process_count() would start JAX)
        return
    # CPU processes need a collectives backend for cross-process all-reduce.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    else:  # SLURM / Cloud TPU: jax detects the cluster itself
        jax.distributed.initialize(heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    initialize._done = True
    logging.info(
        "process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
