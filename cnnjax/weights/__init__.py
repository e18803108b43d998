"""Pretrained ImageNet weights from torchvision and timm, converted and checked tensor by tensor.

    python -m cnnjax.weights --source=torchvision --model=resnet50 \
        --file=resnet50-11ad3fa6.pth --workdir=runs/resnet50-tv

writes a run directory that `cnnjax.checkpoint.load`, `cnnjax.evaluate`, `cnnjax.visualize`,
`cnnjax.features` and `--init_from` read like a trained run's; `load_pretrained` gives
`(model, variables)` directly. Files are read without executing code (`.safetensors`, or
`torch.load(weights_only=True)` when torch is installed).
"""

from cnnjax.weights.catalog import PUBLISHED, PublishedWeights, importable_models
from cnnjax.weights.convert import (
    WeightsMismatchError,
    convert,
    identify,
    import_weights,
    load_pretrained,
)
from cnnjax.weights.files import WeightsFileError, read_tensors

__all__ = [
    "PUBLISHED",
    "PublishedWeights",
    "WeightsFileError",
    "WeightsMismatchError",
    "convert",
    "identify",
    "import_weights",
    "importable_models",
    "load_pretrained",
    "read_tensors",
]
