"""Zhang & Wallace's sensitivity study: one field swept, each value cross-validated, resumable."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from cnnjax.train import sensitivity
from cnnjax.train.config import TrainConfig
from cnnjax.train.validation import ConfigError
from tests.test_text_run import _evals, _run, mr_data  # noqa: F401 (the fixture)


def test_values_are_parsed_per_field_and_bad_ones_are_one_line():
    assert sensitivity.parse_values("windows", "3;5; 3,4,5") == [(3,), (5,), (3, 4, 5)]
    assert sensitivity.parse_values("feature_maps", "10,50;100") == [10, 50, 100]
    assert sensitivity.parse_values("dropout", "0;0.5") == [0.0, 0.5]
    cases = [
        ("windows", "3", "at least two values"),
        ("feature_maps", "10;ten", "not all are valid values of feature_maps"),
        ("pooling", "max;max", "a value is repeated"),
        ("depth", "1;2", "--sweep=depth is not valid"),
    ]
    for name, text, message in cases:
        with pytest.raises(ConfigError, match=message):
            sensitivity.parse_values(name, text)


def test_every_run_of_every_value_is_checked_before_training():
    config = TrainConfig(model="textcnn", dataset="trec", recipe="kim2014", optimizer="adadelta")
    runs = sensitivity._runs(config.replace(seed=5), Path("w"))
    assert [r.seed for r in runs] == list(range(5, 15)) and runs[0].workdir == "w/seed_0"
    folds = sensitivity._runs(config.replace(dataset="mr"), Path("w"))
    assert [r.fold for r in folds] == list(range(10)) and folds[9].workdir == "w/fold_9"
    with pytest.raises(ConfigError, match="--activation=swish: use one of relu"):
        sensitivity.check_sweep(config, "activation", ["relu", "swish"])
    with pytest.raises(ConfigError, match="--pooling=kmax-0"):
        sensitivity.check_sweep(config, "pooling", ["max", "kmax-0"])
    with pytest.raises(ConfigError, match="not a text dataset"):
        sensitivity.check_sweep(TrainConfig(), "dropout", [0.1, 0.5])


@pytest.mark.slow
def test_sweep_cross_validates_each_value_and_resumes(mr_data, tmp_path, monkeypatch):  # noqa: F811
    # 20 runs of two shapes: a persistent XLA cache lets all but the first of each reuse its
    # compiled steps (on 2 shared cores compiling is most of a 1-epoch run).
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    workdir = tmp_path / "sweep"
    flags = ("--sweep=pooling", "--values=max;kmax-2", "--epochs=1", "--feature_maps=8")
    run = _run(*flags, f"--data_dir={mr_data}", f"--workdir={workdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((workdir / "sensitivity.json").read_text())
    assert record["sweep"] == "pooling" and [v["value"] for v in record["values"]] == [
        "max",
        "kmax-2",
    ]
    for entry in record["values"]:
        runs = [workdir / f"pooling={entry['value']}" / f"fold_{k}" for k in range(10)]
        # Each fold's reported score is its test-fold evaluation at the best dev evaluation.
        assert entry["top1"] == [_evals(r)[-1]["top1"] for r in runs]
        assert sum(_evals(r)[-1]["examples"] for r in runs) == 300  # every sentence once
        config = json.loads((runs[0] / "config.json").read_text())
        assert (config["pooling"], config["feature_maps"]) == (entry["value"], 8)
        top1 = np.array(entry["top1"]) * 100
        row = f"{entry['value']:<7}  {top1.mean():5.2f}  {top1.min():5.2f}  {top1.max():5.2f}  "
        assert row + f"{statistics.stdev(top1):5.2f}  10" in run.stdout
    # k-max pooling keeps 2 values a map: the classifier reads 3 windows × 8 maps × 2.
    from cnnjax import checkpoint

    _, variables, _ = checkpoint.load(workdir / "pooling=kmax-2" / "fold_0")
    assert variables["params"]["fc"]["kernel"].shape == (48, 2)
    assert (workdir / "sensitivity.png").stat().st_size > 0
    again = _run(*flags, f"--data_dir={mr_data}", f"--workdir={workdir}")
    assert again.returncode == 0 and again.stdout == run.stdout, again.stderr[-3000:]
    bad = _run("--sweep=activation", "--values=relu;swish", f"--workdir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "--activation=swish: use one of" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


def test_a_sweep_or_cv_that_cannot_start_leaves_no_folder(tmp_path):
    for flags in (("--sweep=dropout", "--values=0.3;0.5"), ("--cv",)):
        run = _run(*flags, f"--data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'w'}")
        assert run.returncode == 2 and "dataset 'mr' is not prepared" in run.stderr
        assert "Traceback" not in run.stderr and not (tmp_path / "w").exists()
