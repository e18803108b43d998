"""Top-1/top-5 and NLL of a checkpoint or of an ensemble of checkpoints, single- or 10-crop.

    python -m cnnjax.evaluate --workdir=DIR [--workdir=DIR2 ...] [--ten_crop] [--step=N ...]
        [--split=test] [--data_dir=DIR] [--batch_size=64] [--out=results.json]

Every example of the split is scored exactly once (the eval loader pads the last batch and masks
the padding). An ensemble's prediction is the mean of its members' softmax probabilities, as
AlexNet's 7-CNN ensemble (Krizhevsky et al. 2012, Sec. 6: 18.2% → 15.4% top-5 error). With
`--ten_crop` each member first averages the softmax over its 10 crops, then the members are
averaged. For members with equal crop counts this is the same number as one flat mean over all
member × crop views (a mean of equal-sized group means); the order is fixed here so that the
per-member rows are the members' own 10-crop results.

Members must share the dataset and number of classes; they may differ in model and input size,
each reading the split through its own preprocessing. Eval loaders are unshuffled, so every
member sees the examples in the same order; the labels are checked batch by batch against the
first member's and any disagreement stops the evaluation.

This is a single-process analysis tool: it uses every device of its one process (the batch is
split over them), not `launch.sh`.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax import checkpoint
from cnnjax import data as cdata
from cnnjax.train.config import TrainConfig
from cnnjax.train.run_inputs import (
    EVAL_BATCH_PER_DEVICE,
    fake_spec,
    preprocessing_args,
    resolve_image_size,
)
from cnnjax.train.step import (
    check_batch_divides,
    make_mesh,
    predict_probabilities,
    topk_correct,
)

AVERAGING = "mean softmax over the crops of each member, then mean over the members"
NLL_EPSILON = 1e-12  # as the training eval step: -log(p + ε) stays finite when p underflows


class EnsembleMismatchError(ValueError):
    """Ensemble members that cannot be combined (other dataset, classes or example order)."""


def checkpoint_step(workdir: str | Path, step: int | None = None) -> int:
    """The step to evaluate in `workdir`: `step` if that checkpoint exists, else the latest."""
    directory = checkpoint.checkpoint_dir(workdir)
    steps = sorted(ocp.utils.checkpoint_steps(directory)) if directory.is_dir() else []
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {directory}; pass the --workdir of a run")
    if step is None:
        return steps[-1]
    if step not in steps:
        available = ", ".join(map(str, steps))
        raise ValueError(f"{workdir} has no checkpoint at step {step}; available: {available}")
    return step


def check_members(workdirs: Sequence[str | Path], configs: Sequence[TrainConfig]) -> None:
    """Raise EnsembleMismatchError unless every member has the first one's dataset and classes."""
    first = configs[0]
    for workdir, config in zip(workdirs[1:], configs[1:], strict=True):
        for field in ("dataset", "num_classes"):
            mine, theirs = getattr(config, field), getattr(first, field)
            if mine != theirs:
                raise EnsembleMismatchError(
                    f"ensemble members disagree on {field}: {workdirs[0]} has {theirs!r}, "
                    f"{workdir} has {mine!r}; pass runs of the same dataset and classes"
                )


def batch_probabilities(
    forward: Callable[[Any], Any],
    batches: Iterable[dict[str, Any]],
    *,
    expected_labels: np.ndarray | None = None,
    name: str = "this member",
) -> tuple[np.ndarray, np.ndarray]:
    """`forward(images)` over eval batches → (probs [N, C], labels [N]) of the mask=1 examples.

    With `expected_labels` (another member's labels), every batch's labels must equal the
    matching slice of them, or an EnsembleMismatchError names the first disagreeing batch.
    """
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    seen = 0
    for index, batch in enumerate(batches):
        batch_labels = np.asarray(batch["label"])
        mask = np.asarray(batch.get("mask", np.ones(batch_labels.shape, bool)), bool)
        batch_labels = batch_labels[mask]
        if expected_labels is not None:
            expected = expected_labels[seen : seen + len(batch_labels)]
            if not np.array_equal(expected, batch_labels):
                raise EnsembleMismatchError(
                    f"{name} reads other labels than the first member in eval batch {index} "
                    f"(examples {seen}-{seen + len(batch_labels) - 1}): {batch_labels[:8]} vs "
                    f"{expected[:8]}; members must read the same split in the same order "
                    "(same dataset version and --data_dir)"
                )
        probs.append(np.asarray(forward(batch["image"]))[mask])
        labels.append(batch_labels)
        seen += len(batch_labels)
    if expected_labels is not None and seen != len(expected_labels):
        raise EnsembleMismatchError(
            f"{name} scored {seen} examples, the first member {len(expected_labels)}; members "
            "must read the same split (same dataset version and --data_dir)"
        )
    if not probs:
        raise ValueError("the evaluation split yielded no batches; check --split")
    return np.concatenate(probs), np.concatenate(labels)


