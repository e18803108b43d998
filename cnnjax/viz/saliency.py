"""Saliency figures: where the input gradient of the predicted class is large, per method.

Row 1: the input (with the predicted class) and, per method, the map max_c |d logit / d x|;
row 2: each map overlaid on the grey input. Methods and how their gradients are computed:
`cnnjax.viz.backprop` (plain gradient, guided backprop, deconvnet).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax.viz.backprop import METHODS, input_gradient, saliency_map
from cnnjax.viz.plotting import DEFAULT_DPI, pyplot, save_figure, show_image

TITLES = {"gradient": "gradient", "guided": "guided backprop", "deconvnet": "deconvnet"}


def _grey(display: np.ndarray) -> np.ndarray:
    """(H, W, C) picture -> (H, W) grey levels in [0, 1] for the overlay background."""
    pixels = np.asarray(display, dtype=np.float32)
    grey = pixels.mean(axis=-1) if pixels.ndim == 3 else pixels
    span = float(grey.max() - grey.min())
    return (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)


def saliency(
    model: Any,
    variables: Any,
    image: np.ndarray,
    out: str | Path,
    *,
    methods: Sequence[str] = ("gradient",),
    display: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    target: int | None = None,
    label: int | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Saliency maps of one normalised (H, W, C) `image` for the predicted (or `target`) class.

    `display` is the picture shown (default: `image` min-max scaled); `methods` any of
    'gradient', 'guided', 'deconvnet'; `label`, the true class when known, goes in the title.
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown or methods!r}; choose from {', '.join(METHODS)}")
    image = np.asarray(image, dtype=np.float32)
    if display is None:
        display = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    maps = []
    for method in methods:
        gradient, target_class, logits = input_gradient(model, variables, image, method, target)
        maps.append(saliency_map(gradient))
    names = list(class_names) if class_names else [str(i) for i in range(len(logits))]
    probability = float(np.exp(logits[target_class] - np.logaddexp.reduce(logits)))
    kind = "predicted" if target is None else "class"
    title = f"{kind} {names[target_class]} ({probability:.0%})"
    if label is not None:
        title += f"\ntrue {names[label]}"

    columns = 1 + len(methods)
    if figsize is None:
        figsize = (2.2 * columns, 4.6)
    plt = pyplot()
    fig, axes = plt.subplots(2, columns, figsize=figsize, squeeze=False)
    show_image(axes[0, 0], display, title=title)
    axes[1, 0].set_axis_off()
    background = _grey(display)
    for j, (method, heat) in enumerate(zip(methods, maps, strict=True), start=1):
        show_image(axes[0, j], heat, title=TITLES[method], cmap="hot")
        show_image(axes[1, j], background, cmap="gray")
        axes[1, j].imshow(heat, cmap="jet", alpha=0.5, interpolation="bilinear")
    fig.tight_layout()
    return save_figure(fig, out, dpi)
