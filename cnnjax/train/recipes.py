"""Paper training recipes by name: each is a small dict of TrainConfig values.

A recipe fills in what the paper says; every flag given explicitly on the command line wins
over it. Numbers come from the papers' training sections (see ../shared/reference/model_zoo.md
for the citations); choices the papers leave open are marked "ours".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.data.catalog import dataset_info
from cnnjax.train.config import TrainConfig

Recipe = Callable[[str, str], dict[str, Any]]  # (dataset, model) -> TrainConfig overrides
IMAGENET = ("imagenet2012", "imagenette")


def _lenet(dataset: str, model: str) -> dict[str, Any]:
    # Ours: LeNet-5 (modern ReLU/max-pool form) on (Fashion-)MNIST in a few CPU minutes.
    return dict(
        batch_size=128,
        epochs=12,
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        lr_schedule="cosine",
        warmup_epochs=0.5,
    )


def _alexnet_paper(dataset: str, model: str) -> dict[str, Any]:
    # Krizhevsky et al. 2012, Sec. 5: batch 128, momentum 0.9, wd 5e-4, lr 0.01 ÷10 when the
    # validation error stopped improving (three times), ~90 epochs; dropout 0.5 is the model's.
    return dict(
        batch_size=128,
        epochs=90,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        lr_schedule="plateau",
        lr_decay_factor=0.1,
    )


def _zfnet_paper(dataset: str, model: str) -> dict[str, Any]:
    # Zeiler & Fergus 2014, Sec. 3: AlexNet's SGD (batch 128, lr 0.01, momentum 0.9, annealed
    # on a plateau), 70 epochs, and every conv filter whose RMS exceeds 0.1 renormalised to 0.1.
    return {**_alexnet_paper(dataset, model), "epochs": 70, "filter_rms": 0.1}


def _kim2014(dataset: str, model: str) -> dict[str, Any]:
    # Kim 2014, Sec. 3.1 and his code (conv_net_sentence.py): Adadelta (rho 0.95, eps 1e-6; no
    # learning rate of its own: 1.0), mini-batch 50, l2 max-norm 3 on the softmax weights after
    # every update, no weight decay, 25 epochs; dropout 0.5 is the model's. Early stopping on
    # the dev set, else on 10% of the training set held out (his code: the test score at the
    # epoch of the best dev score).
    info = dataset_info(dataset)
    return dict(
        dev_fraction=0.1 if info.pipeline == "text" and not info.dev_split else 0.0,
        optimizer="adadelta",
        batch_size=50,
        epochs=25,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        lr_schedule="constant",
        max_norm=3.0,
    )


def _vgg_paper(dataset: str, model: str) -> dict[str, Any]:
    # Simonyan & Zisserman 2015, Sec. 3.1: batch 256, momentum 0.9, wd 5e-4, lr 0.01 ÷10 on a
    # validation-accuracy plateau (three times), stopped after 370K iterations (74 epochs).
    return dict(
        batch_size=256,
        epochs=74,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        lr_schedule="plateau",
        lr_decay_factor=0.1,
    )


def _googlenet_paper(dataset: str, model: str) -> dict[str, Any]:
    # Szegedy et al. 2014, Sec. 6: momentum 0.9, LR decreased by 4% every 8 epochs, auxiliary
    # losses weighted 0.3. Initial LR, batch size, decay and epochs are not given: ours.
    return dict(
        batch_size=256,
        epochs=120,
        lr=0.01,
        momentum=0.9,
        weight_decay=2e-4,
        lr_schedule="exponential",
        exponential_decay_rate=0.96,
        exponential_decay_epochs=8,
        aux_loss_weight=0.3,
    )


def _resnet_paper(dataset: str, model: str) -> dict[str, Any]:
    # He et al. 2016, Sec. 3.4 as run by torchvision's reference: batch 256, lr 0.1,
    # momentum 0.9, wd 1e-4, ÷10 at epochs 30 and 60, 90 epochs.
    return dict(
        batch_size=256,
        epochs=90,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        lr_schedule="step",
        lr_decay_epochs=(30, 60),
        lr_decay_factor=0.1,
    )


def _resnet_cifar_paper(dataset: str, model: str) -> dict[str, Any]:
    # He et al. 2016, Sec. 4.2: batch 128, lr 0.1, momentum 0.9, wd 1e-4, ÷10 at 32k and 48k
    # iterations, stop at 64k. ResNet-110 starts at 0.01 until training error < 80% (~400
    # iterations), then goes back to 0.1.
    recipe = dict(
        batch_size=128,
        epochs=1000,
        max_steps=64_000,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        lr_schedule="step",
        lr_decay_steps=(32_000, 48_000),
        lr_decay_factor=0.1,
    )
    if model in ("resnet110", "resnet1202"):
        recipe.update(warmup_steps=400, warmup_lr=0.01, warmup_constant=True)
    return recipe


def _densenet_paper(dataset: str, model: str) -> dict[str, Any]:
    # Huang et al. 2017, Sec. 4.2: Nesterov momentum 0.9 (no dampening), lr 0.1, wd 1e-4.
    # ImageNet: batch 256, 90 epochs, ÷10 at 30 and 60. CIFAR: batch 64, 300 epochs, ÷10 at 50%
    # and 75% of training.
    common = dict(
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        lr_schedule="step",
        lr_decay_factor=0.1,
    )
    if dataset in IMAGENET:
        return {**common, "batch_size": 256, "epochs": 90, "lr_decay_epochs": (30, 60)}
    return {**common, "batch_size": 64, "epochs": 300, "lr_decay_epochs": (150, 225)}


RECIPES: Mapping[str, Recipe] = {
    "lenet": _lenet,
    "alexnet_paper": _alexnet_paper,
    "zfnet_paper": _zfnet_paper,
    "kim2014": _kim2014,
    "vgg_paper": _vgg_paper,
    "googlenet_paper": _googlenet_paper,
    "resnet_paper": _resnet_paper,
    "resnet_cifar_paper": _resnet_cifar_paper,
    "densenet_paper": _densenet_paper,
}


def recipe_values(name: str, dataset: str, model: str) -> dict[str, Any]:
    """The TrainConfig values of a recipe; an unknown name raises with the list of recipes."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name](dataset, model)


def build_config(base: TrainConfig, explicit: Mapping[str, Any], recipe: str = "") -> TrainConfig:
    """base ← recipe ← explicit values: every explicitly given flag overrides the recipe."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(explicit) - fields)
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    dataset = explicit.get("dataset", base.dataset)
    model = explicit.get("model", base.model)
    values = recipe_values(recipe, dataset, model) if recipe else {}
    return base.replace(**{**values, **explicit, "recipe": recipe})
