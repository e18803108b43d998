#!/usr/bin/env bash
# cnnjax launcher: set up on first use, run the tests, or run an experiment.
#
#   ./launch.sh setup                       install cnnjax and its dependencies (idempotent; as
#                                           root on Debian/Ubuntu also dataset-fashion-mnist)
#   ./launch.sh test [pytest args]          set up if needed, then run the test suite on every
#                                           core (pytest-xdist; -n 0: one process)
#   ./launch.sh experiments.NAME [flags]    set up if needed, then run one experiment
#   ./launch.sh --nproc=N experiments.NAME  N local processes on 127.0.0.1 (jax.distributed,
#                                           gloo collectives on CPU): the code path of N hosts
#   ./launch.sh MODULE [args]               any python module, e.g. cnnjax.summary --model=vgg16
#
# Clusters: under SLURM run `srun --ntasks=N python -m experiments.NAME ...` (one task per host;
# jax.distributed detects SLURM); on a Cloud TPU pod run the same command on every worker
# (`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}

missing_deps() {
  # Exit 0 when something the project needs cannot be imported.
  "$PYTHON" - "$@" <<'PY'
import importlib.util, sys
mods = ["jax", "flax", "optax", "orbax.checkpoint", "tensorflow_datasets", "array_record",
        "grain", "absl", "PIL", "simplejpeg", "cv2", "tqdm", "matplotlib", "tensorboardX",
        "safetensors"] + sys.argv[1:]
sys.exit(0 if any(importlib.util.find_spec(m) is None for m in mods) else 1)
PY
}

setup() {
  local extra=${1:-}
  if missing_deps "${@:2}"; then
    echo "launch.sh: installing cnnjax${extra:+[$extra]} and its dependencies ..." >&2
    "$PYTHON" -m pip install --quiet --upgrade pip
    "$PYTHON" -m pip install --quiet -e ".${extra:+[$extra]}"
  fi
  fashion_mnist_files
}

apt_install() {
  # Quietly install Debian packages; a failure (no network, held lock) only returns non-zero.
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq "$@" >/dev/null 2>&1
}

fashion_mnist_files() {
  # Debian's Fashion-MNIST files let the quick start prepare its dataset without internet.
  # Installed only as root on Debian/Ubuntu, when missing; setup goes on if apt fails.
  local dir=/usr/share/datasets/fashion-mnist
  if [ -d "$dir" ] || [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ] \
    || ! command -v apt-get >/dev/null; then
    return 0
  fi
  echo "launch.sh: installing dataset-fashion-mnist (Fashion-MNIST's files, for offline use) ..." >&2
  if apt_install dataset-fashion-mnist \
    || { timeout 300 apt-get update -qq >/dev/null 2>&1 && apt_install dataset-fashion-mnist; }; then
    return 0
  fi
  echo "launch.sh: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded" >&2
}

multi_process() {
  # Start N copies of one module on this machine; if any fails, stop the others.
  local n=$1; shift
  local port
  port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local pids=() status=0
  for ((i = 0; i < n; i++)); do
    CNNJAX_COORDINATOR=127.0.0.1:$port CNNJAX_NUM_PROCESSES=$n CNNJAX_PROCESS_ID=$i \
      "$PYTHON" -m "$@" &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
  for ((i = 0; i < n; i++)); do
    if ! wait -n; then
      status=1
      echo "launch.sh: a process failed; stopping the other $((n - 1))" >&2
      kill "${pids[@]}" 2>/dev/null || true
      break
    fi
  done
  wait 2>/dev/null || true
  return $status
}

cmd=${1:-help}
case "$cmd" in
  --nproc=*)
    n=${cmd#--nproc=}
    shift
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --nproc needs a positive integer" >&2; exit 2; }
    [ $# -ge 1 ] || { echo "launch.sh: usage: ./launch.sh --nproc=N experiments.NAME [flags]" >&2; exit 2; }
    setup prepare tensorflow
    multi_process "$n" "$@" ;;
  setup)
    setup test pytest xdist ruff tensorflow ;;
  test)
    shift
    setup test pytest xdist ruff tensorflow
    # A pytest-xdist worker per core this process may use, at most 8 (some tests hold several
    # GB; xdist's own `auto` counts physical cores, not the ones we may use); -n 0: serially.
    workers=$("$PYTHON" -c 'import os
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
print(min(8, cores or 1))')
    exec "$PYTHON" -m pytest -n "$workers" "$@" ;;
  help|-h|--help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *)
    shift
    setup prepare tensorflow
    exec "$PYTHON" -m "$cmd" "$@" ;;
esac