def member_probabilities(
    workdir: str | Path,
    *,
    step: int | None = None,
    split: str | None = None,
    ten_crop: bool = False,
    batch_size: int | None = None,
    data_dir: str | None = None,
    expected_labels: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(probs [N, C], labels [N]) of one run's checkpoint over every example of a split.

    Defaults: the latest checkpoint, the dataset's eval split, the run's data_dir and input
    size, 64 examples per device. 10-crop probabilities are already averaged over the crops.
    """
    if jax.process_count() > 1:
        raise ValueError("cnnjax.evaluate runs as a single process; start it without launch.sh")
    step = checkpoint_step(workdir, step)
    config = checkpoint.read_config(workdir, step)
    info = cdata.dataset_info(config.dataset)
    if ten_crop and info.pipeline != "imagenet":
        raise cdata.LoaderConfigError(
            f"10-crop needs ImageNet-style data (imagenet2012, imagenette); {config.dataset!r} "
            "has one view per example: drop --ten_crop"
        )
    if batch_size is None:
        batch_size = EVAL_BATCH_PER_DEVICE * jax.device_count()
    check_batch_divides(batch_size, jax.device_count())
    loader = cdata.make_loader(
        config.dataset,
        split or info.eval_split,
        batch_size=batch_size,
        train=False,
        data_dir=data_dir or config.data_dir,
        image_size=resolve_image_size(config, info),
        ten_crop=ten_crop,
        shard=(0, 1),  # one process reads the whole split
        fake=fake_spec(config),
        **preprocessing_args(config),  # the run's normalisation and eval resize
    )
    model, variables, _ = checkpoint.load(workdir, step)
    mesh = make_mesh()
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    variables = jax.device_put(variables, replicated)
    compiled = jax.jit(
        functools.partial(predict_probabilities, model),
        in_shardings=(replicated, sharded),
        out_shardings=replicated,
    )
    batches: Iterable[dict[str, Any]] = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, total=loader.num_batches, desc=str(workdir), unit="batch")
    return batch_probabilities(
        lambda images: compiled(variables, images),
        batches,
        expected_labels=expected_labels,
        name=str(workdir),
    )


def ensemble_probabilities(probs_list: Sequence[Any]) -> np.ndarray:
    """The members' mean probabilities (float32); a single member's are returned unchanged."""
    if not probs_list:
        raise ValueError("an ensemble needs at least one member's probabilities")
    shapes = {np.shape(p) for p in probs_list}
    if len(shapes) > 1:
        raise EnsembleMismatchError(
            f"members' probabilities differ in shape: {sorted(shapes)}; pass (examples, classes) "
            "arrays over the same examples and classes"
        )
    total = np.array(probs_list[0], np.float32)  # a copy
    if total.ndim != 2:
        raise ValueError(
            f"probabilities must be (examples, classes), got shape {total.shape}; average "
            "10-crop views per member first (predict_probabilities does)"
        )
    for probs in probs_list[1:]:
        total += np.asarray(probs, np.float32)
    return total / np.float32(len(probs_list))


def ensemble_metrics(probs_list: Sequence[Any], labels: Any) -> dict[str, float]:
    """top-1, top-5 (fractions correct) and mean NLL of the members' mean probabilities.

    Ties in top-k count the lower class index first, as `jax.lax.top_k` (and training's eval).
    """
    mean = ensemble_probabilities(probs_list)
    labels = np.asarray(labels)
    if labels.shape != mean.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integers of shape ({mean.shape[0]},), got {labels.dtype} "
            f"{labels.shape}"
        )
    if not np.all((labels >= 0) & (labels < mean.shape[1])):
        raise ValueError(f"labels must lie in [0, {mean.shape[1]}), the probabilities' classes")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    probs, targets = jnp.asarray(mean), jnp.asarray(labels, jnp.int32)
    true_class = mean[np.arange(len(labels)), labels].astype(np.float64)
    return {
        "top1": float(np.mean(np.asarray(topk_correct(probs, targets, 1), np.float64))),
        "top5": float(np.mean(np.asarray(topk_correct(probs, targets, 5), np.float64))),
        "nll": float(np.mean(-np.log(true_class + NLL_EPSILON))),
        "examples": len(labels),
    }


def _member_steps(workdirs: Sequence[str | Path], steps: Sequence[int] | None) -> list:
    """One step (or None: latest) per member from none, one for all, or one per workdir."""
    if not steps:
        return [None] * len(workdirs)
    if len(steps) == 1:
        return list(steps) * len(workdirs)
    if len(steps) != len(workdirs):
        raise ValueError(
            f"got {len(steps)} --step values for {len(workdirs)} --workdir values; pass one "
            "--step for all members or one per --workdir, in the same order"
        )
    return list(steps)


def evaluate(
    workdirs: Sequence[str | Path],
    *,
    steps: Sequence[int] | None = None,
    split: str | None = None,
    ten_crop: bool = False,
    batch_size: int | None = None,
    data_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The report of each member and of their ensemble (the mean of their probabilities).

    `steps`: None (latest of each), one step for all, or one per workdir. The result is what
    the CLI writes as JSON; `ensemble` equals the member's row when there is one member.
    """
    if not workdirs:
        raise ValueError("pass at least one --workdir=DIR of a trained run")
    member_steps = [
        checkpoint_step(w, s) for w, s in zip(workdirs, _member_steps(workdirs, steps), strict=True)
    ]
    configs = [checkpoint.read_config(w, s) for w, s in zip(workdirs, member_steps, strict=True)]
    check_members(workdirs, configs)  # before any checkpoint is read
    info = cdata.dataset_info(configs[0].dataset)
    split = split or info.eval_split
    probs_list: list[np.ndarray] = []
    labels: np.ndarray | None = None
    members = []
    for workdir, step, config in zip(workdirs, member_steps, configs, strict=True):
        probs, member_labels = member_probabilities(
            workdir,
            step=step,
            split=split,
            ten_crop=ten_crop,
            batch_size=batch_size,
            data_dir=data_dir,
            expected_labels=labels,
            progress=progress,
        )
        labels = member_labels if labels is None else labels
        probs_list.append(probs)
        metrics = ensemble_metrics([probs], labels)
        logging.info("%s step %d: %s", workdir, step, metrics)
        members.append(
            {
                "workdir": str(workdir),
                "model": config.model,
                "step": step,
                "image_size": resolve_image_size(config, info),
                **metrics,
            }
        )
    assert labels is not None
    return {
        "dataset": configs[0].dataset,
        "split": split,
        "crops": 10 if ten_crop else 1,
        "examples": len(labels),
        "num_classes": configs[0].num_classes,
        "averaging": AVERAGING,
        "members": members,
        "ensemble": {"size": len(members), **ensemble_metrics(probs_list, labels)},
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a text table: one row per member, then the ensemble row (2+ members)."""
    crops = "1 crop" if report["crops"] == 1 else f"{report['crops']} crops"
    header = ["member", "model", "step", "size", "top-1", "top-5", "top-5 err", "NLL", "workdir"]

    def cells(name: str, model: str, step: str, size: str, m: dict, workdir: str) -> list[str]:
        return [
            name,
            model,
            step,
            size,
            f"{100 * m['top1']:.2f}%",
            f"{100 * m['top5']:.2f}%",
            f"{100 * (1 - m['top5']):.2f}%",
            f"{m['nll']:.4f}",
            workdir,
        ]

    rows = [
        cells(str(i), m["model"], str(m["step"]), str(m["image_size"]), m, m["workdir"])
        for i, m in enumerate(report["members"], start=1)
    ]
    if len(rows) > 1:
        ensemble = report["ensemble"]
        rows.append(cells(f"ensemble of {ensemble['size']}", "", "", "", ensemble, ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        text = [c.ljust(w) if i in (0, 1, 8) else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(text).rstrip()

    title = f"{report['dataset']}/{report['split']}, {crops}, {report['examples']} examples"
    return "\n".join([title, line(header), *map(line, rows)]) + "\n"


def main(argv: Sequence[str]) -> None:
    """`python -m cnnjax.evaluate`: evaluate, print the table, write the JSON with --out."""
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value")
    values = flags.FLAGS
    report = evaluate(
        values.workdir or [],
        steps=values.step,
        split=values.split,
        ten_crop=values.ten_crop,
        batch_size=values.batch_size,
        data_dir=values.data_dir,
        progress=sys.stderr.isatty(),
    )
    sys.stdout.write(format_table(report))
    if values.out:
        out = Path(values.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_multi_string("workdir", None, "run directory; repeat for an ensemble")
    flags.DEFINE_multi_integer(
        "step", None, "checkpoint step (default latest): once for all, or once per --workdir"
    )
    flags.DEFINE_string("split", None, "split to score (default: the dataset's eval split)")
    flags.DEFINE_boolean("ten_crop", False, "mean softmax over 10 crops (ImageNet-style data)")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets directory (default: the run's)")
    flags.DEFINE_integer("batch_size", None, "eval batch (default: 64 per device)")
    flags.DEFINE_string("out", None, "write the report as JSON to this file")


if __name__ == "__main__":
    from absl import app

    from cnnjax.cli import run_cli

    _define_flags()
    app.run(run_cli(main))
