"""Zhang & Wallace's (2015) sensitivity study of the text CNN: one hyper-parameter at a time.

`run_sweep(config, name, values)` trains the run's configuration once per value of one field
(region sizes, feature maps, activation, pooling, dropout or the max-norm cap), each value
cross-validated as Kim scored the set: 10 folds for a set without a test split, else 10 runs
with seeds seed … seed + 9 scored on the test split. Every run lives in its own folder,
WORKDIR/NAME=VALUE/fold_K (or seed_K), and resumes on its own: rerun the same command after an
interruption and finished runs only report their score. It writes WORKDIR/sensitivity.json and
WORKDIR/sensitivity.png (mean, min and max top-1 per value, as their figures show) and returns
the table.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnjax import data as cdata
from cnnjax.train.config import TrainConfig
from cnnjax.train.cross_validation import leaving_nothing_on_failure
from cnnjax.train.validation import ConfigError, validate_config

REPLICATES = 10  # runs per value for a set with a test split (Zhang & Wallace: 10-fold CV)
SWEEP_FILE = "sensitivity.json"
PLOT_FILE = "sensitivity.png"


def _windows(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


# The fields one sweep may vary, each with how a value is read from the command line.
SWEEPS: dict[str, Callable[[str], Any]] = {
    "windows": _windows,  # region sizes: "3;5;7;3,4,5" (values separated by ';')
    "feature_maps": int,
    "activation": str,
    "pooling": str,
    "dropout": float,
    "max_norm": float,  # 0: no constraint
}


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """The top-1 of every run (fold or seed) of one value of the swept field."""

    label: str
    top1: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def std(self) -> float:
        return statistics.stdev(self.top1) if len(self.top1) > 1 else 0.0


def value_label(value: Any) -> str:
    """The value as it names its folder and its row: '3,4,5', '100', 'relu', '0.5'."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def parse_values(name: str, text: str) -> list[Any]:
    """The ';'-separated values of field `name` (',' also separates non-list values)."""
    if name not in SWEEPS:
        raise ConfigError(f"--sweep={name} is not valid: sweep one of {', '.join(SWEEPS)}")
    parts = text.split(";") if name == "windows" else text.replace(";", ",").split(",")
    parts = [part.strip() for part in parts if part.strip()]
    if len(parts) < 2:
        raise ConfigError(
            f"--values={text!r}: give at least two values of {name} to compare, separated by "
            f"';'{' (e.g. 3;5;7;3,4,5)' if name == 'windows' else ''}"
        )
    try:
        values = [SWEEPS[name](part) for part in parts]
    except ValueError:
        raise ConfigError(f"--values={text!r}: not all are valid values of {name}") from None
    labels = [value_label(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--values={text!r}: a value is repeated")
    return values


def _runs(config: TrainConfig, folder: Path) -> list[TrainConfig]:
    """The runs of one value: its CV folds, or REPLICATES seeds on a set with a test split."""
    folds = cdata.dataset_info(config.dataset).cv_folds
    if folds:
        return [config.replace(fold=k, workdir=str(folder / f"fold_{k}")) for k in range(folds)]
    return [
        config.replace(seed=config.seed + k, workdir=str(folder / f"seed_{k}"))
        for k in range(REPLICATES)
    ]


def check_sweep(config: TrainConfig, name: str, values: Sequence[Any]) -> None:
    """Refuse a sweep that cannot run, in one line, before anything is written."""
    if cdata.dataset_info(config.dataset).pipeline != "text":
        raise ConfigError(f"--sweep: {config.dataset} is not a text dataset; sweep a text set")
    if config.fold is not None:
        raise ConfigError("--sweep runs every fold: drop --fold")
    for value in values:  # every run's configuration, checked before the first one trains
        for run in _runs(config.replace(**{name: value}), Path(".")):
            validate_config(run)


def run_sweep(
    config: TrainConfig,
    name: str,
    values: Sequence[Any],
    *,
    allow_config_change: bool = False,
) -> list[SweepPoint]:
    """Train every run of every value into WORKDIR/NAME=VALUE; write the table and the plot."""
    from cnnjax.train.runner import default_workdir, train_and_evaluate

    check_sweep(config, name, values)
    base = Path(config.workdir or default_workdir(config) + f"-sweep-{name}")
    points = []
    with leaving_nothing_on_failure(base):
        for value in values:
            label = value_label(value)
            scores = []
            for run in _runs(config.replace(**{name: value}), base / f"{name}={label}"):
                result = train_and_evaluate(run, allow_config_change=allow_config_change)
                if result.preempted or result.final_eval is None:
                    raise ValueError(
                        f"{run.workdir} stopped before its final evaluation; run the same "
                        "command to resume"
                    )
                scores.append(result.final_eval["top1"])
            points.append(SweepPoint(label, tuple(scores)))
    _write(base, name, points)
    return points


def table(name: str, points: Sequence[SweepPoint]) -> str:
    """The sweep as a text table: value, mean, min, max and std of top-1 (%)."""
    width = max(len(name), *(len(p.label) for p in points))
    lines = [f"{name:<{width}}  mean    min     max     std    runs"]
    for p in points:
        lines.append(
            f"{p.label:<{width}}  {100 * p.mean:5.2f}  {100 * min(p.top1):5.2f}  "
            f"{100 * max(p.top1):5.2f}  {100 * p.std:5.2f}  {len(p.top1)}"
        )
    return "\n".join(lines)


def _write(base: Path, name: str, points: Sequence[SweepPoint]) -> None:
    """sensitivity.json (every run's top-1 per value) and sensitivity.png (mean, min-max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = {"sweep": name, "values": [{"value": p.label, "top1": list(p.top1)} for p in points]}
    (base / SWEEP_FILE).write_text(json.dumps(record, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(1.2 * len(points) + 2.5, 3.4))
    xs = range(len(points))
    means = [100 * p.mean for p in points]
    low = [m - 100 * min(p.top1) for m, p in zip(means, points, strict=True)]
    high = [100 * max(p.top1) - m for m, p in zip(means, points, strict=True)]
    ax.errorbar(xs, means, yerr=[low, high], fmt="o", capsize=4)
    ax.set_xticks(list(xs), [p.label for p in points])
    ax.set_xlabel(name)
    ax.set_ylabel("top-1 (%): mean, min-max")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(base / PLOT_FILE, dpi=100)
    plt.close(fig)
