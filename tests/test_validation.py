"""Flag validation: every bad value is one line naming the flag, its value and the valid range."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnjax.train import validation
from cnnjax.train.config import TrainConfig
from cnnjax.train.recipes import RECIPES, build_config
from cnnjax.train.validation import ConfigError, check_workdir, validate_config

REPO = Path(__file__).resolve().parent.parent
GiB = 2**30


@pytest.fixture(autouse=True)
def _known_machine(monkeypatch):
    """8 GiB, 2 cores, one process: memory limits below are computed for this machine."""
    monkeypatch.setattr(validation, "physical_memory_bytes", lambda: 8 * GiB)
    monkeypatch.setattr(validation, "available_cores", lambda: 2)
    for variable in ("CNNJAX_NUM_PROCESSES", "SLURM_NTASKS"):
        monkeypatch.delenv(variable, raising=False)


def _error(**changes) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(TrainConfig(**changes))
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "changes,flag,requirement",
    [
        (dict(max_steps=0), "--max_steps=0", "max_steps must be an integer >= 1"),
        (dict(epochs=0.0), "--epochs=0.0", "epochs must be finite and > 0"),
        (dict(epochs=-1.0), "--epochs=-1.0", "epochs must be finite and > 0"),
        (dict(momentum=2.0), "--momentum=2.0", "momentum must be in [0, 1)"),
        (dict(momentum=1.0), "--momentum=1.0", "momentum must be in [0, 1)"),
        (dict(label_smoothing=1.5), "--label_smoothing=1.5", "label_smoothing must be in [0, 1)"),
        (dict(eval_every_epochs=0.0), "--eval_every_epochs=0.0", "must be finite and > 0"),
        (dict(keep_checkpoints=0), "--keep_checkpoints=0", "must be an integer >= 1"),
        (dict(lr=-0.1), "--lr=-0.1", "lr must be finite and > 0"),
        (dict(lr=math.nan), "--lr=nan", "lr must be finite and > 0"),
        (dict(weight_decay=math.inf), "--weight_decay=inf", "must be finite and >= 0"),
        (dict(weight_decay=-1e-4), "--weight_decay=-0.0001", "must be finite and >= 0"),
        (dict(batch_size=0), "--batch_size=0", "batch_size must be an integer >= 1"),
        (dict(batch_size=1.5), "--batch_size=1.5", "batch_size must be an integer >= 1"),
        (dict(checkpoint_every_steps=0), "--checkpoint_every_steps=0", "an integer >= 1"),
        (dict(log_every_steps=0), "--log_every_steps=0", "an integer >= 1"),
        (dict(lr_decay_factor=0.0), "--lr_decay_factor=0.0", "must be in (0, 1]"),
        (dict(lr_decay_factor=10.0), "--lr_decay_factor=10.0", "must be in (0, 1]"),
        (dict(warmup_epochs=-0.5), "--warmup_epochs=-0.5", "must be finite and >= 0"),
        (dict(plateau_patience=0), "--plateau_patience=0", "an integer >= 1"),
        (dict(seed=-1), "--seed=-1", "seed must be an integer in [0, 2**32)"),
        (dict(seed=2**32), f"--seed={2**32}", "seed must be an integer in [0, 2**32)"),
        (dict(workers=-1), "--workers=-1", "workers must be an integer >= 0"),
        (dict(image_size=0), "--image_size=0", "image_size must be an integer >= 1"),
        (dict(num_classes=1, dataset="fake"), "--num_classes=1", "an integer >= 2"),
        (
            dict(num_classes=5, dataset="cifar10"),
            "--num_classes=5",
            "num_classes must be 10 (cifar10's classes) without --init_from, or unset",
        ),
        (
            dict(num_classes=1000, dataset="fashion_mnist"),
            "--num_classes=1000",
            "num_classes must be 10 (fashion_mnist's classes) without --init_from",
        ),
        (
            dict(lr_decay_epochs=(60.0, 30.0)),
            "--lr_decay_epochs=60.0,30.0",
            "strictly increasing finite numbers > 0",
        ),
        (dict(lr_decay_epochs=(0.0, 30.0)), "--lr_decay_epochs=0.0,30.0", "numbers > 0"),
        (dict(lr_decay_epochs=(math.nan,)), "--lr_decay_epochs=nan", "finite numbers > 0"),
        (
            dict(lr_decay_steps=(32000, 32000)),
            "--lr_decay_steps=32000,32000",
            "strictly increasing integers >= 1",
        ),
        (dict(lr_decay_steps=(0, 100)), "--lr_decay_steps=0,100", "integers >= 1"),
        (dict(lr_schedule="linear"), "--lr_schedule=linear", "one of 'constant', 'step'"),
        (dict(image_size=20), "--image_size=20", "an integer in [28, 4096] for fashion_mnist"),
        (dict(image_size=28, dataset="cifar10"), "--image_size=28", "image_size must be 32"),
        (
            dict(image_size=5000, dataset="imagenet2012", batch_size=1),
            "--image_size=5000",
            "image_size must be an integer in [1, 4096]",
        ),
    ],
)
def test_a_bad_value_names_its_flag_and_the_valid_range(changes, flag, requirement):
    message = _error(**changes)
    assert message.startswith(f"{flag} is ")
    assert requirement in message


def test_image_size_is_bounded_by_the_memory_of_the_buffered_batches():
    # lenet5 takes 1 channel; 2 cores: a prefetch buffer of 2 batches plus the one in the step.
    message = _error(dataset="fake", model="lenet5", image_size=100_000, batch_size=128)
    largest = math.isqrt(8 * GiB // (3 * 128 * 1 * 4))  # 2,364
    assert message.startswith("--image_size=100000 is out of range: ")
    assert f"image_size must be an integer in [1, {largest}] at --batch_size=128" in message
    need = 3 * 128 * 100_000**2 * 4 / GiB
    assert f"need {need:,.1f} GiB, more than this machine's 8.0 GiB" in message
    validate_config(TrainConfig(dataset="fake", model="lenet5", image_size=largest))


def test_worker_processes_buffer_batches_each_and_bfloat16_halves_them():
    # 4 workers × (1 thread, a buffer of 2) + 1 batches of 3-channel CIFAR images at 2 bytes.
    message = _error(dataset="fake", model="resnet20", image_size=4000, workers=4, dtype="bfloat16")
    assert f"[1, {math.isqrt(8 * GiB // (9 * 128 * 3 * 2))}]" in message


def test_a_batch_too_large_for_memory_names_batch_size():
    side, per_batch = 32, 3 * 32 * 32 * 4  # cifar10: 3 buffered batches of float32 32×32×3
    largest = 8 * GiB // (3 * per_batch)
    message = _error(dataset="cifar10", model="resnet20", batch_size=largest + 1)
    assert message.startswith(f"--batch_size={largest + 1} is out of range: ")
    assert f"batch_size must be an integer in [1, {largest}]" in message
    assert f"of {largest + 1} {side}×{side} images" in message
    validate_config(TrainConfig(dataset="cifar10", model="resnet20", batch_size=largest))


def test_a_batch_too_large_at_an_explicit_side_names_batch_size():
    largest = 8 * GiB // (3 * 3 * 32 * 32 * 4)  # cifar10 at its only side, 32
    message = _error(dataset="cifar10", image_size=32, batch_size=largest + 1)
    assert message.startswith(f"--batch_size={largest + 1} is out of range: ")
    assert f"[1, {largest}]" in message


def test_a_bad_image_size_does_not_hide_a_bad_num_classes():
    message = _error(dataset="cifar10", image_size=28, num_classes=5)
    flags = [part.split("=")[0] for part in message.split("; ")]
    assert flags == ["--image_size", "--num_classes"]


def test_the_memory_check_is_per_process(monkeypatch):
    batch = 2 * (8 * GiB // (3 * 3 * 32 * 32 * 4))  # twice what one process can hold
    config = TrainConfig(dataset="cifar10", model="resnet20", batch_size=batch)
    with pytest.raises(ConfigError, match="--batch_size"):
        validate_config(config, processes=1)
    validate_config(config, processes=2)
    monkeypatch.setenv("CNNJAX_NUM_PROCESSES", "2")
    validate_config(config)


def test_unknown_memory_skips_the_memory_check(monkeypatch):
    monkeypatch.setattr(validation, "physical_memory_bytes", lambda: None)
    validate_config(TrainConfig(dataset="fake", image_size=4096, batch_size=10**6))


def test_every_bad_value_is_listed_in_flag_order_on_one_line():
    message = _error(momentum=2.0, lr=-1.0, batch_size=0, log_every_steps=0)
    flags = [part.split("=")[0] for part in message.split("; ")]
    assert flags == ["--batch_size", "--lr", "--momentum", "--log_every_steps"]


@pytest.mark.parametrize(
    "changes",
    [
        dict(),
        dict(momentum=0.0, label_smoothing=0.0, weight_decay=0.0, warmup_epochs=0.0),
        dict(lr_decay_factor=1.0, seed=2**32 - 1, workers=0, max_steps=1, epochs=0.01),
        dict(max_steps=None, num_classes=None, image_size=None),
        dict(dataset="cifar10", num_classes=10),
        dict(dataset="cifar10", num_classes=5, init_from="runs/other"),
        dict(dataset="fake", num_classes=7),
        dict(dataset="fake", num_classes=2, image_size=1),
        dict(image_size=28),
        dict(lr_schedule="step", lr_decay_epochs=(0.5, 30.0, 60.0)),
        dict(lr_schedule="step", lr_decay_steps=(1, 32000, 48000)),
        dict(dtype="bfloat16", lr_scaling="linear", decay_mode="decoupled", freeze="backbone"),
    ],
)
def test_valid_values_pass(changes):
    validate_config(TrainConfig(**changes))


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize(
    "dataset,model",
    [
        ("fashion_mnist", "lenet5"),
        ("cifar10", "resnet110"),
        ("cifar100", "densenet121"),
        ("imagenet2012", "resnet50"),
        ("imagenette", "googlenet"),
        ("fake", "lenet5"),
    ],
)
def test_every_recipe_passes(recipe, dataset, model):
    validate_config(build_config(TrainConfig(dataset=dataset, model=model), {}, recipe))


def test_every_numeric_field_has_a_range():
    numeric = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if any(kind in str(f.type) for kind in ("int", "float"))
    }
    per_channel = {"mean", "std"}  # checked against the image channels instead
    windows = {"windows"}  # distinct sizes >= 1: checked with the other text flags
    assert numeric == set(validation.RANGES) | set(validation.BOUNDARIES) | per_channel | windows
    with pytest.raises(validation.ConfigError, match="--windows=3,3: give distinct window sizes"):
        validation.validate_config(
            TrainConfig(model="textcnn", dataset="trec", windows=(3, 3)), processes=1
        )


def test_the_choices_are_the_optimizer_s():
    from cnnjax.train.optim import SCHEDULES

    assert validation._CHOICES["lr_schedule"] == SCHEDULES


def test_a_bad_list_element_names_the_flag():
    from experiments.common import _parse_numbers

    with pytest.raises(ConfigError, match=r"^--lr_decay_epochs=30,abc is not valid: .*numbers"):
        _parse_numbers("lr_decay_epochs", ["30", "abc"], float)
    with pytest.raises(ConfigError, match=r"^--lr_decay_steps=3\.5e4 is not valid: .*integers"):
        _parse_numbers("lr_decay_steps", ["3.5e4"], int)
    assert _parse_numbers("lr_decay_steps", ["32000", "48000"], int) == (32000, 48000)


def test_a_new_or_existing_writable_workdir_passes_and_nothing_is_created(tmp_path):
    check_workdir(str(tmp_path))
    check_workdir(str(tmp_path / "a" / "b" / "run"))
    assert list(tmp_path.iterdir()) == []


def test_a_workdir_that_is_a_file_or_under_one_is_refused(tmp_path):
    regular = tmp_path / "notes.txt"
    regular.write_text("")
    name = re.escape(str(regular))
    with pytest.raises(ConfigError, match=rf"^--workdir={name} cannot be used: it is a file"):
        check_workdir(str(regular))
    with pytest.raises(ConfigError, match=rf"^--workdir={name}/run .*: {name} is a file"):
        check_workdir(str(regular / "run"))


def test_a_workdir_in_a_directory_without_write_access_is_refused(tmp_path, monkeypatch):
    # Root ignores permission bits, so the missing access is simulated for this one directory.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    denied = rf": {re.escape(str(tmp_path))} is a directory this user cannot write"
    with pytest.raises(ConfigError, match=denied):
        check_workdir(str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="it is a directory this user cannot write"):
        check_workdir(str(tmp_path))


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="/proc/sys is writable here")
def test_a_workdir_on_a_read_only_file_system_is_refused():
    with pytest.raises(ConfigError, match="/proc/sys is a directory this user cannot write"):
        check_workdir("/proc/sys/cnnjax-run")


def test_an_empty_workdir_is_refused():
    with pytest.raises(ConfigError, match="^--workdir= is empty"):
        check_workdir("")


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--momentum=2", "--momentum=2.0 is out of range: momentum must be in [0, 1)"),
        ("--lr_decay_epochs=30,abc", "--lr_decay_epochs=30,abc is not valid"),
        ("--workdir={file}/run", "--workdir={file}/run cannot be used: {file} is a file"),
    ],
)
def test_the_experiment_fails_in_one_line_before_writing_anything(tmp_path, flag, message):
    regular, workdir = tmp_path / "file", tmp_path / "run"
    regular.write_text("")
    args = [flag.format(file=regular)]
    if "--workdir" not in flag:
        args.append(f"--workdir={workdir}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNJAX_")}
    out = subprocess.run(
        [sys.executable, "-m", "experiments.fake", "--max_steps=1", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(file=regular) in errors[0]
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"mean": (0.5,)}, "--mean needs --std too"),
        ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "--mean=0.5,0.5 is out of range"),
        ({"mean": (0.5,), "std": (0.0,)}, "--std=0.0 is out of range"),
    ],
)
def test_normalization_flags_are_checked_against_the_channels(changes, flag):
    config = TrainConfig(dataset="fashion_mnist", model="lenet5", **changes)
    with pytest.raises(ConfigError) as error:
        validate_config(config, processes=1)
    assert flag in str(error.value)
