"""k-fold cross-validation of a text run, as Kim (2014) scored the sets without a test split.

`run_folds(config)` trains one run per fold, each in WORKDIR/fold_K (so each one resumes on its
own: rerun the same command after an interruption), and reports the mean ± standard deviation
of the folds' test-fold accuracy: with a dev set (`--dev_fraction`, Kim's recipe) the score at
the best dev evaluation, else the final evaluation; never the best test-fold evaluation, which
would select on the test fold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
from collections.abc import Iterator
from pathlib import Path

from cnnjax import data as cdata
from cnnjax.train.config import TrainConfig

CV_FILE = "cv.json"


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """Each fold's final top-1 on its held-out fold, and their mean and standard deviation."""

    workdir: str
    fold_top1: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.fold_top1)

    @property
    def std(self) -> float:
        """Sample standard deviation over the folds (n - 1 in the denominator)."""
        return statistics.stdev(self.fold_top1) if len(self.fold_top1) > 1 else 0.0

    def summary(self) -> str:
        folds = ", ".join(f"{100 * t:.1f}" for t in self.fold_top1)
        return (
            f"{len(self.fold_top1)}-fold CV: top-1 {100 * self.mean:.2f}% ± {100 * self.std:.2f}% "
            f"(folds: {folds}); runs and {CV_FILE} in {self.workdir}"
        )


def check_cv(config: TrainConfig) -> int:
    """The number of folds of the run's dataset; a dataset with a test split, or --fold, raise."""
    folds = cdata.dataset_info(config.dataset).cv_folds
    if not folds:
        raise ValueError(f"--cv: {config.dataset} has a test split; drop --cv")
    if config.fold is not None:
        raise ValueError("--cv runs every fold: drop --fold")
    return folds


@contextlib.contextmanager
def leaving_nothing_on_failure(base: Path) -> Iterator[None]:
    """Remove the empty folders under `base` (and `base`, if new) when the body raises."""
    fresh = not base.exists()
    try:
        yield
    except BaseException:
        for folder in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if fresh and base.is_dir() and not any(base.iterdir()):
            base.rmdir()
        raise


def run_folds(config: TrainConfig, *, allow_config_change: bool = False) -> CrossValidation:
    """Train every fold into WORKDIR/fold_K in turn; write WORKDIR/cv.json; return the result."""
    from cnnjax.train.runner import default_workdir, train_and_evaluate

    folds = check_cv(config)
    base = Path(config.workdir or default_workdir(config))
    scores = []
    with leaving_nothing_on_failure(base):
        for fold in range(folds):
            result = train_and_evaluate(
                config.replace(fold=fold, workdir=str(base / f"fold_{fold}")),
                allow_config_change=allow_config_change,
            )
            if result.preempted or result.final_eval is None:
                raise ValueError(
                    f"fold {fold} stopped before its final evaluation; run the same command to "
                    "resume"
                )
            scores.append(result.final_eval["top1"])
    outcome = CrossValidation(str(base), tuple(scores))
    (base / CV_FILE).write_text(
        json.dumps({"folds": list(scores), "mean": outcome.mean, "std": outcome.std}, indent=1)
        + "\n"
    )
    return outcome
