"""What one cell of Kim's Table 2 costs here: the runner on MR-sized synthetic data, per variant.

    python -m benchmarks.text_cnn [--epochs=2]

MR, the GoogleNews vectors and the other sets cannot be downloaded on the machines this
project is built on, so the accuracy cells stay the paper's. This measures their cost instead,
on the product path (`experiments.mr`'s config: the kim2014 recipe, fold 0, the runner with
its dev evaluations, checkpoints and logs): rt-polarity files of MR's size (10,662 sentences,
a Zipf vocabulary of about 18,000 words, MR's sentence lengths) prepared by `prepare`, and for
the pretrained variants a 300-d word2vec binary covering 80% of the vocabulary. It reports the
wall time of the first epoch (compilation included), the steady seconds per epoch, and what a
full cell (25 epochs × 10 folds) takes at that speed. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from benchmarks.report import write_section
from cnnjax import data as cdata
from cnnjax.data.text import write_rt_polarity
from cnnjax.data.word_vectors import write_word2vec_binary
from cnnjax.train.config import TrainConfig
from cnnjax.train.logger import read_metrics
from cnnjax.train.recipes import build_config
from cnnjax.train.runner import train_and_evaluate
from cnnjax.train.text_run import VARIANTS

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 2, "epochs timed per variant (the first includes compiling)")
flags.DEFINE_list("variants", list(VARIANTS), "Kim's variants to time")
flags.DEFINE_boolean("write_docs", True, "write the results into docs/benchmarks.md")

MR_SENTENCES = 5_331  # per class (Pang & Lee v1.0)
VOCABULARY = 18_000  # MR's is 18,765 (Kim 2014, Table 1)
MEAN_LENGTH, MAX_LENGTH = 20, 56  # Kim's Table 1: average 20, max 56 (after cleaning)
FULL_CELL = (25, 10)  # Kim's epochs × folds


def _sentences(rng: np.random.Generator, words: np.ndarray, cue: str, count: int) -> list[str]:
    """MR-like sentences: Zipf-distributed words, MR's lengths, one class cue word each."""
    ranks = np.arange(1, len(words) + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    lengths = np.clip(rng.poisson(MEAN_LENGTH - 1, count), 1, MAX_LENGTH - 1)
    out = []
    for length in lengths:
        tokens = list(rng.choice(words, size=int(length), p=weights))
        tokens.insert(int(rng.integers(0, length + 1)), cue)
        out.append(" ".join(tokens))
    return out


def _write_data(root: Path) -> tuple[Path, Path]:
    """MR-sized rt-polarity files prepared into root/data, and a 300-d word2vec file."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(VOCABULARY)])
    write_rt_polarity(
        root / "manual",
        _sentences(rng, words, "goodcue", MR_SENTENCES),
        _sentences(rng, words, "badcue", MR_SENTENCES),
    )
    cdata.prepare("mr", data_dir=root / "data", manual_dir=root / "manual")
    covered = rng.permutation(words)[: int(0.8 * VOCABULARY)]
    vectors = {w: rng.normal(0, 0.1, 300).astype(np.float32) for w in covered}
    write_word2vec_binary(root / "vectors.bin", vectors)
    return root / "data", root / "vectors.bin"


def _time_variant(variant: str, data_dir: Path, vectors: Path, workdir: Path) -> dict:
    """Train `variant` on fold 0 for FLAGS.epochs epochs; its wall times from the run's log."""
    explicit = {
        "variant": variant,
        "fold": 0,
        "epochs": FLAGS.epochs,
        "data_dir": str(data_dir),
        "workdir": str(workdir),
        "word_vectors": None if variant == "rand" else str(vectors),
    }
    config = build_config(TrainConfig(model="textcnn", dataset="mr"), explicit, "kim2014")
    start = time.perf_counter()
    result = train_and_evaluate(config)
    wall = time.perf_counter() - start
    events = read_metrics(workdir / "metrics.jsonl")
    dev = [e for e in events if e["split"] == "dev"]
    per_epoch = (dev[-1]["wall_time"] - dev[0]["wall_time"]) / max(len(dev) - 1, 1)
    return {"variant": variant, "wall": wall, "per_epoch": per_epoch, "steps": result.steps}


def main(argv: list[str]) -> None:
    del argv
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir, vectors = _write_data(root)
        rows = [_time_variant(v, data_dir, vectors, root / v) for v in FLAGS.variants]
    epochs, folds = FULL_CELL
    lines = [
        f"The runner on MR-sized synthetic data (fold 0: {rows[0]['steps'] // FLAGS.epochs} "
        f"steps of 50 an epoch, dev evaluation each epoch), {FLAGS.epochs} epochs per variant:",
        "",
        "| variant | wall, first epoch incl. compile (s) | steady s/epoch | one cell, 25 "
        "epochs × 10 folds (h) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        first = row["wall"] - (FLAGS.epochs - 1) * row["per_epoch"]
        cell = folds * (first + (epochs - 1) * row["per_epoch"]) / 3600
        lines.append(f"| {row['variant']} | {first:.1f} | {row['per_epoch']:.1f} | {cell:.2f} |")
    lines += [
        "",
        f"Load average (1 min) on this machine: {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; the times scale with whatever else runs.",
    ]
    body = "\n".join(lines)
    print(body)
    if FLAGS.write_docs:
        write_section("Text CNN: the cost of a Table 2 cell", body)


if __name__ == "__main__":
    app.run(main)
