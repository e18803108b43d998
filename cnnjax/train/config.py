"""The run configuration: one flat, frozen dataclass, saved as config.json in every workdir."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Fields that identify a run: a workdir holding another value belongs to another run.
IDENTITY_FIELDS = ("model", "dataset", "num_classes", "fold")
# Fields a resumed run may change freely: how long it trains, and how, not what it computes.
EXTENDABLE_FIELDS = ("epochs", "max_steps", "early_stopping_patience")
OPERATIONAL_FIELDS = (
    "workdir",
    "data_dir",
    "workers",
    "init_from",
    "word_vectors",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "remat",
    "scan",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run. Defaults are a plain SGD baseline; recipes override them."""

    model: str = "lenet5"
    dataset: str = "fashion_mnist"
    recipe: str = ""
    workdir: str = ""
    data_dir: str | None = None
    image_size: int | None = None  # None: the dataset's / model's native size
    num_classes: int | None = None  # None: the dataset's number of classes
    init_from: str | None = None  # start from this run's weights (new head where shapes differ)
    freeze: str = ""  # 'backbone': train only the classifier head
    # Input normalisation (x/255 - mean)/std per channel; () = the dataset's statistics, or
    # those of the --init_from run's imported weights when their channels match.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    resize_size: int | None = None  # ImageNet-style eval: shorter side before the centre crop
    imported_from: str = ""  # set by cnnjax.weights: the published file these weights came from
    # Text runs (Kim 2014): variant rand | static | non-static | multichannel ('' = non-static
    # with --word_vectors, rand without), the pretrained vectors, the CV fold of test-less sets.
    variant: str = ""
    word_vectors: str | None = None
    fold: int | None = None
    # The text CNN's shape, as Zhang & Wallace (2015) vary it (empty/None: Kim's 3,4,5 windows
    # × 100 maps, ReLU, 1-max pooling over time, dropout 0.5).
    windows: tuple[int, ...] = ()
    feature_maps: int | None = None
    activation: str = ""
    pooling: str = ""
    dropout: float | None = None
    # Early stopping on a dev set: evaluations score the dev set (the dataset's own, else this
    # fraction of the training split held out), the test split is scored at each new best dev
    # top-1, and the run reports that score (Kim 2014: 10% of train where there is no dev set).
    dev_fraction: float = 0.0
    early_stopping_patience: int = 0  # stop after this many evaluations without a new best (0: off)
    # Optimisation (SGD with momentum, L2 as the papers did it; Adadelta for Kim 2014).
    optimizer: str = "sgd"  # 'sgd' | 'adadelta' (rho 0.95, eps 1e-6: Kim's code)
    batch_size: int = 128  # global, over all devices of all processes
    epochs: float = 10.0
    max_steps: int | None = None  # stop after this many steps (overrides epochs when smaller)
    lr: float = 0.01
    lr_scaling: str = "none"  # 'linear': lr × batch_size / base_batch_size (Goyal et al. 2017)
    base_batch_size: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_mode: str = (
        "coupled"  # 'coupled' L2 in the gradient (the papers) | 'decoupled' (AdamW-style)
    )
    decay_all: bool = False  # False: kernels only; True: biases and BN parameters too
    lr_schedule: str = "constant"  # constant | step | plateau | exponential | cosine
    lr_decay_epochs: tuple[float, ...] = ()
    lr_decay_steps: tuple[int, ...] = ()  # step decay boundaries in iterations (wins over epochs)
    lr_decay_factor: float = 0.1
    plateau_patience: int = 2  # evaluations without improvement before ×lr_decay_factor
    plateau_min_scale: float = 1e-3  # AlexNet/VGG: the LR was divided by 10 three times in all
    exponential_decay_rate: float = 0.96  # GoogLeNet: −4% ...
    exponential_decay_epochs: float = 8.0  # ... every 8 epochs
    warmup_epochs: float = 0.0  # linear warm-up from warmup_lr (0 → ramp from 0)
    warmup_steps: int = 0  # warm-up length in iterations (wins over warmup_epochs)
    warmup_lr: float = 0.0
    warmup_constant: bool = False  # He et al. ResNet-110: hold warmup_lr, then jump to lr
    label_smoothing: float = 0.0
    # Constraints applied to the weights after every update (0 = off).
    max_norm: float = 0.0  # l2 cap on each classifier output unit's weights (Kim 2014: 3)
    filter_rms: float = 0.0  # cap on each conv filter's RMS (Zeiler & Fergus 2014: 0.1)
    aux_loss_weight: float = 0.3  # GoogLeNet auxiliary classifiers (Szegedy et al. 2014, Sec. 5)
    dtype: str = "float32"  # compute dtype; params and optimizer state stay float32
    remat: str = "none"  # ResNets: recompute activations in the backward pass (none|blocks|convs)
    scan: bool = True  # ResNets: run each stage's repeated blocks under nn.scan (False: unrolled)
    seed: int = 0
    # Evaluation, checkpoints, logging.
    eval_every_epochs: float = 1.0
    ten_crop: bool = False
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    log_every_steps: int = 50
    workers: int = 0

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        raw = json.loads(text)
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**values)


def changed_fields(before: TrainConfig, after: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (before, after)} for every field whose value differs."""
    return {
        f.name: (getattr(before, f.name), getattr(after, f.name))
        for f in dataclasses.fields(TrainConfig)
        if getattr(before, f.name) != getattr(after, f.name)
    }


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """'batch_size 32 → 64, lr 0.05 → 0.5': the changes as a reader would write them."""
    return ", ".join(f"{name} {old!r} → {new!r}" for name, (old, new) in changes.items())
