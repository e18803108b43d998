#!/usr/bin/env bash
# cnnjax launcher: set up on first use, run the tests, or run an experiment.
#
#   ./launch.sh setup                       install cnnjax and its dependencies (idempotent)
#   ./launch.sh test [pytest args]          set up if needed, then run the test suite
#   ./launch.sh experiments.NAME [flags]    set up if needed, then run one experiment
#   ./launch.sh MODULE [args]               any python module, e.g. cnnjax.summary --model=vgg16
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}

missing_deps() {
  # Exit 0 when something the project needs cannot be imported.
  "$PYTHON" - "$@" <<'PY'
import importlib.util, sys
mods = ["jax", "flax", "optax", "orbax.checkpoint", "tensorflow_datasets", "array_record",
        "grain", "absl", "PIL", "tqdm", "matplotlib", "tensorboardX"] + sys.argv[1:]
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
}

cmd=${1:-help}
case "$cmd" in
  setup)
    setup test pytest ruff tensorflow ;;
  test)
    shift
    setup test pytest ruff tensorflow
    exec "$PYTHON" -m pytest "$@" ;;
  help|-h|--help)
    sed -n '2,8p' "$0" ;;
  *)
    shift
    setup prepare tensorflow
    exec "$PYTHON" -m "$cmd" "$@" ;;
esac
