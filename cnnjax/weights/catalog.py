"""Published ImageNet weights cnnjax can import, with the preprocessing each was evaluated with.

torchvision rows: the weight enums of torchvision 0.29.1 (`<Model>_Weights.<NAME>`: `url`,
`meta["_metrics"]["ImageNet-1K"]`, `transforms()`), the same numbers as model_zoo.md §1 [TV].
Every one is evaluated as: shorter side resized to `resize_size` (bilinear, antialiased),
centre crop 224, ImageNet mean/std. torchvision's GoogLeNet weights are the TF-Slim port:
loaded with weights, torchvision's `googlenet` sets `transform_input=True`, which maps
ImageNet-normalised inputs to (x/255 - 0.5)/0.5, so that is the normalisation recorded here.

timm rows: `timm.models.get_pretrained_cfg(tag)` of timm 1.0.31 (`crop_pct`, `interpolation`,
mean/std). timm evaluates at 224 with the shorter side resized to floor(224 / crop_pct).
"""

from __future__ import annotations

import dataclasses
import math

from cnnjax.data.catalog import IMAGENET_MEAN, IMAGENET_STD

SOURCES = ("torchvision", "timm")
CROP = 224
TF_SLIM_MEAN = TF_SLIM_STD = (0.5, 0.5, 0.5)  # GoogLeNet's transform_input (see module doc)


@dataclasses.dataclass(frozen=True)
class PublishedWeights:
    """One published weight file: where it is from and how it was evaluated."""

    source: str  # 'torchvision' | 'timm'
    model: str  # the cnnjax model it loads into
    name: str  # torchvision enum member ('IMAGENET1K_V2') or timm tag ('a1_in1k')
    file: str  # published file name ('' for timm: the hub's model.safetensors)
    top1: float | None = None  # published ImageNet-1K val accuracy, single 224 centre crop
    top5: float | None = None
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def label(self) -> str:
        """'torchvision IMAGENET1K_V2 (resnet50-11ad3fa6.pth)' / 'timm resnet50.a1_in1k'."""
        if self.source == "timm":
            return f"timm {self.source_model}.{self.name}"
        return f"torchvision {self.name} ({self.file})"

    @property
    def source_model(self) -> str:
        """The model's name in its source library."""
        return TORCHVISION_NAMES.get(self.model, self.model)

    @property
    def stem(self) -> str:
        """The file name without its extension: what names the weights in a converted file."""
        return self.file.rsplit(".", 1)[0]


# cnnjax models whose name differs from torchvision's for the same network.
TORCHVISION_NAMES = {"googlenet_bn": "googlenet", "alexnet_tv": "alexnet"}


def _tv(model: str, file: str, top1: float, top5: float, **kwargs) -> PublishedWeights:
    name = kwargs.pop("name", "IMAGENET1K_V1")
    return PublishedWeights("torchvision", model, name, file, top1, top5, **kwargs)


TORCHVISION = (
    _tv("alexnet_tv", "alexnet-owt-7be5be79.pth", 56.522, 79.066),
    _tv("vgg11", "vgg11-8a719046.pth", 69.020, 88.628),
    _tv("vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, 89.810),
    _tv("vgg13", "vgg13-19584684.pth", 69.928, 89.246),
    _tv("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 90.374),
    _tv("vgg16", "vgg16-397923af.pth", 71.592, 90.382),
    _tv("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, 91.516),
    _tv("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 90.876),
    _tv("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 91.842),
    _tv(
        "googlenet_bn", "googlenet-1378be20.pth", 69.778, 89.530, mean=TF_SLIM_MEAN, std=TF_SLIM_STD
    ),
    _tv("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078),
    _tv("resnet34", "resnet34-b627a593.pth", 73.314, 91.420),
    _tv("resnet50", "resnet50-0676ba61.pth", 76.130, 92.862),
    _tv("resnet50", "resnet50-11ad3fa6.pth", 80.858, 95.434, name="IMAGENET1K_V2", resize_size=232),
    _tv("resnet101", "resnet101-63fe2227.pth", 77.374, 93.546),
    _tv(
        "resnet101", "resnet101-cd907fc2.pth", 81.886, 95.780, name="IMAGENET1K_V2", resize_size=232
    ),
    _tv("resnet152", "resnet152-394f9c45.pth", 78.312, 94.046),
    _tv(
        "resnet152", "resnet152-f82ba261.pth", 82.284, 96.002, name="IMAGENET1K_V2", resize_size=232
    ),
    _tv("densenet121", "densenet121-a639ec97.pth", 74.434, 91.972),
    _tv("densenet161", "densenet161-8d451a50.pth", 77.138, 93.560),
    _tv("densenet169", "densenet169-b2777c0a.pth", 75.600, 92.806),
    _tv("densenet201", "densenet201-c1103571.pth", 76.896, 93.370),
)


def _timm(model: str, tag: str, crop_pct: float, interpolation: str) -> PublishedWeights:
    resize = math.floor(CROP / crop_pct)
    return PublishedWeights("timm", model, tag, "", resize_size=resize, interpolation=interpolation)


TIMM = (
    *(_timm(f"resnet{d}", "tv_in1k", 0.875, "bilinear") for d in (18, 34, 50, 101, 152)),
    # tv2: trained at 176, evaluated at 224 with test_crop_pct 0.965 (= torchvision's V2 232).
    *(_timm(f"resnet{d}", "tv2_in1k", 0.965, "bilinear") for d in (50, 101, 152)),
    *(_timm(f"resnet{d}", "a1_in1k", 0.95, "bicubic") for d in (18, 34, 50, 101, 152)),
    *(
        _timm(f"vgg{d}{bn}", "tv_in1k", 0.875, "bilinear")
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    ),
    *(_timm(f"densenet{d}", "tv_in1k", 0.875, "bicubic") for d in (121, 161, 169, 201)),
    _timm("densenet121", "ra_in1k", 0.875, "bicubic"),
)

PUBLISHED = TORCHVISION + TIMM


def importable_models(source: str) -> list[str]:
    """The cnnjax models that weights of `source` load into."""
    return sorted({w.model for w in PUBLISHED if w.source == source})


def choices(source: str, model: str) -> list[PublishedWeights]:
    """The published weights of `source` for cnnjax `model`."""
    return [w for w in PUBLISHED if w.source == source and w.model == model]
