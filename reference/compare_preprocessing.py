"""Compare cnnjax's ImageNet evaluation preprocessing with torchvision's, on real JPEG bytes.

Needs torch and torchvision (not cnnjax's own dependencies), plus the light libraries that
cnnjax/data/augment.py imports (simplejpeg, opencv-python-headless, Pillow, numpy). cnnjax's
modules are loaded from this checkout without the package's __init__, so jax, flax and grain
are not needed:

    /work/torchenv/bin/python reference/compare_preprocessing.py --out /tmp/preprocessing.md

Test images: real photographs found offline (matplotlib's grace_hopper.jpg, the board photo
f3.jpg of the Rust embedded book; add your own with --source), cropped to each target aspect,
resized with Pillow (Lanczos) and re-encoded by Pillow at quality 90 (4:2:0 unless stated),
so every input is a real camera-like JPEG of a chosen size.

For each image and each resize (256: torchvision's V1 weights; 232: ResNet-50/101/152 V2) it
compares cnnjax `imagenet_eval` (uint8 224 x 224 crop) with torchvision on the same bytes:

* PIL path, as torchvision's classification reference scripts load images:
  `Image.open(...).convert("RGB")`, `Resize(r, BILINEAR, antialias=True)`, `CenterCrop(224)`;
* tensor path: `torchvision.io.decode_jpeg` and the same transforms on the uint8 tensor;

and, for the floats, `ResNet50_Weights.IMAGENET1K_V1.transforms()` (r = 256) or
`IMAGENET1K_V2.transforms()` (r = 232) on the PIL image / decoded tensor against cnnjax's
`normalize(crop, IMAGENET_MEAN, IMAGENET_STD)`. Differences are absolute, in 0-255 levels
for the uint8 crops; "px differ" is the share of the 224 x 224 pixels with any channel
different. The resized size (before the crop) is checked against torchvision's rule. A second
table compares the three JPEG decoders alone (simplejpeg, Pillow, decode_jpeg) at full size.

The sizes include large images (shorter side >= 2 x resize): before commit 0554128 cnnjax
decoded those DCT-reduced, which put them up to ~120 levels off (docs/preprocessing.md); the
eval view now always decodes at full size, and they stay in the list as a regression check.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import io
import os
import platform
import re
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.models import ResNet50_Weights
from torchvision.transforms import InterpolationMode

REPO = Path(__file__).resolve().parents[1]
CROP = 224
RESIZES = {256: ResNet50_Weights.IMAGENET1K_V1, 232: ResNet50_Weights.IMAGENET1K_V2}

# (width, height, chroma subsampling or "gray", why this size)
TARGETS = [
    (500, 375, "4:2:0", "typical ImageNet landscape"),
    (375, 500, "4:2:0", "typical ImageNet portrait"),
    (500, 375, "4:4:4", "no chroma subsampling"),
    (500, 375, "gray", "grayscale JPEG"),
    # Shorter side >= 2 x resize: decoded DCT-reduced (1/2, 1/4) before commit 0554128.
    (640, 480, "4:2:0", "shorter side >= 2 x 232 only"),
    (600, 513, "4:2:0", "large, odd side (was a resized-size mismatch)"),
    (1024, 683, "4:2:0", "large"),
    (683, 1024, "4:2:0", "large, portrait"),
    (1280, 853, "4:2:0", "large, odd side (was a resized-size mismatch)"),
    (2000, 1500, "4:2:0", "large (shorter side >= 4 x resize)"),
    (300, 300, "4:2:0", "square, upsampled"),
    (240, 320, "4:2:0", "shorter side < 232: upsampled"),
    (800, 200, "4:2:0", "extreme aspect, upsampled"),
]

SOURCE_GLOBS = [
    "/root/.pyenv/versions/*/lib/python3*/site-packages/matplotlib/mpl-data/sample_data/"
    "grace_hopper.jpg",
    str(
        Path(sys.prefix) / "lib/python3*/site-packages/matplotlib/mpl-data/sample_data/"
        "grace_hopper.jpg"
    ),
    os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html/embedded-book/assets/f3.jpg"),
]


def import_cnnjax() -> tuple[types.ModuleType, types.ModuleType]:
    """cnnjax.data.augment and cnnjax.data.catalog from this checkout, skipping the package
    __init__ files (they import jax, flax and grain, which this environment need not have)."""
    for name, folder in (("cnnjax", "cnnjax"), ("cnnjax.data", "cnnjax/data")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(REPO / folder)]
            sys.modules[name] = package
    augment = importlib.import_module("cnnjax.data.augment")
    catalog = importlib.import_module("cnnjax.data.catalog")
    return augment, catalog


def find_sources(extra: list[str]) -> list[Path]:
    """Real photographs to build the test JPEGs from: --source first, then the known ones."""
    found: dict[str, Path] = {}
    for pattern in [*extra, *SOURCE_GLOBS]:
        for path in sorted(glob.glob(pattern)):
            found.setdefault(Path(path).name, Path(path))
    if not found:
        sys.exit("no source photograph found; pass one or more JPEG/PNG photos with --source")
    return list(found.values())


def make_jpeg(source: Image.Image, width: int, height: int, mode: str) -> bytes:
    """Largest centred crop of `source` with the target aspect, resized and encoded at q=90."""
    src_w, src_h = source.size
    if src_w * height > src_h * width:  # source wider than the target: trim the sides
        crop_w, crop_h = round(src_h * width / height), src_h
    else:
        crop_w, crop_h = src_w, round(src_w * height / width)
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    image = source.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if mode == "gray":
        image.convert("L").save(buffer, "JPEG", quality=90)
    else:
        subsampling = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[mode]
        image.save(buffer, "JPEG", quality=90, subsampling=subsampling)
    return buffer.getvalue()


def pick_source(sources: list[tuple[str, Image.Image]], width: int, height: int):
    """The source whose aspect ratio is closest to the target's (least cropping)."""
    return min(sources, key=lambda s: abs(np.log(s[1].size[0] / s[1].size[1] * height / width)))


