"""Kim's CNN trained end to end by the one runner: MR-format data, the kim2014 recipe, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnjax.checkpoint
from cnnjax import data
from cnnjax.data.text import write_rt_polarity

REPO = Path(__file__).resolve().parent.parent
POSITIVE = ["superb", "moving", "delightful", "brilliant", "charming"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "awful"]
FILLER = ["the", "film", "is", "a", "story", "with", "acting", "and", "plot", "scenes"]


def _sentences(words: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Sentences of 6-12 filler words with one cue word of the class at a random place."""
    out = []
    for _ in range(count):
        tokens = list(rng.choice(FILLER, size=int(rng.integers(6, 13))))
        tokens.insert(int(rng.integers(0, len(tokens) + 1)), str(rng.choice(words)))
        out.append(" ".join(tokens) + " .")
    return out


@pytest.fixture(scope="module")
def mr_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mr")
    rng = np.random.default_rng(0)
    write_rt_polarity(
        root / "manual", _sentences(POSITIVE, 150, rng), _sentences(NEGATIVE, 150, rng)
    )
    data.prepare("mr", data_dir=root / "data", manual_dir=root / "manual")
    return root / "data"


def _run(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.mr", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _evals(workdir: Path, split: str = "eval") -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


@pytest.mark.slow
def test_kim_cnn_learns_a_synthetic_sentence_task_with_max_norm(mr_data, tmp_path):
    workdir = tmp_path / "run"
    run = _run("--fold=3", "--epochs=6", f"--data_dir={mr_data}", f"--workdir={workdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    config = json.loads((workdir / "config.json").read_text())
    assert (config["optimizer"], config["batch_size"], config["max_norm"]) == ("adadelta", 50, 3.0)
    assert _evals(workdir)[-1]["top1"] >= 0.95  # the held-out fold 3: 30 sentences
    model, variables, _ = cnnjax.checkpoint.load(workdir)
    kernel = np.asarray(variables["params"]["fc"]["kernel"])
    assert np.linalg.norm(kernel, axis=0).max() <= 3.0 * (1 + 1e-6)
    text = json.loads((workdir / "text.json").read_text())
    assert variables["params"]["embedding"].shape == (len(text["vocabulary"]["tokens"]) + 2, 300)
    ids = np.zeros((2, text["max_length"]), np.int32)
    assert model.apply(variables, ids, train=False).shape == (2, 2)


def test_text_flags_are_checked_in_one_line(mr_data, tmp_path):
    cases = [
        ((), "mr has no test split: pass --fold=0 ... 9"),
        (("--fold=0", "--model=resnet18"), "--model=resnet18 takes images, but mr is a text"),
        (("--fold=0", "--variant=static"), "--variant=static starts from pretrained vectors"),
        (("--fold=10",), "--fold=10 is out of range"),
    ]
    for flags, message in cases:
        run = _run(*flags, f"--data_dir={mr_data}", f"--workdir={tmp_path / 'w'}")
        assert run.returncode == 2 and message in run.stderr, run.stderr[-2000:]
        assert "Traceback" not in run.stderr and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_cv_runs_every_fold_and_reports_mean_and_std(mr_data, tmp_path):
    import statistics

    from cnnjax.data.text import cv_folds

    run = _run("--cv", "--epochs=2", f"--data_dir={mr_data}", f"--workdir={tmp_path / 'cv'}")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    finals = [_evals(tmp_path / "cv" / f"fold_{k}")[-1] for k in range(10)]
    assert report["folds"] == [f["top1"] for f in finals]
    assert report["mean"] == pytest.approx(statistics.fmean(report["folds"]))
    assert report["std"] == pytest.approx(statistics.stdev(report["folds"]))
    # Each fold was tested on its own held-out tenth: together, every sentence exactly once.
    assert sum(f["examples"] for f in finals) == 300
    assert sorted(np.bincount(cv_folds(300))) == [30] * 10
    assert "10-fold CV: top-1" in run.stdout
    again = _run("--cv", "--fold=2", f"--data_dir={mr_data}", f"--workdir={tmp_path / 'x'}")
    assert again.returncode == 2 and "--cv runs every fold: drop --fold" in again.stderr


@pytest.mark.slow
def test_early_stopping_scores_the_test_fold_at_the_best_dev_evaluation(mr_data, tmp_path):
    workdir = tmp_path / "run"
    flags = ("--fold=3", "--epochs=12", "--eval_every_epochs=0.5", "--early_stopping_patience=2")
    run = _run(*flags, f"--data_dir={mr_data}", f"--workdir={workdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((workdir / "config.json").read_text())["dev_fraction"] == 0.1  # the recipe
    # 270 training sentences: 27 held out, 243 left, 4 steps of 50 an epoch; evaluations every 2.
    dev, test = _evals(workdir, "dev"), _evals(workdir)
    assert {d["examples"] for d in dev} == {27} and {t["examples"] for t in test} == {30}
    assert [d["step"] for d in dev] == list(range(2, 2 * len(dev) + 1, 2))
    # Replay Kim's selection on the logged dev scores: the test fold is scored at every dev
    # score at least as good as all before; the run stops 2 evaluations after the last gain.
    best, since, selected = -1.0, 0, []
    for d in dev:
        since = 0 if d["top1"] > best else since + 1
        if d["top1"] >= best:
            best, selected = d["top1"], [*selected, d["step"]]
        if since >= 2:
            break
    assert since >= 2 and d is dev[-1] and d["step"] < 48, "stopped early, after the last eval"
    assert [t["step"] for t in test] == selected
    assert (
        f"test top-1 at the best dev top-1 ({100 * best:.2f}%) {100 * test[-1]['top1']:.2f}%"
        in (run.stdout)
    )
    assert "stopped early" in run.stdout
    again = _run(*flags, f"--data_dir={mr_data}", f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _evals(workdir, "dev") == dev and "stopped early" in again.stdout
    assert f"{100 * test[-1]['top1']:.2f}%" in again.stdout
