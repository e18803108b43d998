"""Every dataset cnnjax knows, by name, with its shape, classes, normalisation and splits.

| name          | tfds name            | image        | classes | train / eval split   | manual |
|---------------|----------------------|--------------|--------:|----------------------|--------|
| mnist         | mnist                | 28×28×1      |      10 | train / test         | no     |
| fashion_mnist | fashion_mnist        | 28×28×1      |      10 | train / test         | no     |
| cifar10       | cifar10              | 32×32×3      |      10 | train / test         | no     |
| cifar100      | cifar100             | 32×32×3      |     100 | train / test         | no     |
| imagenet2012  | imagenet2012         | 224 crop, 3  |   1,000 | train / validation   | yes    |
| imagenette    | imagenette/320px-v2  | 224 crop, 3  |      10 | train / validation   | no     |
| fake          | (synthetic)          | any          |     any | train / test         | no     |

Sentence classification (Kim 2014), pipeline 'text': batches hold right-padded token ids.

| name         | tfds name               | sentences       | classes | train / eval       | manual |
|--------------|-------------------------|-----------------|--------:|--------------------|--------|
| mr           | cnnjax_rt_polarity (†)  | 10,662          |       2 | 10-fold CV         | yes    |
| trec         | cnnjax_trec (†)         | 5,452 / 500     |       6 | train / test       | yes    |
| subj         | cnnjax_subj (†)         | 10,000          |       2 | 10-fold CV         | yes    |
| cr           | cnnjax_cr (†)           | 3,775           |       2 | 10-fold CV         | yes    |
| mpqa         | cnnjax_mpqa (†)         | 10,606          |       2 | 10-fold CV         | yes    |
| sst1         | cnnjax_sst1 (†)         | phrases / 2,210 |       5 | train / test (‡)   | yes    |
| sst2_trees   | cnnjax_sst2_trees (†)   | phrases / 1,821 |       2 | train / test (‡)   | yes    |
| sst2         | glue/sst2               | 67,349 / 872    |       2 | train / validation | no     |
| imdb_reviews | imdb_reviews/plain_text | 25,000 / 25,000 |       2 | train / test       | no     |

(†) cnnjax's own tfds builders (`cnnjax.data.prepare_text`), named in `builder_module`.
`mr`, `subj`, `cr` and `mpqa` have no test split: each is prepared as one 'train' split and Kim's
10-fold cross-validation picks the folds at load time (`cv_folds`; the loader's `fold=`, split
'train' = the other nine folds, 'test' = that fold). Each is two files of sentences, one per
line, in --manual_dir: `subj` Pang & Lee's (2004) subjectivity v1.0 (quote.tok.gt9.5000
subjective = 1, plot.tok.gt9.5000 objective = 0; 5,000 each), `cr` Hu & Liu's (2004) customer
reviews as split into sentences for sentence classification, e.g. by SentEval (custrev.pos = 1,
custrev.neg = 0), `mpqa` the MPQA opinion polarity phrases (Wiebe et al. 2005) as in SentEval
(mpqa.pos = 1, mpqa.neg = 0). Their sizes are the usual published ones (Kim's Table 1), not
verified here (nothing is downloaded). (‡) `sst1` and `sst2_trees` are SST
as Kim used it, from the treebank's PTB trees (trainDevTestTrees_PTB.zip: train.txt, dev.txt,
test.txt in --manual_dir): trained on every labelled phrase of the training trees, early-stopped
on the dev sentences (`dev_split`, 1,101 and 872), scored on the test sentences (2,210 and
1,821); `sst2_trees` drops neutral. `sst2` is GLUE's: its train split is the 67,349 phrases and
sentences Kim also trained on, but GLUE hides the labels of the 1,821-sentence test set on which
Kim reported SST-2 (Table 2), so the eval split is the 872-sentence validation (SST's dev) set
and the numbers are not comparable to his. `imdb_reviews` is the larger modern set (Maas et al.
2011), not in Kim's paper.

`image_size` is the model input the dataset is used at by default: the native size for the
small datasets, the crop size for the JPEG ones (whose images vary in size); 0 for text, whose
length comes from the data. `pipeline` picks the augmentation family in `cnnjax.data.loader`.
This module imports nothing heavy, so the catalog can be read without tensorflow, grain or jax.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from cnnjax.errors import did_you_mean

# ImageNet RGB statistics on the [0, 1] scale, used by torchvision's pretrained models and
# most PyTorch/JAX ImageNet recipes (torchvision docs "models"; pytorch/vision#1965 explains
# they average per-image statistics over a training subset).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CIFAR per-channel statistics of the 50,000 training images on the [0, 1] scale: the
# per-pixel mean and standard deviation over all images and positions. fb.resnet.torch
# (datasets/cifar10.lua, cifar100.lua) publishes the same values on the 0-255 scale:
# CIFAR-10 mean (125.3, 123.0, 113.9), std (63.0, 62.1, 66.7); CIFAR-100 mean
# (129.3, 124.1, 112.4), std (68.2, 65.4, 70.4). The often-copied CIFAR-10 std
# (0.2023, 0.1994, 0.2010) is a mean of per-image stds (facebookarchive/fb.resnet.torch#180,
# kuangliu/pytorch-cifar#129), so it is not used here.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

# MNIST mean/std of the 60,000 training digits on [0, 1] (the PyTorch examples/mnist values);
# Fashion-MNIST likewise (0.2860 / 0.3530, computed over its 60,000 training images).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

# The synthetic images are class templates with grey levels uniform in [48, 208] plus uniform
# noise in [-32, 32] (cnnjax.data.sources): pixel mean 128/255 ≈ 0.5 and standard deviation
# ≈ sqrt(46² + 19²)/255 ≈ 0.2, so (0.5, 0.25) puts the normalised values in about [-1.5, 1.5].
FAKE_MEAN, FAKE_STD = (0.5,), (0.25,)

PIPELINES = ("mnist", "cifar", "imagenet", "fake", "text")
# Sentence cleaning of the 'text' pipeline (cnnjax.data.text): Kim's clean_str (lowercased),
# the same keeping case (Kim's TREC), or clean_str_sst for the pre-tokenized SST.
CLEANERS = ("kim", "kim_cased", "sst")
TEXT_BUILDERS = "cnnjax.data.prepare_text"  # registers cnnjax's own tfds builders


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What cnnjax needs to know to prepare, load and normalise one dataset."""

    name: str
    tfds_name: str | None  # None: generated in process, nothing to prepare
    image_size: int  # default model input side (native size, or crop size for JPEG datasets)
    channels: int
    num_classes: int
    mean: tuple[float, ...]  # per channel (one value broadcasts), on the [0, 1] pixel scale
    std: tuple[float, ...]
    train_split: str
    eval_split: str
    pipeline: str  # augmentation family, one of PIPELINES
    manual_download: bool = False  # True: the archives must be placed in --manual_dir
    manual_files: tuple[str, ...] = ()  # the archives a manual download needs
    manual_subdir: str = ""  # the folder they extract to, also accepted inside --manual_dir
    offline_dirs: tuple[str, ...] = ()  # folders that may already hold the raw source files
    system_package: str = ""  # Debian/Ubuntu package that installs the files in offline_dirs
    resize_size: int | None = None  # eval: shorter side resized to this before the centre crop
    homepage: str = ""
    # Text ('text' pipeline; image_size and channels are 0, mean and std empty):
    clean: str = ""  # sentence cleaning, one of CLEANERS
    cv_folds: int = 0  # > 0: no test split; k-fold cross-validation over train_split
    dev_split: str | None = None  # a dev set of its own for early stopping (else held out)
    text_feature: str = "text"  # the tfds feature that holds the sentence
    builder_module: str = ""  # module to import first: it registers tfds_name's builder