def uint8_stats(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, float, float]:
    """(max |diff|, mean |diff|, % of pixels with any channel different) of two (H, W, C)."""
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: cnnjax {ours.shape}, torchvision {theirs.shape}")
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return int(diff.max()), float(diff.mean()), 100.0 * float((diff.max(axis=-1) > 0).mean())


def float_stats(ours: np.ndarray, theirs: torch.Tensor) -> tuple[float, float]:
    diff = np.abs(ours - theirs.permute(1, 2, 0).numpy())
    return float(diff.max()), float(diff.mean())


def hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy()


def libjpeg_turbo_version(binary: Path) -> str:
    """The 'libjpeg-turbo version X' string compiled into a shared library, if any."""
    try:
        match = re.search(rb"libjpeg-turbo version ([0-9.]+)", binary.read_bytes())
    except OSError:
        return "?"
    return match.group(1).decode() if match else "?"


def versions(augment: types.ModuleType) -> list[str]:
    import cv2
    import PIL.features
    import simplejpeg

    simplejpeg_so = next(Path(simplejpeg.__file__).parent.glob("_jpeg*.so"), None)
    tv_jpeg = next(
        (Path(torchvision.__file__).parent.parent / "torchvision.libs").glob("libjpeg*.so*"), None
    )
    return [
        f"Python {platform.python_version()}, numpy {np.__version__}",
        f"torch {torch.__version__}, torchvision {torchvision.__version__} "
        f"(decode_jpeg: libjpeg-turbo {libjpeg_turbo_version(tv_jpeg) if tv_jpeg else '?'})",
        f"Pillow {PIL.__version__} (libjpeg-turbo "
        f"{PIL.features.version('libjpeg_turbo')}), used by torchvision's PIL path and by "
        "cnnjax's resize",
        f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo "
        f"{libjpeg_turbo_version(simplejpeg_so) if simplejpeg_so else '?'}), cnnjax's decoder",
        f"opencv-python-headless {cv2.__version__} (imported by cnnjax.data.augment; not used "
        "by the evaluation path)",
        f"cnnjax.data.augment from {Path(augment.__file__).relative_to(REPO)}",
    ]


def fmt_size(hw: tuple[int, ...]) -> str:
    return f"{hw[1]}×{hw[0]}"


