"""Where each cnnjax parameter lives in a torchvision or timm state_dict, and in what layout.

A cnnjax module path (`layer1/block2/conv1/bn`) maps to a PyTorch module prefix
(`layer1.1.bn1`); the leaf names map as below. Layouts differ:

| cnnjax leaf                        | PyTorch tensor                 | conversion              |
|------------------------------------|--------------------------------|-------------------------|
| conv `kernel` (kh, kw, in, out)    | `weight` (out, in, kh, kw)     | transpose (2, 3, 1, 0)  |
| dense `kernel` (in, out)           | `weight` (out, in)             | transpose               |
| dense after a flatten (H·W·C, out) | `weight` (out, C·H·W)          | reorder C,H,W -> H,W,C  |
| dense as a conv (timm VGG fc6/fc7) | `weight` (out, C, kh, kw)      | the same reorder        |
| `bias`; BN `scale`, `mean`, `var`  | `bias`; `weight`, `running_*`  | copied                  |

cnnjax flattens NHWC maps row-major over (H, W, C) and PyTorch over (C, H, W), so the first
dense layer after a flatten (VGG and AlexNet fc6, GoogLeNet's auxiliary fc) needs its input
axis reordered; `Rule.chw` gives that map's (C, H, W).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from cnnjax.models import vgg

Path = tuple[str, ...]

LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
# Buffers a state_dict carries that no cnnjax variable needs.
IGNORED_SUFFIXES = (".num_batches_tracked",)


class UnmappedModuleError(ValueError):
    """A cnnjax module for which the source has no counterpart (a bug in the tables here)."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """The PyTorch prefix of one cnnjax module, and the (C, H, W) of a flattened input."""

    prefix: str
    chw: tuple[int, int, int] | None = None
    as_conv: bool = False  # a dense layer the source stores as a conv (timm's VGG fc6, fc7)


def resnet_rule(path: Path) -> Rule:
    """torchvision's (and timm's) ResNet names: conv1/bn1, layerN.i.convK/bnK, downsample, fc."""
    if path == ("conv1", "conv"):
        return Rule("conv1")
    if path == ("conv1", "bn"):
        return Rule("bn1")
    if path == ("fc",):
        return Rule("fc")
    layer, block, unit, part = path
    prefix = f"{layer}.{int(block.removeprefix('block')) - 1}"
    if unit == "shortcut":
        return Rule(f"{prefix}.downsample.{0 if part == 'conv' else 1}")
    index = unit.removeprefix("conv")
    return Rule(f"{prefix}.{'conv' if part == 'conv' else 'bn'}{index}")


def _vgg_feature_indices(config: str, batch_norm: bool) -> dict[str, int]:
    """`features.N` of each conv in torchvision's Sequential: conv[, bn], relu per conv; pools."""
    indices, position = {}, 0
    for stage, widths in enumerate(vgg.CONFIGS[config], start=1):
        for index in range(1, len(widths) + 1):
            indices[f"conv{stage}_{index}"] = position
            position += 3 if batch_norm else 2
        position += 1  # the stage's max-pool
    return indices


def vgg_rule(config: str, batch_norm: bool, timm: bool) -> Callable[[Path], Rule]:
    """VGG: `features.N[+1]`; classifier.0/3/6 (torchvision) or pre_logits.fc1/fc2, head.fc."""
    indices = _vgg_feature_indices(config, batch_norm)
    heads = {
        "fc6": Rule("pre_logits.fc1" if timm else "classifier.0", (512, 7, 7), as_conv=timm),
        "fc7": Rule("pre_logits.fc2" if timm else "classifier.3", as_conv=timm),
        "fc8": Rule("head.fc" if timm else "classifier.6"),
    }

    def rule(path: Path) -> Rule:
        if path[0] in heads:
            return heads[path[0]]
        index = indices[path[0]] + (1 if path[1] == "bn" else 0)
        return Rule(f"features.{index}")

    return rule


def densenet_rule(path: Path) -> Rule:
    """DenseNet: features.conv0/norm0, denseblockB.denselayerL.normK/convK, transitions, norm5."""
    if path == ("conv1", "conv"):
        return Rule("features.conv0")
    if path == ("conv1", "bn"):
        return Rule("features.norm0")
    if path == ("final_norm",):
        return Rule("features.norm5")
    if path == ("fc",):
        return Rule("classifier")
    if path[0].startswith("transition"):
        return Rule(f"features.{path[0]}.{path[2]}")  # transitionN/conv/{norm,conv}
    block, layer, unit, part = path
    index = unit.removeprefix("conv")
    return Rule(f"features.{block}.{layer}.{part}{index}")


_GOOGLENET_BRANCHES = {
    "1x1": "branch1",
    "3x3_reduce": "branch2.0",
    "3x3": "branch2.1",
    "5x5_reduce": "branch3.0",
    "5x5": "branch3.1",
    "pool_proj": "branch4.1",
}
_GOOGLENET_STEM = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3"}


