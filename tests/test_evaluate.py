"""cnnjax.evaluate: ensemble metrics on hand-made probabilities, crop averaging, label-order and
member checks, and `python -m cnnjax.evaluate` end to end on two tiny `fake` runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import linen as nn

from cnnjax import evaluate as ev
from cnnjax.checkpoint import checkpoint_dir
from cnnjax.data import LoaderConfigError
from cnnjax.train.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
STEPS = 4  # a few steps leave the fake-data nets far from 100%, so the numbers differ


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNJAX_")}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return env


def _evaluate_cli(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnjax.evaluate", *flags],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two LeNet-5 runs on fake data (seeds 1 and 2, the second at 36×36 input) and a copy."""
    root = tmp_path_factory.mktemp("runs")
    specs = {"a": ["--seed=1"], "b": ["--seed=2", "--image_size=36"]}
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.fake",
                "--model=lenet5",
                f"--max_steps={STEPS}",
                "--batch_size=32",
                f"--workdir={root / name}",
                *flags,
            ],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, flags in specs.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"fake run {name} failed: {err[-2000:]}"
    shutil.copytree(root / "a", root / "a_copy")
    return {"a": root / "a", "b": root / "b", "a_copy": root / "a_copy"}


# Hand-made ensemble: 4 examples, 6 classes, two members (rows sum to 1).
LABELS = np.array([0, 5, 3, 4])
MEMBER_1 = np.array(
    [
        [0.40, 0.45, 0.05, 0.05, 0.05, 0.00],  # label 0 second: top-1 wrong, top-5 right
        [0.30, 0.25, 0.20, 0.15, 0.10, 0.00],  # label 5 last: top-1 and top-5 wrong
        [0.10, 0.10, 0.10, 0.60, 0.10, 0.00],  # right
        [0.20, 0.20, 0.20, 0.20, 0.20, 0.00],  # 5-way tie; lower indices first: label 4 5th
    ],
    np.float32,
)
MEMBER_2 = np.array(
    [
        [0.40, 0.00, 0.45, 0.05, 0.05, 0.05],  # label 0 second: top-1 wrong, top-5 right
        [0.00, 0.10, 0.10, 0.10, 0.10, 0.60],  # right
        [0.00, 0.00, 0.90, 0.10, 0.00, 0.00],  # label 3 second
        [0.20, 0.20, 0.20, 0.20, 0.20, 0.00],  # the same tie
    ],
    np.float32,
)


def test_ensemble_is_right_where_each_member_is_wrong():
    # Example 0 (AlexNet-style): each member prefers another wrong class (0.45 vs 0.40); their
    # mean is (0.40, 0.225, 0.25, 0.05, 0.05, 0.025), which ranks the label first.
    # Example 1: mean (0.15, 0.175, 0.15, 0.125, 0.10, 0.30), label 5 first.
    # Example 2: mean (0.05, 0.05, 0.50, 0.35, 0.05, 0), label 3 second.
    # Example 3: the tie is kept, label 4 fifth.
    m1 = ev.ensemble_metrics([MEMBER_1], LABELS)
    m2 = ev.ensemble_metrics([MEMBER_2], LABELS)
    both = ev.ensemble_metrics([MEMBER_1, MEMBER_2], LABELS)
    assert (m1["top1"], m1["top5"]) == (1 / 4, 3 / 4)
    assert (m2["top1"], m2["top5"]) == (1 / 4, 4 / 4)
    assert (both["top1"], both["top5"]) == (2 / 4, 4 / 4)
    assert both["examples"] == 4
    expected_nll = -(math.log(0.40) + math.log(0.30) + math.log(0.35) + math.log(0.20)) / 4
    assert both["nll"] == pytest.approx(expected_nll, rel=1e-6)
    expected_m1_nll = -(math.log(0.40) + math.log(1e-12) + math.log(0.60) + math.log(0.20)) / 4
    assert m1["nll"] == pytest.approx(expected_m1_nll, rel=1e-6)  # p = 0 costs -log(1e-12)


def test_ensemble_of_identical_members_is_exactly_the_member():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=50).astype(np.float32)
    labels = rng.integers(0, 7, size=50)
    assert ev.ensemble_metrics([probs, probs], labels) == ev.ensemble_metrics([probs], labels)
    np.testing.assert_array_equal(ev.ensemble_probabilities([probs, probs.copy()]), probs)


