"""Text runs (Kim's CNN on MR) across interruptions: an exact resume after kill -9, frozen static
embeddings, a resume refused when the data's vocabulary changed, and bad --word_vectors files
refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import cnnjax.checkpoint
from cnnjax import data
from cnnjax.data.text import write_rt_polarity
from cnnjax.data.word_vectors import load_word_vectors, write_word2vec_binary
from cnnjax.train.text_run import saved_text_inputs

REPO = Path(__file__).resolve().parent.parent
POSITIVE = ["superb", "moving", "delightful", "brilliant", "charming"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "awful"]
FILLER = ["the", "film", "is", "a", "story", "with", "acting", "and", "plot", "scenes"]
# 150 sentences a class, fold 0 held out: 270 training sentences, of which the kim2014 recipe
# holds 27 out as the dev set for early stopping: 243 left, 4 steps of 50 per epoch.
STEPS_PER_EPOCH = 4
DIM = 8  # the word2vec file's width (the embedding takes it): small, so runs are quick


def _sentences(words: list[str], filler: list[str], count: int, rng) -> list[str]:
    """Sentences of 6-12 filler words with one cue word of the class at a random place."""
    out = []
    for _ in range(count):
        tokens = list(rng.choice(filler, size=int(rng.integers(6, 13))))
        tokens.insert(int(rng.integers(0, len(tokens) + 1)), str(rng.choice(words)))
        out.append(" ".join(tokens) + " .")
    return out


def _write_mr(manual: Path, positive: list[str], negative: list[str], filler: list[str]) -> None:
    rng = np.random.default_rng(0)
    write_rt_polarity(
        manual, _sentences(positive, filler, 150, rng), _sentences(negative, filler, 150, rng)
    )


@pytest.fixture(scope="module")
def mr_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mr")
    _write_mr(root / "manual", POSITIVE, NEGATIVE, FILLER)
    data.prepare("mr", data_dir=root / "data", manual_dir=root / "manual")
    return root / "data"


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """One persistent XLA cache for this module's runs: a run compiles what an earlier run of the
    same shapes did not (on 2 shared cores, compiling the train step takes most of a short run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        yield


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNJAX_")}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return env


def _command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "experiments.mr", "--fold=0", *flags]


def _run(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(*flags), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
    )


def _steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    names = [p.name for p in folder.iterdir()] if folder.exists() else []
    return sorted(int(n) for n in names if n.isdigit())


def _leaves(workdir: Path, step: int | None = None) -> list[np.ndarray]:
    _, variables, _ = cnnjax.checkpoint.load(workdir, step)
    return [np.asarray(x) for x in jax.tree.leaves(variables)]


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _snapshot(workdir: Path) -> dict[str, bytes]:
    """Every file of a workdir and its bytes (to show that a refused run wrote nothing)."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    """The run's only error line (exit code 2, no traceback)."""
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("error: ")
    return errors[0]


