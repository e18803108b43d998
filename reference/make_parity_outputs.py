"""Reference logits of torchvision's and timm's networks on synthetic weights, for the test suite.

    python reference/make_parity_outputs.py   # needs torch, torchvision and timm; not jax

For every (source, model) pair cnnjax imports, this builds the source's network, fills it with
the synthetic state_dict of `cnnjax/weights/synthetic.py` (numpy only, so the test suite
rebuilds the same tensors without torch), and records its eval-mode float32 logits on
synthetic inputs at 224 and at an odd size, with the state_dict's keys and shapes.
`tests/test_weights_parity.py` rebuilds that state_dict, converts it with
`cnnjax.weights.convert` (so every key must be used) and compares logits. Written:
tests/data/weights_parity.npz (logits, keys, shapes; read with allow_pickle=False) and
tests/data/weights_parity.json (cases, versions).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _synthetic_module():
    """cnnjax/weights/synthetic.py loaded on its own (numpy only; the package needs jax)."""
    path = ROOT / "cnnjax" / "weights" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("cnnjax_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _synthetic_module()

# cnnjax model -> the source's network, and the odd input size both accept with the same function.
# torchvision's VGG adaptive-pools pool5 to 7×7, which is the identity from 224 to 231 only; timm's
# VGG applies fc6/fc7 as convolutions and averages, as cnnjax's dense evaluation does at 257.
TORCHVISION = {
    **{
        f"resnet{d}": (lambda d=d: getattr(torchvision.models, f"resnet{d}")(), 193)
        for d in (18, 34, 50, 101, 152)
    },
    **{
        f"vgg{d}{bn}": (lambda d=d, bn=bn: getattr(torchvision.models, f"vgg{d}{bn}")(), 225)
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
    **{
        f"densenet{d}": (lambda d=d: getattr(torchvision.models, f"densenet{d}")(), 193)
        for d in (121, 161, 169, 201)
    },
    "googlenet_bn": (
        lambda: torchvision.models.googlenet(
            aux_logits=True, transform_input=False, init_weights=False
        ),
        193,
    ),
    "alexnet_tv": (lambda: torchvision.models.alexnet(), 193),
}
TIMM = {
    **{
        f"resnet{d}": (lambda d=d: timm.create_model(f"resnet{d}"), 193)
        for d in (18, 34, 50, 101, 152)
    },
    **{
        f"vgg{d}{bn}": (lambda d=d, bn=bn: timm.create_model(f"vgg{d}{bn}"), 257)
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
    **{
        f"densenet{d}": (lambda d=d: timm.create_model(f"densenet{d}"), 193)
        for d in (121, 161, 169, 201)
    },
}


def logits(network: torch.nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    """Eval-mode float32 logits of NHWC images (fed as NCHW)."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return network(x).numpy().astype(np.float32)


def fill(network: torch.nn.Module) -> torch.nn.Module:
    """The network in eval mode with the synthetic tensors of its own state_dict."""
    shapes = [(k, tuple(v.shape)) for k, v in network.state_dict().items()]
    tensors = synthetic.synthetic_state_dict(shapes, SEED)
    network.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return network.eval()


def googlenet_transform_input() -> np.ndarray:
    """torchvision's pretrained GoogLeNet convention: ImageNet-normalised in, transform_input."""
    network = fill(
        torchvision.models.googlenet(aux_logits=True, transform_input=True, init_weights=False)
    )
    pixels = (synthetic.synthetic_images(2, 224, SEED) + 2) / 4  # [0, 1)
    return logits(network, ((pixels - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32))


def _padded_shapes(shapes) -> np.ndarray:
    """Tensor shapes as rows of 4 ints, padded with -1 (an npz holds no ragged lists)."""
    return np.array([list(shape) + [-1] * (4 - len(shape)) for shape in shapes], np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "weights_parity")
    args = parser.parse_args()
    torch.set_num_threads(2)
    outputs: dict[str, np.ndarray] = {}
    cases = []
    started = time.time()
    for source, table in (("torchvision", TORCHVISION), ("timm", TIMM)):
        for model, (build, odd) in table.items():
            network = fill(build())
            state = network.state_dict()
            outputs[f"{source}/{model}/keys"] = np.array(list(state))
            outputs[f"{source}/{model}/shapes"] = _padded_shapes(v.shape for v in state.values())
            for batch, size in ((2, 224), (1, odd)):
                key = f"{source}/{model}/{size}"
                outputs[key] = logits(network, synthetic.synthetic_images(batch, size, SEED))
                cases.append({"source": source, "model": model, "size": size, "batch": batch})
            print(f"{source} {model}: done ({time.time() - started:.0f} s)", flush=True)
    outputs["torchvision/googlenet_bn/transform_input"] = googlenet_transform_input()
    np.savez_compressed(args.out.with_suffix(".npz"), **outputs)
    meta = {
        "made_by": "reference/make_parity_outputs.py",
        "seed": SEED,
        "cases": cases,
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(outputs)} logit arrays to {args.out}.npz in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
