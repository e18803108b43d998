"""Published weights -> cnnjax variables, checked tensor by tensor; and a run directory of them."""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from cnnjax.errors import did_you_mean
from cnnjax.layers.residual import in_layout_of, unrolled
from cnnjax.models import create_model, model_spec
from cnnjax.weights import catalog, names
from cnnjax.weights.files import read_tensors, sha256


class WeightsMismatchError(ValueError):
    """A weight file that does not fit the model: the first mismatching tensor, in one line."""


def variable_shapes(model: str, num_classes: int | None = None) -> dict[str, Any]:
    """The shapes of `model`'s variables ({'params': ..., 'batch_stats': ...}), nothing computed.

    Per block (scanned stages unrolled), as the published state_dicts name them.
    """
    spec = model_spec(model)
    module, _ = unrolled(create_model(model, num_classes=num_classes))
    example = jnp.zeros((1, *spec.input_shape), spec.input_dtype)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), example, train=False))


def _head_hint(entry: names.Entry, got: tuple[int, ...], num_classes: int) -> str:
    """The advice for a classifier of another width, or '' for any other mismatch."""
    expected = entry.torch_shape()
    if expected[0] == num_classes and len(got) == len(expected) and got[1:] == expected[1:]:
        return f"; the file's classifier has {got[0]} classes: pass --num_classes={got[0]}"
    return ""