@pytest.fixture(scope="module")
def straight(mr_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """An uninterrupted CNN-rand run on MR fold 0, and its flags (--workdir aside).

    3 epochs (12 steps): saves every 2 steps and at each epoch end, a dev evaluation per epoch
    (and a test-fold one after each new best dev score).
    """
    workdir = tmp_path_factory.mktemp("straight")
    flags = ["--variant=rand", f"--data_dir={mr_data}", "--epochs=3", "--checkpoint_every_steps=2"]
    done = _run(*flags, f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["step"] for e in _events(workdir) if e["split"] == "dev"] == [4, 8, 12]
    return workdir, flags


@pytest.mark.slow
def test_kill_minus_9_mid_run_then_resume_is_bit_identical(straight, tmp_path):
    (reference, flags), killed = straight, tmp_path / "killed"
    last = 3 * STEPS_PER_EPOCH
    proc = subprocess.Popen(
        _command(*flags, f"--workdir={killed}"),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts, deadline = killed / "checkpoints", time.time() + 240
    # Kill the moment a save is in flight after step 6 (or once step 8 is safely written): past
    # the first evaluation (step 4), with 4 or more steps still to train.
    while time.time() < deadline and proc.poll() is None:
        names = [p.name for p in ckpts.iterdir()] if ckpts.exists() else []
        steps = [int(n) for n in names if n.isdigit()]
        if (any("tmp" in n for n in names) and max(steps, default=0) >= 6) or 8 in steps:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = _steps(killed)
    assert saved and 6 <= saved[-1] < last  # saved mid-run, more training to come
    assert any(e["split"] == "dev" for e in _events(killed))  # an evaluation before the kill
    resumed = _run(*flags, f"--workdir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = next(line for line in resumed.stderr.splitlines() if f"resumed {killed}" in line)
    start = int(line.split("from step ")[1].split()[0])
    assert 6 <= start < last  # resumed from a mid-run save (an in-flight one is discarded)
    # The resumed run evaluates where the straight one did; an evaluation logged after the
    # restored checkpoint by the killed session is dropped, so each appears once.
    evals = [e["step"] for e in _events(killed) if e["split"] == "dev"]
    assert evals == [4, 8, 12] and start < 12
    for a, b in zip(_leaves(reference, last), _leaves(killed, last), strict=True):
        np.testing.assert_array_equal(a, b)
    # The early-stopping choice carries over the interruption: the same test-fold scores at the
    # same dev evaluations, and the same reported score.
    scored = [
        [(e["step"], e["top1"], e["loss"]) for e in _events(run) if e["split"] == "eval"]
        for run in (reference, killed)
    ]
    assert scored[0] == scored[1] and scored[0]
    assert f"{100 * scored[0][-1][1]:.2f}%" in resumed.stdout.splitlines()[-1]
    assert not [p for p in ckpts.iterdir() if "tmp" in p.name]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(processes: int, *flags: str) -> list[str]:
    """`processes` copies of the MR run joined by jax.distributed; their stderr texts."""
    port, procs = _free_port(), []
    for index in range(processes):
        env = _env()
        if processes > 1:
            env.update(
                CNNJAX_COORDINATOR=f"127.0.0.1:{port}",
                CNNJAX_NUM_PROCESSES=str(processes),
                CNNJAX_PROCESS_ID=str(index),
            )
        procs.append(
            subprocess.Popen(
                _command(*flags), cwd=REPO, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )
        )  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, stderr) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    return [stderr for _, stderr in outs]


@pytest.mark.slow
def test_a_text_run_resumes_on_two_processes_as_the_same_run(straight, tmp_path):
    (reference, flags), elastic = straight, tmp_path / "elastic"
    last = 3 * STEPS_PER_EPOCH
    _run_processes(1, *flags, "--max_steps=6", f"--workdir={elastic}")
    logs = _run_processes(2, *flags, f"--workdir={elastic}")
    assert f"resumed {elastic} from step 6" in logs[0]
    assert "the data position carries over exactly" in logs[0]
    # The same global batches in the same order (half on each process), the same dev set and
    # selection: the same run, up to float reassociation in the 2-process gradient all-reduce.
    for a, b in zip(_leaves(reference, last), _leaves(elastic, last), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    # The same dev set, scored alike where both runs evaluated (the first leg also did at its
    # last step, 6).
    dev = [
        {e["step"]: e for e in _events(run) if e["split"] == "dev"} for run in (reference, elastic)
    ]
    assert sorted(dev[0]) == [4, 8, 12] and sorted(dev[1]) == [4, 6, 8, 12]
    for step in (4, 8, 12):
        assert dev[0][step]["examples"] == dev[1][step]["examples"] == 27
        assert dev[0][step]["loss"] == pytest.approx(dev[1][step]["loss"], rel=1e-3)
    assert saved_text_inputs(elastic) == saved_text_inputs(reference)


def _word2vec_file(path: Path) -> dict[str, np.ndarray]:
    """A word2vec binary with DIM-d vectors for part of the vocabulary (and 2 words not in it)."""
    rng = np.random.default_rng(7)
    words = [*POSITIVE[:3], *NEGATIVE[:3], *FILLER[::2], "zebra", "quantum"]
    vectors = {w: rng.normal(size=DIM).astype(np.float32) for w in words}
    write_word2vec_binary(path, vectors)
    return vectors


def _table(workdir: Path, vectors_file: Path, seed: int) -> tuple[np.ndarray, list[str]]:
    """The embedding table the run was started from, and its tokens in id order."""
    vocabulary = saved_text_inputs(workdir).vocabulary
    tokens = [vocabulary.token(i) for i in range(len(vocabulary))]
    return load_word_vectors(vectors_file, tokens, seed=seed).table, tokens


@pytest.mark.slow
def test_multichannel_static_copy_stays_frozen_while_the_other_moves(mr_data, tmp_path):
    vectors_file = tmp_path / "vectors.bin"
    vectors = _word2vec_file(vectors_file)
    workdir = tmp_path / "multichannel"
    run = _run(
        "--variant=multichannel",
        f"--word_vectors={vectors_file}",
        f"--data_dir={mr_data}",
        f"--max_steps={2 * STEPS_PER_EPOCH}",  # every training sentence seen twice
        f"--workdir={workdir}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _, variables, config = cnnjax.checkpoint.load(workdir)
    assert config.word_vectors == str(vectors_file)
    initial, tokens = _table(workdir, vectors_file, config.seed)
    static = np.asarray(variables["embeddings"]["static"])
    trained = np.asarray(variables["params"]["embedding"])
    assert static.shape == trained.shape == (len(tokens), DIM)
    np.testing.assert_array_equal(static, initial)  # bit for bit the table training started from
    np.testing.assert_array_equal(static[0], np.zeros(DIM, np.float32))  # padding
    found = [i for i, token in enumerate(tokens) if token in vectors]
    assert len(found) == 11 and len(tokens) - 2 == 20  # part of the vocabulary is in the file
    for i in found:
        np.testing.assert_array_equal(static[i], vectors[tokens[i]])
    # Every word of the vocabulary is a training word: the non-static copy moved off each one;
    # padding (masked) and OOV (absent from the training sentences) get no gradient.
    assert all(not np.array_equal(trained[i], static[i]) for i in range(2, len(tokens)))
    np.testing.assert_array_equal(trained[:2], static[:2])

    frozen = tmp_path / "static"
    run = _run(
        "--variant=static",
        f"--word_vectors={vectors_file}",
        f"--data_dir={mr_data}",
        f"--max_steps={STEPS_PER_EPOCH}",
        f"--workdir={frozen}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _, variables, config = cnnjax.checkpoint.load(frozen)
    initial, _ = _table(frozen, vectors_file, config.seed)
    np.testing.assert_array_equal(np.asarray(variables["embeddings"]["static"]), initial)
    assert "embedding" not in variables["params"]
    assert set(variables["params"]) == {"conv_h3", "conv_h4", "conv_h5", "fc"}


@pytest.mark.slow
def test_a_resume_on_data_with_another_vocabulary_is_refused_untouched(mr_data, straight, tmp_path):
    # A copy of the run and of the data it trained on; the data is then rebuilt (force) from
    # rt-polarity files with as many sentences of other words.
    (source, flags), workdir, data_dir = straight, tmp_path / "run", tmp_path / "data"
    shutil.copytree(source, workdir)
    shutil.copytree(mr_data, data_dir)
    before = _snapshot(workdir)
    manual = tmp_path / "manual"
    _write_mr(manual, ["great", "fine"], ["bad", "poor"], ["this", "movie", "was", "an", "odd"])
    data.prepare("mr", data_dir=data_dir, manual_dir=manual, force=True)
    flags = [f for f in flags if not f.startswith(("--data_dir=", "--epochs="))]
    resumed = _run(*flags, f"--data_dir={data_dir}", "--epochs=4", f"--workdir={workdir}")
    line = _one_error_line(resumed)
    assert f"{workdir / 'text.json'} holds another vocabulary" in line
    assert "(22 vs 11 words)" in line and "use the same data or a new --workdir" in line
    assert _snapshot(workdir) == before  # checkpoints, text.json and logs untouched


@pytest.mark.parametrize("problem", ["missing", "garbled"])
def test_a_bad_word_vectors_file_is_refused_before_anything_is_written(mr_data, tmp_path, problem):
    path = tmp_path / "vectors.bin"
    if problem == "garbled":
        path.write_bytes(b"\x00\x17garbage: not a vectors file\n\xff\xfe" * 4)
    workdir = tmp_path / "w"
    run = _run(
        "--variant=multichannel",
        f"--word_vectors={path}",
        f"--data_dir={mr_data}",
        f"--workdir={workdir}",
    )
    line = _one_error_line(run)
    assert f"--word_vectors={path}" in line
    assert not workdir.exists()
