"""What a run reports from its evaluations: metrics.jsonl on resume, Kim's dev-set selection."""

from __future__ import annotations

import json

from cnnjax.train.logger import RunLogger, read_metrics
from cnnjax.train.runner import DEV, EVAL, Scores


def test_a_resumed_logger_drops_the_events_after_its_start_step(tmp_path):
    logger = RunLogger(tmp_path)
    for step in range(1, 7):
        logger.log("train", step, step / 2, {"loss": 1.0 / step})
        if step % 2 == 0:
            logger.log("eval", step, step / 2, {"top1": step / 10})
    logger.close()
    assert len(read_metrics(logger.metrics_path)) == 9
    resumed = RunLogger(tmp_path, start_step=4)  # the checkpoint the run resumes from
    kept = read_metrics(resumed.metrics_path)
    assert [(e["split"], e["step"]) for e in kept] == [
        ("train", 1),
        ("train", 2),
        ("eval", 2),
        ("train", 3),
        ("train", 4),
        ("eval", 4),
    ]
    resumed.log("train", 5, 2.5, {"loss": 0.5})
    resumed.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 2, 3, 4, 4, 5]
    assert not list(tmp_path.glob("*.tmp"))


def _event(split: str, step: int, top1: float) -> dict:
    return {"split": split, "step": step, "top1": top1}


def test_dev_selection_reports_the_test_score_at_the_best_dev_score():
    # Dev top-1 by evaluation: 0.6, 0.7, 0.7 (a tie: selected, no progress), 0.65, 0.5. The runner
    # scores the test split right after each selected one (steps 10, 20, 30).
    events = [
        _event(DEV, 10, 0.6),
        _event(EVAL, 10, 0.55),
        _event(DEV, 20, 0.7),
        _event(EVAL, 20, 0.66),
        _event(DEV, 30, 0.7),
        _event(EVAL, 30, 0.64),
        _event(DEV, 40, 0.65),
        _event(DEV, 50, 0.5),
    ]
    scores = Scores.from_events(events, with_dev=True)
    assert scores.best_dev["step"] == 30 and scores.latest["step"] == 30
    assert scores.best_top1 == 0.64  # the selected test score, not the best one (0.66)
    assert scores.evals_since_best == 3  # since the last strict gain, at step 20
    assert scores.patience_spent(3) and not scores.patience_spent(4)
    assert not scores.patience_spent(0)  # 0: no early stopping
    assert scores.improves({"top1": 0.7}) and not scores.improves({"top1": 0.69})
    plain = Scores.from_events([e for e in events if e["split"] == EVAL], with_dev=False)
    assert plain.best_top1 == 0.66 and plain.latest["step"] == 30
    assert not plain.patience_spent(1)  # no dev set: nothing to stop on