def googlenet_rule(path: Path) -> Rule:
    """torchvision GoogLeNet: convN.conv/bn, inceptionXY.branchK, auxN.conv/fc1/fc2, fc."""
    head = path[0]
    if head == "fc":
        return Rule("fc")
    if head in _GOOGLENET_STEM:
        return Rule(f"{_GOOGLENET_STEM[head]}.{path[1]}")
    if head.startswith("aux"):
        if path[1] == "conv":
            return Rule(f"{head}.conv.{path[2]}")
        return Rule(f"{head}.fc1", (128, 4, 4)) if path[1] == "fc" else Rule(f"{head}.fc2")
    module = "inception" + head.removeprefix("inception_")
    return Rule(f"{module}.{_GOOGLENET_BRANCHES[path[1]]}.{path[2]}")


_ALEXNET_TV = {
    "conv1": Rule("features.0"),
    "conv2": Rule("features.3"),
    "conv3": Rule("features.6"),
    "conv4": Rule("features.8"),
    "conv5": Rule("features.10"),
    "fc6": Rule("classifier.1", (256, 6, 6)),
    "fc7": Rule("classifier.4"),
    "fc8": Rule("classifier.6"),
}


def alexnet_tv_rule(path: Path) -> Rule:
    """torchvision AlexNet: features.0/3/6/8/10 and classifier.1/4/6."""
    return _ALEXNET_TV[path[0]]


def module_rule(model: str, source: str) -> Callable[[Path], Rule]:
    """The naming rule of `source`'s state_dict for cnnjax `model` (a model catalog.py lists)."""
    if model.startswith("resnet"):
        return resnet_rule
    if model.startswith("densenet"):
        return densenet_rule
    if model.startswith("vgg"):
        depth = int(model.removeprefix("vgg").removesuffix("_bn"))
        config = {d: c for c, d in vgg.DEPTHS.items()}[depth]
        return vgg_rule(config, model.endswith("_bn"), timm=source == "timm")
    if model == "googlenet_bn":
        return googlenet_rule
    if model == "alexnet_tv":
        return alexnet_tv_rule
    raise UnmappedModuleError(f"no {source} naming rule for cnnjax model {model!r}")


# torchvision's early DenseNet files name `denselayerL.norm.1.weight` what the module now calls
# `denselayerL.norm1.weight` (its loader renames them the same way on load).
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.[a-z_]+)$")


def canonical_key(key: str) -> str:
    """A state_dict key in today's module naming (old torchvision DenseNet keys renamed)."""
    match = _OLD_DENSENET_KEY.match(key)
    return match[1] + match[2] if match else key


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cnnjax variable and the PyTorch tensor it comes from."""

    collection: str  # 'params' | 'batch_stats'
    path: Path  # module path + leaf name, inside the collection
    key: str  # the state_dict key
    shape: tuple[int, ...]  # the cnnjax variable's shape
    chw: tuple[int, int, int] | None  # (C, H, W) of a flattened input (dense kernels only)
    as_conv: bool = False  # a dense kernel stored as a conv weight

    def torch_shape(self) -> tuple[int, ...]:
        """The shape the PyTorch tensor must have."""
        if len(self.shape) == 4:
            kh, kw, cin, cout = self.shape
            return (cout, cin, kh, kw)
        if len(self.shape) == 2:
            cin, cout = self.shape
            if self.as_conv:
                c, h, w = self.chw or (cin, 1, 1)
                return (cout, c, h, w)
            return (cout, cin)
        return self.shape

    def convert(self, tensor: np.ndarray) -> np.ndarray:
        """The PyTorch tensor in cnnjax's layout (float32)."""
        tensor = np.asarray(tensor, np.float32)
        if tensor.ndim == 4 and len(self.shape) == 4:
            return np.ascontiguousarray(tensor.transpose(2, 3, 1, 0))
        if len(self.shape) == 2:
            cout = self.shape[1]
            if tensor.ndim == 2 and self.chw is None:
                return np.ascontiguousarray(tensor.T)
            c, h, w = self.chw or (tensor.shape[1], 1, 1)
            # (out, C, H, W) -> (H, W, C, out) -> (H·W·C, out): cnnjax's flatten order.
            spatial = tensor.reshape(cout, c, h, w).transpose(2, 3, 1, 0)
            return np.ascontiguousarray(spatial.reshape(h * w * c, cout))
        return tensor


def entries(model: str, source: str, template: dict) -> list[Entry]:
    """Every variable of `template` ({'params': ..., 'batch_stats': ...} shapes) and its key."""
    from flax import traverse_util

    rule = module_rule(model, source)
    found = []
    for collection in ("params", "batch_stats"):
        flat = traverse_util.flatten_dict(template.get(collection, {}))
        for path, leaf in flat.items():
            module, name = path[:-1], path[-1]
            target = rule(module)
            key = f"{target.prefix}.{LEAF_NAMES[(collection, name)]}"
            kernel = name == "kernel"
            found.append(
                Entry(
                    collection,
                    path,
                    key,
                    tuple(leaf.shape),
                    target.chw if kernel else None,
                    target.as_conv and kernel,
                )
            )
    return found