def _strip_wrapper_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys without the `module.` prefix nn.DataParallel adds to every name, if all have it."""
    if tensors and all(k.startswith("module.") for k in tensors):
        return {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def convert(
    tensors: dict[str, np.ndarray],
    model: str,
    source: str,
    *,
    num_classes: int | None = None,
    origin: str = "the state_dict",
) -> dict[str, Any]:
    """cnnjax variables of `model` from a `source` state_dict; a misfit raises in one line.

    Every variable must come from a tensor of the right shape and every tensor must be used
    (bar BN's `num_batches_tracked`): the first missing, misshapen or extra tensor is named.
    The variables come in the layout `create_model(model)` uses (scanned stages stacked).
    """
    classes = model_spec(model).num_classes if num_classes is None else num_classes
    shapes = variable_shapes(model, classes)
    entries = names.entries(model, source, shapes)
    tensors = _strip_wrapper_prefix({names.canonical_key(k): v for k, v in tensors.items()})
    where = f"{origin} does not fit cnnjax's {model} ({source} names)"
    flat: dict[tuple[str, ...], np.ndarray] = {}
    misfits: list[tuple[names.Entry, str]] = []
    for entry in entries:
        tensor = tensors.get(entry.key)
        expected = entry.torch_shape()
        if tensor is None:
            misfits.append(
                (
                    entry,
                    f"tensor {entry.key!r} (shape {expected}) is missing; is this a {source} "
                    f"{catalog.TORCHVISION_NAMES.get(model, model)} checkpoint?",
                )
            )
        elif tuple(tensor.shape) != expected:
            got = tuple(tensor.shape)
            misfits.append(
                (
                    entry,
                    f"tensor {entry.key!r} has shape {got}, expected {expected}"
                    + _head_hint(entry, got, classes),
                )
            )
        else:
            flat[(entry.collection, *entry.path)] = entry.convert(tensor)
    if misfits:
        _, message = min(misfits, key=_call_order(model, classes))
        raise WeightsMismatchError(f"{where}: {message}")
    used = {entry.key for entry in entries}
    extra = [k for k in tensors if k not in used and not k.endswith(names.IGNORED_SUFFIXES)]
    if extra:
        raise WeightsMismatchError(
            f"{where}: tensor {extra[0]!r} (shape {tuple(tensors[extra[0]].shape)}) has no "
            f"place in it ({len(extra)} such tensors); is this a {source} "
            f"{catalog.TORCHVISION_NAMES.get(model, model)} checkpoint?"
        )
    module = create_model(model, num_classes=classes)
    return in_layout_of(module, traverse_util.unflatten_dict(flat))


def _call_order(model: str, num_classes: int):
    """Sort key putting an entry where its layer runs in the forward pass (first misfit first)."""
    from cnnjax.features import feature_names

    spec = model_spec(model)
    module = create_model(model, num_classes=num_classes)
    order = {name: i for i, name in enumerate(feature_names(module, spec.input_shape))}
    return lambda misfit: order.get("/".join(misfit[0].path[:-1]), len(order))


def load_pretrained(
    file: str | Path, model: str, *, source: str = "torchvision", num_classes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """`(model, variables)` from a published weight file, for research code.

    `model.apply(variables, x, train=False)` is then the published network, given inputs
    prepared as `identify(...)` says (see `cnnjax.weights.catalog`).
    """
    check_source_model(source, model)
    classes = model_spec(model).num_classes if num_classes is None else num_classes
    variables = convert(read_tensors(file), model, source, num_classes=classes, origin=str(file))
    return create_model(model, num_classes=classes), jax.tree.map(jnp.asarray, variables)


def check_source_model(source: str, model: str) -> None:
    """Raise in one line unless `source` publishes weights for cnnjax `model`."""
    if source not in catalog.SOURCES:
        raise ValueError(
            f"--source={source} is not supported; use one of {', '.join(catalog.SOURCES)}"
        )
    importable = catalog.importable_models(source)
    if model in importable:
        return
    renamed = {v: k for k, v in catalog.TORCHVISION_NAMES.items()}
    if model in renamed and source == "torchvision":
        hint = (
            f"; {source}'s {model} is cnnjax's {renamed[model]} (cnnjax's {model} is the "
            f"paper's network): pass --model={renamed[model]}"
        )
    else:
        hint = did_you_mean(model, importable)
    raise ValueError(
        f"--model={model}: no {source} weights load into it{hint}; importable: "
        f"{', '.join(importable)}"
    )


def identify(
    source: str, model: str, file: str | Path, weights: str | None = None
) -> catalog.PublishedWeights:
    """Which published weights a file holds: from --weights, else from the file's name.

    The answer fixes the preprocessing (resize 256 or 232, the normalisation), so an unknown
    file for a model with several published versions must be named with --weights.
    """
    check_source_model(source, model)
    options = catalog.choices(source, model)
    listed = ", ".join(w.name for w in options)
    if weights:
        for option in options:
            if option.name == weights:
                return option
        raise ValueError(
            f"--weights={weights}: {source} publishes no such {model} weights; use one of {listed}"
        )
    stem = Path(file).name.rsplit(".", 1)[0]
    for option in options:
        if option.file and option.stem == stem:
            return option
    if len(options) == 1:
        return options[0]
    raise ValueError(
        f"--file={file}: cannot tell which {source} {model} weights these are from the name; "
        f"pass --weights= one of {listed} (they are evaluated differently)"
    )


def run_config(published: catalog.PublishedWeights, num_classes: int, workdir: str | Path) -> Any:
    """The TrainConfig an imported run records: model, ImageNet, head and the preprocessing."""
    from cnnjax.train.config import TrainConfig

    return TrainConfig(
        model=published.model,
        dataset="imagenet2012",
        num_classes=num_classes,
        workdir=str(workdir),
        image_size=catalog.CROP,
        mean=tuple(published.mean),
        std=tuple(published.std),
        resize_size=published.resize_size,
        imported_from=published.label,
    )


def import_weights(
    file: str | Path,
    model: str,
    workdir: str | Path,
    *,
    source: str = "torchvision",
    num_classes: int | None = None,
    weights: str | None = None,
) -> Path:
    """Write a run directory holding the published weights of `file`, for every cnnjax tool.

    The directory gets checkpoint 0, config.json (model, head, the normalisation and eval
    resize the weights expect) and weights.json (where they came from). Everything is checked
    before anything is written, and written to a temporary folder that is renamed into place,
    so a failed import leaves nothing behind.
    """
    from cnnjax.train.checkpoints import save_weights

    published = identify(source, model, file, weights)
    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise ValueError(f"--workdir={workdir} exists and is not empty; pass a new --workdir")
    model_obj, variables = load_pretrained(file, model, source=source, num_classes=num_classes)
    classes = model_obj.num_classes
    config = run_config(published, classes, workdir.absolute())
    workdir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{workdir.name}.importing-", dir=workdir.parent))
    try:
        save_weights(partial, variables, config)
        (partial / "config.json").write_text(config.to_json())
        (partial / "weights.json").write_text(
            json.dumps(_provenance(published, Path(file), model_obj, variables), indent=2) + "\n"
        )
        with contextlib.suppress(FileNotFoundError):
            workdir.rmdir()  # an empty folder given as --workdir
        partial.rename(workdir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return workdir


def _provenance(
    published: catalog.PublishedWeights, file: Path, model: nn.Module, variables: Any
) -> dict[str, Any]:
    """What weights.json records: the file, the source's published numbers, the preprocessing."""
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    return {
        "source": published.source,
        "source_model": published.source_model,
        "weights": published.name,
        "file": file.name,
        "sha256": sha256(file),
        "model": published.model,
        "num_classes": model.num_classes,
        "params": params,
        "published_top1": published.top1,
        "published_top5": published.top5,
        "preprocessing": {
            "resize_shorter_side": published.resize_size,
            "interpolation": published.interpolation,
            "crop": catalog.CROP,
            "mean": list(published.mean),
            "std": list(published.std),
        },
        "imported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
