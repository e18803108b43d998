"""Whole-run pictures: training curves (from metrics.jsonl) and the eval confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cnnjax import data as cdata
from cnnjax.train.config import TrainConfig
from cnnjax.train.logger import plot_curves
from cnnjax.viz.images import input_side
from cnnjax.viz.plotting import DEFAULT_DPI, check_png_path, pyplot, save_figure

EVAL_BATCH = 256
_MAX_ANNOTATED = 20  # classes up to which each cell gets its count written in
_MAX_TICK_LABELS = 40  # classes up to which the axes name every class


def curves(workdir: str | Path, out: str | Path) -> Path:
    """Loss, top-1 and learning rate of a run against step (`cnnjax.train.logger.plot_curves`)."""
    metrics = Path(workdir) / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {workdir}; is it a training run's workdir?")
    out = check_png_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return plot_curves(metrics, out)


def predict(
    model: Any, variables: Any, config: TrainConfig, split: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted classes) over every example of the run's eval split (or `split`)."""
    from cnnjax.train.run_inputs import fake_spec, preprocessing_args

    info = cdata.dataset_info(config.dataset)
    loader = cdata.make_loader(
        config.dataset,
        split or info.eval_split,
        batch_size=EVAL_BATCH,
        train=False,
        data_dir=config.data_dir,
        image_size=input_side(config),
        fake=fake_spec(config),
        **preprocessing_args(config),  # the run's normalisation and eval resize
    )
    classify = jax.jit(lambda v, x: model.apply(v, x, train=False).argmax(-1))
    labels, predictions = [], []
    for batch in loader:
        keep = np.asarray(batch["mask"], bool)
        predicted = np.asarray(classify(variables, batch["image"]))
        labels.append(np.asarray(batch["label"])[keep])
        predictions.append(predicted[keep])
    return np.concatenate(labels), np.concatenate(predictions)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = examples of true class i predicted as class j."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}"
            )
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion(
    counts: np.ndarray,
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Draw a confusion matrix: colour = row-normalised share (recall per true class), text =
    counts (up to 20 classes); class names on the axes (up to 40)."""
    counts = np.asarray(counts)
    num_classes = counts.shape[0]
    if counts.ndim != 2 or counts.shape[1] != num_classes:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a {num_classes}-class matrix")
    rows = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(rows, 1)
    if figsize is None:
        side = min(max(4.0, 0.55 * num_classes + 2.0), 14.0)
        figsize = (side + 1.0, side)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if num_classes <= _MAX_ANNOTATED:
        for i in range(num_classes):
            for j in range(num_classes):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour
                    )
    if num_classes <= _MAX_TICK_LABELS:
        ax.set_xticks(range(num_classes), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(num_classes), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(title or f"{counts.sum():,} examples, top-1 {accuracy:.2%}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi)