def test_ensemble_metrics_rejects_bad_input():
    with pytest.raises(ev.EnsembleMismatchError, match="differ in shape"):
        ev.ensemble_metrics([MEMBER_1, MEMBER_1[:3]], LABELS)
    with pytest.raises(ValueError, match="average 10-crop views"):
        ev.ensemble_metrics([np.ones((4, 10, 6)) / 6], LABELS)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
        ev.ensemble_metrics([MEMBER_1], np.array([0, 1, 2, 6]))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        ev.ensemble_metrics([MEMBER_1], LABELS[:3])
    with pytest.raises(ValueError, match="at least one"):
        ev.ensemble_metrics([], LABELS)


class _ChannelMeans(nn.Module):
    """Logits = each channel's mean over the image: a parameter-free model to check by hand."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return x.mean(axis=(1, 2))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_predict_probabilities_averages_the_softmax_over_crops():
    images = np.random.default_rng(1).normal(size=(2, 10, 3, 3, 4)).astype(np.float32)
    got = np.asarray(ev.predict_probabilities(_ChannelMeans(), {}, images))
    per_crop = _softmax(images.astype(np.float64).mean(axis=(2, 3)))  # (2, 10, 4)
    np.testing.assert_allclose(got, per_crop.mean(axis=1), rtol=1e-5)
    # Averaging probabilities is not averaging logits: the two differ on these crops.
    assert not np.allclose(got, _softmax(images.mean(axis=(1, 2, 3))), rtol=1e-3)
    single = np.asarray(ev.predict_probabilities(_ChannelMeans(), {}, images[:, 0]))
    np.testing.assert_allclose(single, per_crop[:, 0], rtol=1e-5)
    # 10-crop member means, then the ensemble mean: equal to one flat mean over all 20 views.
    other = images[::-1]
    second = np.asarray(ev.predict_probabilities(_ChannelMeans(), {}, other))
    flat = np.concatenate([per_crop, _softmax(other.astype(np.float64).mean(axis=(2, 3)))], 1)
    ensemble = ev.ensemble_probabilities([got, second])
    np.testing.assert_allclose(ensemble, flat.mean(axis=1), rtol=1e-5)


def _batches(labels: list[list[int]], masks: list[list[bool]]) -> list[dict]:
    """Eval-style batches whose images are one-hot 'probabilities' of a fixed class 2."""
    out = []
    for batch_labels, mask in zip(labels, masks, strict=True):
        images = np.zeros((len(batch_labels), 3), np.float32)
        images[:, 2] = 1.0
        out.append({"image": images, "label": np.array(batch_labels), "mask": np.array(mask)})
    return out


def test_batch_probabilities_keeps_only_masked_examples_and_checks_the_order():
    batches = _batches([[1, 2], [0, 2]], [[True, True], [True, False]])  # last row is padding
    probs, labels = ev.batch_probabilities(lambda x: x, batches)
    np.testing.assert_array_equal(labels, [1, 2, 0])
    assert probs.shape == (3, 3)
    same, _ = ev.batch_probabilities(lambda x: x, batches, expected_labels=labels)
    np.testing.assert_array_equal(same, probs)
    reordered = _batches([[1, 2], [2, 0]], [[True, True], [True, False]])
    with pytest.raises(ev.EnsembleMismatchError, match="eval batch 1") as info:
        ev.batch_probabilities(lambda x: x, reordered, expected_labels=labels, name="run-b")
    assert "run-b" in str(info.value) and "\n" not in str(info.value)
    shorter = _batches([[1, 2]], [[True, True]])
    with pytest.raises(ev.EnsembleMismatchError, match="scored 2 examples"):
        ev.batch_probabilities(lambda x: x, shorter, expected_labels=labels)


def test_members_must_share_dataset_and_classes():
    base = TrainConfig(model="lenet5", dataset="fake", num_classes=10)
    ev.check_members(["a", "b"], [base, base.replace(model="small_convnet", image_size=28)])
    with pytest.raises(ev.EnsembleMismatchError, match="num_classes: a has 10, b has 5"):
        ev.check_members(["a", "b"], [base, base.replace(num_classes=5)])
    with pytest.raises(ev.EnsembleMismatchError, match="dataset: a has 'fake', c has 'mnist'"):
        ev.check_members(["a", "b", "c"], [base, base, base.replace(dataset="mnist")])


def test_cli_ensemble_of_two_runs_matches_the_library(runs, tmp_path):
    out = tmp_path / "report.json"
    done = _evaluate_cli(f"--workdir={runs['a']}", f"--workdir={runs['b']}", f"--out={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {k: report[k] for k in ("dataset", "split", "crops", "examples", "num_classes")} == {
        "dataset": "fake",
        "split": "test",
        "crops": 1,
        "examples": 2000,  # every fake test example once (the last batch is padded)
        "num_classes": 10,
    }
    assert [m["image_size"] for m in report["members"]] == [32, 36]
    assert [m["step"] for m in report["members"]] == [STEPS, STEPS]
    assert report["ensemble"]["size"] == 2

    probs_a, labels = ev.member_probabilities(runs["a"])
    probs_b, labels_b = ev.member_probabilities(runs["b"], expected_labels=labels)
    np.testing.assert_array_equal(labels_b, labels)
    expected = ev.ensemble_metrics([probs_a, probs_b], labels)
    for key in ("top1", "top5", "examples"):
        assert report["ensemble"][key] == expected[key]
        assert report["members"][0][key] == ev.ensemble_metrics([probs_a], labels)[key]
    assert report["ensemble"]["nll"] == pytest.approx(expected["nll"], rel=1e-6)
    assert len({report["members"][0]["nll"], report["members"][1]["nll"], expected["nll"]}) == 3

    # The training loop's own final eval (a separate code path) scored the same checkpoint.
    events = [json.loads(line) for line in (runs["a"] / "metrics.jsonl").read_text().splitlines()]
    final = [e for e in events if e["split"] == "eval"][-1]
    assert report["members"][0]["top1"] == pytest.approx(final["top1"], abs=1e-9)
    assert report["members"][0]["top5"] == pytest.approx(final["top5"], abs=1e-9)
    assert report["members"][0]["nll"] == pytest.approx(final["loss"], rel=1e-4)

    table = done.stdout.splitlines()
    assert table[0] == "fake/test, 1 crop, 2000 examples"
    assert table[1].split()[:4] == ["member", "model", "step", "size"]
    assert table[2].split()[:4] == ["1", "lenet5", str(STEPS), "32"]
    assert table[3].split()[:4] == ["2", "lenet5", str(STEPS), "36"]
    assert table[4].startswith("ensemble of 2")
    assert f"{100 * expected['top5']:.2f}%" in table[4]


def test_ensemble_of_two_identical_checkpoints_equals_the_single_one(runs):
    single = ev.evaluate([runs["a"]])
    pair = ev.evaluate([runs["a"], runs["a_copy"]])
    metrics = ("top1", "top5", "nll", "examples")
    member = {k: single["members"][0][k] for k in metrics}
    assert {k: single["ensemble"][k] for k in metrics} == member
    assert {k: pair["ensemble"][k] for k in metrics} == member  # exactly the same numbers
    assert {k: pair["members"][1][k] for k in metrics} == member


def test_cli_mismatched_members_fail_in_one_line(runs, tmp_path):
    other = tmp_path / "other_classes"
    shutil.copytree(runs["a"], other)
    metadata = checkpoint_dir(other) / str(STEPS) / "config" / "metadata"
    config = json.loads(metadata.read_text())
    metadata.write_text(json.dumps({**config, "num_classes": 5}))  # as a 5-class run stores it
    done = _evaluate_cli(f"--workdir={runs['a']}", f"--workdir={other}")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"error: ensemble members disagree on num_classes: {runs['a']} has 10, {other} has 5; "
        "pass runs of the same dataset and classes"
    ]
    assert "Traceback" not in done.stderr


def test_user_mistakes_are_clear_errors(runs, tmp_path):
    with pytest.raises(LoaderConfigError, match="drop --ten_crop"):
        ev.member_probabilities(runs["a"], ten_crop=True)  # fake data has no 10-crop view
    with pytest.raises(ValueError, match=f"no checkpoint at step 7; available: {STEPS}"):
        ev.checkpoint_step(runs["a"], 7)
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        ev.checkpoint_step(tmp_path)
    with pytest.raises(ValueError, match="one --step for all members or one per --workdir"):
        ev.evaluate([runs["a"], runs["b"]], steps=[STEPS, STEPS, STEPS])
    with pytest.raises(ValueError, match="at least one --workdir"):
        ev.evaluate([])


def test_cli_damaged_checkpoint_is_one_line_naming_the_step(runs, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["a"], damaged)
    state = checkpoint_dir(damaged) / str(STEPS) / "state"
    largest = max((p for p in state.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])  # truncated
    done = _evaluate_cli(f"--workdir={damaged}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"error: checkpoint {STEPS} in {checkpoint_dir(damaged)} is damaged ("
    )
    assert errors[0].endswith("; no other checkpoint is intact")
