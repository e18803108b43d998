"""The flags every experiment shares, and how they become a TrainConfig.

Precedence: TrainConfig defaults ← the experiment's defaults (dataset, model) ← the recipe
(`--recipe`, or the paper recipe that fits the model) ← every flag given explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
from absl import app, flags

from cnnjax.cli import run_cli
from cnnjax.layers.residual import REMAT_POLICIES
from cnnjax.train.config import TrainConfig
from cnnjax.train.recipes import RECIPES, build_config
from cnnjax.train.validation import ConfigError, flag_text

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "model", None, "registered model name (python -c 'import cnnjax; print(cnnjax.list_models())')"
)
flags.DEFINE_string("recipe", None, f"paper recipe: {', '.join(RECIPES)} ('' for none)")
flags.DEFINE_string(
    "workdir",
    None,
    "run directory (default: runs/DATASET-MODEL-...); resumes if it holds checkpoints",
)
flags.DEFINE_string(
    "data_dir",
    None,
    "tensorflow-datasets directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
)
flags.DEFINE_integer(
    "image_size", None, "input side (default: the model's for ImageNet/MNIST, else native)"
)
flags.DEFINE_integer("num_classes", None, "classifier width (default: the dataset's classes)")
flags.DEFINE_enum("optimizer", None, ["sgd", "adadelta"], "SGD with momentum, or Adadelta")
flags.DEFINE_integer("batch_size", None, "global batch over all devices and processes")
flags.DEFINE_float("epochs", None, "training epochs")
flags.DEFINE_integer("max_steps", None, "stop after this many steps")
flags.DEFINE_float("lr", None, "peak learning rate")
flags.DEFINE_enum("lr_scaling", None, ["none", "linear"], "linear: lr × batch_size / 256")
flags.DEFINE_float("momentum", None, "SGD momentum")
flags.DEFINE_boolean("nesterov", None, "Nesterov momentum")
flags.DEFINE_float("weight_decay", None, "L2 weight decay")
flags.DEFINE_enum(
    "decay_mode", None, ["coupled", "decoupled"], "L2 in the gradient (papers) or decoupled"
)
flags.DEFINE_boolean(
    "decay_all", None, "decay biases and BN parameters too (default: kernels only)"
)
flags.DEFINE_enum(
    "lr_schedule", None, ["constant", "step", "plateau", "exponential", "cosine"], "LR schedule"
)
flags.DEFINE_list("lr_decay_epochs", None, "step schedule boundaries in epochs, e.g. 30,60,80")
flags.DEFINE_list(
    "lr_decay_steps", None, "step schedule boundaries in iterations, e.g. 32000,48000"
)
flags.DEFINE_float("lr_decay_factor", None, "LR multiplier at each decay (0.1 = ÷10)")
flags.DEFINE_integer(
    "plateau_patience", None, "evaluations without improvement before a plateau decay"
)
flags.DEFINE_float("warmup_epochs", None, "linear warm-up epochs")
flags.DEFINE_float("label_smoothing", None, "label smoothing ε")
flags.DEFINE_float(
    "max_norm", None, "after every update, cap each classifier unit's weight norm (Kim: 3)"
)
flags.DEFINE_float(
    "filter_rms", None, "after every update, cap each conv filter's RMS (Zeiler & Fergus: 0.1)"
)
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (params stay float32)")
flags.DEFINE_enum(
    "remat",
    None,
    list(REMAT_POLICIES),
    "ResNets: recompute in the backward pass (blocks: all but block inputs; convs: BN and ReLU)",
)
flags.DEFINE_boolean(
    "scan",
    None,
    "ResNets: scan each stage's repeated blocks (default; compiles in seconds at any depth); "
    "--noscan unrolls them",
)
flags.DEFINE_integer("seed", None, "seed of init, data order, augmentation and dropout")
flags.DEFINE_float("eval_every_epochs", None, "evaluate every this many epochs")
flags.DEFINE_boolean("ten_crop", None, "evaluate with 10 crops (ImageNet)")
flags.DEFINE_integer("checkpoint_every_steps", None, "asynchronous checkpoint interval")
flags.DEFINE_integer("keep_checkpoints", None, "latest checkpoints kept (plus the best)")
flags.DEFINE_integer("log_every_steps", None, "log interval")
flags.DEFINE_string(
    "init_from",
    None,
    "start from this run's weights; the head is re-initialised when --num_classes differs",
)
flags.DEFINE_list(
    "mean",
    None,
    "per-channel input mean on the [0, 1] scale, e.g. 0.485,0.456,0.406 (default: the "
    "dataset's, or the --init_from run's imported normalisation)",
)
flags.DEFINE_list("std", None, "per-channel input std on the [0, 1] scale (with --mean)")
flags.DEFINE_integer(
    "resize_size", None, "ImageNet-style eval: shorter side before the centre crop"
)
flags.DEFINE_enum(
    "variant",
    None,
    ["rand", "static", "non-static", "multichannel"],
    "text runs: Kim's CNN variant (default non-static with --word_vectors, else rand)",
)
flags.DEFINE_string(
    "word_vectors", None, "text runs: word2vec .bin, GloVe or fastText text vectors file"
)
flags.DEFINE_integer("fold", None, "text sets without a test split: the CV fold (0-9) to test on")
flags.DEFINE_boolean(
    "cv", False, "text sets without a test split: train every fold, report mean ± std top-1"
)
flags.DEFINE_list("windows", None, "text CNN: region sizes, e.g. 3,4,5 (Kim)")
flags.DEFINE_integer("feature_maps", None, "text CNN: feature maps per region size (Kim: 100)")
flags.DEFINE_string(
    "activation", None, "text CNN: relu (Kim), tanh, sigmoid, softplus, cube or iden"
)
flags.DEFINE_string("pooling", None, "text CNN: max (1-max, Kim), avg or kmax-K")
flags.DEFINE_float("dropout", None, "text CNN: dropout rate before the classifier (Kim: 0.5)")
flags.DEFINE_float(
    "dev_fraction",
    None,
    "text runs: hold this fraction of train out as the dev set for early stopping (Kim: 0.1)",
)
flags.DEFINE_integer(
    "early_stopping_patience",
    None,
    "stop after this many evaluations without a better dev top-1 (0: train on, keep the best)",
)
flags.DEFINE_string(
    "sweep",
    None,
    "text sets: Zhang & Wallace's sensitivity study of one field (windows, feature_maps, "
    "activation, pooling, dropout, max_norm), each value cross-validated; with --values",
)
flags.DEFINE_string(
    "values", None, "--sweep's values, separated by ';' (e.g. 3;5;7;3,4,5 or 50;100;200)"
)
flags.DEFINE_enum("freeze", None, ["", "backbone"], "backbone: train only the classifier head")
flags.DEFINE_integer("workers", None, "data-loading worker processes (0: in-process)")
flags.DEFINE_boolean(
    "allow_config_change",
    False,
    "resume a workdir with settings other than its checkpoint's (refused otherwise)",
)

_LISTS_OF_NUMBERS = {
    "lr_decay_epochs": float,
    "lr_decay_steps": int,
    "mean": float,
    "std": float,
    "windows": int,
}


def default_recipe(dataset: str, model: str) -> str:
    """The recipe that trains `model` the way its paper did on this kind of dataset."""
    if dataset in ("mnist", "fashion_mnist"):
        return "lenet"
    cifar = dataset in ("cifar10", "cifar100")
    families = [
        ("resnet", "resnet_cifar_paper" if cifar else "resnet_paper"),
        ("densenet", "densenet_paper"),
        ("googlenet", "googlenet_paper"),
        ("alexnet", "alexnet_paper"),
        ("zfnet", "zfnet_paper"),
        ("textcnn", "kim2014"),
        ("vgg", "vgg_paper"),
    ]
    return next((recipe for prefix, recipe in families if model.startswith(prefix)), "")


def explicit_values() -> dict[str, Any]:
    """The TrainConfig fields whose flags were given on the command line."""
    values: dict[str, Any] = {}
    for name in TrainConfig.__dataclass_fields__:
        if name in FLAGS and FLAGS[name].present:
            value = FLAGS[name].value
            if name in _LISTS_OF_NUMBERS:
                value = _parse_numbers(name, value, _LISTS_OF_NUMBERS[name])
            values[name] = value
    return values


def _parse_numbers(name: str, texts: Sequence[str], kind: type) -> tuple[Any, ...]:
    """A comma-separated list flag as numbers; a bad element is an error naming the flag."""
    try:
        return tuple(kind(text) for text in texts)
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ConfigError(
            f"{flag_text(name, texts)} is not valid: {name} must be comma-separated {what}, "
            f"e.g. {'32000,48000' if kind is int else '30,60,80'}"
        ) from None


def config_from_flags(dataset: str, default_model: str) -> TrainConfig:
    """TrainConfig for this experiment from its defaults, the recipe and the explicit flags."""
    explicit = explicit_values()
    model = explicit.pop("model", None) or default_model
    recipe = FLAGS.recipe if FLAGS["recipe"].present else default_recipe(dataset, model)
    explicit.pop("recipe", None)
    base = TrainConfig(dataset=dataset, model=model)
    return build_config(base, {**explicit, "model": model, "dataset": dataset}, recipe)


def run(dataset: str, default_model: str) -> None:
    """Parse flags and train; user mistakes end with one line, no traceback."""

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise ValueError(
                f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value"
            )
        from cnnjax.models import model_spec
        from cnnjax.train.runner import summary_line, train_and_evaluate

        config = config_from_flags(dataset, default_model)
        model_spec(config.model)  # unknown model: one line with the list
        if FLAGS.sweep or FLAGS.values:
            from cnnjax.train import sensitivity

            if not (FLAGS.sweep and FLAGS.values) or FLAGS.cv:
                raise ConfigError("--sweep needs --values (and runs its own folds: drop --cv)")
            values = sensitivity.parse_values(FLAGS.sweep, FLAGS.values)
            points = sensitivity.run_sweep(
                config, FLAGS.sweep, values, allow_config_change=FLAGS.allow_config_change
            )
            print(sensitivity.table(FLAGS.sweep, points))
            return
        if FLAGS.cv:
            from cnnjax.train.cross_validation import run_folds

            print(run_folds(config, allow_config_change=FLAGS.allow_config_change).summary())
            return
        try:
            result = train_and_evaluate(config, allow_config_change=FLAGS.allow_config_change)
        except jax.errors.JaxRuntimeError as e:
            if jax.process_count() == 1:
                raise
            # A peer died mid-collective: say so in one line and leave without the shutdown
            # barrier, which would wait for the dead process.
            first = str(e).strip().splitlines()[0]
            print(
                f"error: process {jax.process_index()}: another process of this run failed "
                f"({first[:200]}); resume from the last checkpoint",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        print(summary_line(result))

    app.run(run_cli(main))
