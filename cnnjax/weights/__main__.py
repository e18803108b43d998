"""`python -m cnnjax.weights`: import a published weight file as a cnnjax run directory."""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags

from cnnjax.cli import run_cli
from cnnjax.weights.catalog import SOURCES

flags.DEFINE_enum("source", "torchvision", list(SOURCES), "library that published the file")
flags.DEFINE_string("model", None, "cnnjax model the weights load into, e.g. resnet50")
flags.DEFINE_string("file", None, "the weight file: .safetensors, or .pth with torch installed")
flags.DEFINE_string("workdir", None, "new run directory to write")
flags.DEFINE_integer("num_classes", None, "classifier width of the file (default: 1000)")
flags.DEFINE_string(
    "weights",
    None,
    "which published weights the file holds (IMAGENET1K_V1/V2, or a timm tag like a1_in1k); "
    "default: from the file name",
)


def main(argv: Sequence[str]) -> None:
    """Import, then say where the run is and how to score it."""
    from cnnjax.weights.convert import identify, import_weights

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value")
    values = flags.FLAGS
    for name in ("model", "file", "workdir"):
        if not getattr(values, name):
            raise ValueError(f"--{name} is required (python -m cnnjax.weights --help)")
    published = identify(values.source, values.model, values.file, values.weights)
    workdir = import_weights(
        values.file,
        values.model,
        values.workdir,
        source=values.source,
        num_classes=values.num_classes,
        weights=values.weights,
    )
    print(
        f"imported {published.label} into {workdir} as cnnjax's {published.model} (eval: resize "
        f"{published.resize_size}, crop 224, mean {published.mean}, std {published.std}); "
        f"score it with: python -m cnnjax.evaluate --workdir={workdir}"
    )


if __name__ == "__main__":
    app.run(run_cli(main))