def compare(args: argparse.Namespace) -> str:
    augment, catalog = import_cnnjax()
    mean, std = catalog.IMAGENET_MEAN, catalog.IMAGENET_STD
    sources = [(p.stem, Image.open(p).convert("RGB")) for p in find_sources(args.source)]

    main_rows, decoder_rows, notes = [], [], []
    for width, height, mode, why in TARGETS:
        name, source = pick_source(sources, width, height)
        data = make_jpeg(source, width, height, mode)
        label = f"{width}×{height} {mode} ({name})"
        src_h, src_w, kind = augment._image_size(data)
        assert (src_w, src_h) == (width, height)

        pil_image = Image.open(io.BytesIO(data)).convert("RGB")
        tensor = decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
        )
        full = augment._decode(data, kind, height, width)  # cnnjax's decoder, full size

        # The decoders alone, at full size.
        for other, pixels in (("Pillow", np.asarray(pil_image)), ("decode_jpeg", hwc(tensor))):
            mx, mn, pct = uint8_stats(full, pixels)
            decoder_rows.append(
                f"| {label} | simplejpeg vs {other} | {mx} | {mn:.3f} | {pct:.1f} % |"
            )

        for resize, weights in RESIZES.items():
            ours = augment.imagenet_eval(data, image_size=CROP, resize_size=resize)
            ours_size = augment._decode_shorter_side(data, resize).shape[:2]
            ours_float = augment.normalize(ours, mean, std)

            resize_tf = transforms.Resize(
                resize, interpolation=InterpolationMode.BILINEAR, antialias=True
            )
            crop_tf = transforms.CenterCrop(CROP)
            weights_tf = weights.transforms()
            pil_resized = resize_tf(pil_image)
            tv_size = (pil_resized.size[1], pil_resized.size[0])
            paths = {
                "PIL": (np.asarray(crop_tf(pil_resized)), weights_tf(pil_image)),
                "tensor": (hwc(crop_tf(resize_tf(tensor))), weights_tf(tensor)),
            }
            size_cell = fmt_size(tv_size)
            if tuple(ours_size) != tv_size:
                size_cell = f"**{fmt_size(tv_size)} vs {fmt_size(ours_size)}**"
                notes.append(
                    f"{label}, r={resize}: torchvision resizes to {fmt_size(tv_size)} "
                    f"(int({resize} · long / short) on the {width}×{height} original), cnnjax "
                    f"to {fmt_size(ours_size)}"
                )
            for path, (theirs, theirs_float) in paths.items():
                mx, mn, pct = uint8_stats(ours, theirs)
                fmx, fmn = float_stats(ours_float, theirs_float)
                main_rows.append(
                    f"| {label} | {resize} | {size_cell} | {path} | {mx} | "
                    f"{mn:.3f} | {pct:.1f} % | {fmx:.2g} | {fmn:.2g} |"
                )
            print(f"done {label} r={resize}: {why}", file=sys.stderr)

    weights_desc = "; ".join(
        f"`{w}.transforms()` = resize {t.resize_size}, crop {t.crop_size}, "
        f"{t.interpolation.value}, antialias={t.antialias}, mean {t.mean}, std {t.std}"
        for w, t in ((w, w.transforms()) for w in RESIZES.values())
    )
    lines = [
        "### cnnjax `imagenet_eval` vs torchvision, 224 × 224 centre crop",
        "",
        "Δ = |cnnjax − torchvision|: uint8 levels (0-255) for the crops, normalised units "
        "((x/255 − mean)/std) for the floats; *px differ*: share of the 224 × 224 pixels with "
        "any channel different. *resized W×H*: torchvision's size before the crop; a bold "
        "size is one where cnnjax's resized image differs from it.",
        "",
        "| image (W×H, chroma, source) | resize | resized W×H | path | max Δ | mean Δ "
        "| px differ | float max Δ | float mean Δ |",
        "|---|---|---|---|---|---|---|---|---|",
        *main_rows,
        "",
        "### The JPEG decoders alone (full size, whole image)",
        "",
        "| image | decoders | max Δ | mean Δ | px differ |",
        "|---|---|---|---|---|",
        *decoder_rows,
        "",
        f"Float transforms: {weights_desc}.",
        "",
    ]
    if notes:
        lines += ["Resized sizes that differ from torchvision's rule:", ""]
        lines += [f"* {note}" for note in notes] + [""]
    lines += ["Versions:", ""] + [f"* {v}" for v in versions(augment)] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the markdown tables to this file")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        help="a photograph (glob allowed) to build the test JPEGs from; repeatable",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = compare(args)
    report += f"\nRun time: {time.perf_counter() - start:.1f} s (after imports).\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