def _text_set(**fields: Any) -> DatasetInfo:
    """A text dataset's entry: no image side, channels or normalisation."""
    return DatasetInfo(image_size=0, channels=0, mean=(), std=(), pipeline="text", **fields)


def _sst_set(name: str, tfds_name: str, num_classes: int) -> DatasetInfo:
    """SST from its PTB trees (ours): train on phrases, early-stop on dev, test on sentences."""
    return _text_set(
        name=name,
        tfds_name=tfds_name,
        num_classes=num_classes,
        train_split="train",  # every labelled phrase of the training trees
        eval_split="test",
        dev_split="validation",
        manual_download=True,
        manual_files=("train.txt", "dev.txt", "test.txt"),
        manual_subdir="trees",
        homepage="https://nlp.stanford.edu/sentiment/",
        clean="sst",
        builder_module=TEXT_BUILDERS,
    )


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="mnist",
            tfds_name="mnist",
            image_size=28,
            channels=1,
            num_classes=10,
            mean=MNIST_MEAN,
            std=MNIST_STD,
            train_split="train",
            eval_split="test",
            pipeline="mnist",
            homepage="http://yann.lecun.com/exdb/mnist/",
        ),
        DatasetInfo(
            name="fashion_mnist",
            tfds_name="fashion_mnist",
            image_size=28,
            channels=1,
            num_classes=10,
            mean=FASHION_MNIST_MEAN,
            std=FASHION_MNIST_STD,
            train_split="train",
            eval_split="test",
            pipeline="mnist",
            # Debian/Ubuntu package `dataset-fashion-mnist` installs the four IDX .gz files here.
            offline_dirs=("/usr/share/datasets/fashion-mnist",),
            system_package="dataset-fashion-mnist",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        ),
        DatasetInfo(
            name="cifar10",
            tfds_name="cifar10",
            image_size=32,
            channels=3,
            num_classes=10,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            train_split="train",
            eval_split="test",
            pipeline="cifar",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        DatasetInfo(
            name="cifar100",
            tfds_name="cifar100",
            image_size=32,
            channels=3,
            num_classes=100,
            mean=CIFAR100_MEAN,
            std=CIFAR100_STD,
            train_split="train",
            eval_split="test",
            pipeline="cifar",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        DatasetInfo(
            name="imagenet2012",
            tfds_name="imagenet2012",
            image_size=224,
            channels=3,
            num_classes=1000,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            train_split="train",
            eval_split="validation",
            pipeline="imagenet",
            manual_download=True,
            manual_files=("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
            resize_size=256,
            homepage="https://image-net.org/download-images",
        ),
        DatasetInfo(
            name="imagenette",
            # The 320px variant (shorter side 320) is enough for 256-resize / 224-crop views and
            # is a tenth of the full-size download.
            tfds_name="imagenette/320px-v2",
            image_size=224,
            channels=3,
            num_classes=10,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            train_split="train",
            eval_split="validation",
            pipeline="imagenet",
            resize_size=256,
            homepage="https://github.com/fastai/imagenette",
        ),
        _text_set(
            name="mr",
            tfds_name="cnnjax_rt_polarity",
            num_classes=2,
            train_split="train",
            eval_split="test",  # the held-out fold
            manual_download=True,
            manual_files=("rt-polarity.pos", "rt-polarity.neg"),
            manual_subdir="rt-polaritydata",
            homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
            clean="kim",
            cv_folds=10,
            builder_module=TEXT_BUILDERS,
        ),
        _text_set(
            name="trec",
            tfds_name="cnnjax_trec",
            num_classes=6,
            train_split="train",
            eval_split="test",
            manual_download=True,
            manual_files=("train_5500.label", "TREC_10.label"),
            homepage="https://cogcomp.seas.upenn.edu/Data/QA/QC/",
            clean="kim_cased",
            builder_module=TEXT_BUILDERS,
        ),
        _text_set(
            name="subj",
            tfds_name="cnnjax_subj",
            num_classes=2,  # obj 0, subj 1
            train_split="train",
            eval_split="test",  # the held-out fold
            manual_download=True,
            manual_files=("quote.tok.gt9.5000", "plot.tok.gt9.5000"),
            homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
            clean="kim",
            cv_folds=10,
            builder_module=TEXT_BUILDERS,
        ),
        _text_set(
            name="cr",
            tfds_name="cnnjax_cr",
            num_classes=2,
            train_split="train",
            eval_split="test",  # the held-out fold
            manual_download=True,
            manual_files=("custrev.pos", "custrev.neg"),
            homepage="https://github.com/facebookresearch/SentEval",
            clean="kim",
            cv_folds=10,
            builder_module=TEXT_BUILDERS,
        ),
        _text_set(
            name="mpqa",
            tfds_name="cnnjax_mpqa",
            num_classes=2,
            train_split="train",
            eval_split="test",  # the held-out fold
            manual_download=True,
            manual_files=("mpqa.pos", "mpqa.neg"),
            homepage="https://github.com/facebookresearch/SentEval",
            clean="kim",
            cv_folds=10,
            builder_module=TEXT_BUILDERS,
        ),
        _sst_set("sst1", "cnnjax_sst1", num_classes=5),
        _sst_set("sst2_trees", "cnnjax_sst2_trees", num_classes=2),  # neutral dropped
        _text_set(
            name="sst2",
            # Phrases and sentences for training, as Kim; GLUE hides the test labels, so the
            # eval split is the dev set (see the module docstring: not Kim's Table 2 protocol).
            tfds_name="glue/sst2",
            num_classes=2,
            train_split="train",
            eval_split="validation",
            homepage="https://nlp.stanford.edu/sentiment/",
            clean="sst",
            text_feature="sentence",
        ),
        _text_set(
            name="imdb_reviews",
            tfds_name="imdb_reviews/plain_text",
            num_classes=2,
            train_split="train",
            eval_split="test",
            homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
            clean="kim",
        ),
        DatasetInfo(
            name="fake",
            tfds_name=None,
            image_size=32,
            channels=3,
            num_classes=10,
            mean=FAKE_MEAN,
            std=FAKE_STD,
            train_split="train",
            eval_split="test",
            pipeline="fake",
        ),
    )
}


class UnknownDatasetError(ValueError):
    """Raised for a dataset name that is not in the catalog; the message lists the names."""


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for `name`; an unknown name raises with the list of known ones."""
    if name not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}{did_you_mean(name, DATASETS, n=2)}; "
            f"known datasets: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[name]


def default_data_dir() -> str:
    """Where tfds keeps prepared datasets: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """`data_dir` as an absolute path, or the tfds default when None."""
    return (
        os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        if data_dir
        else (os.path.abspath(default_data_dir()))
    )
