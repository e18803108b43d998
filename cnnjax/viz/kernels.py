"""The classic hand-made kernels (`cnnjax.ops.KERNELS`) applied to one picture, side by side.

Each panel is `cnnjax.ops.apply_kernel(pixels, name)` on the uint8 picture: edge-extended
borders, results rounded and clipped to [0, 255] as in Powell's "Image Kernels" explainer
(so negative responses of the edge detectors show as black).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnjax import ops
from cnnjax.viz.plotting import DEFAULT_DPI, pyplot, save_figure, show_image

DEFAULT_KERNELS = (
    "identity",
    "box_blur",
    "gaussian",
    "sharpen",
    "outline",
    "emboss",
    "sobel_left",
    "sobel_top",
)


def kernels(
    pixels: np.ndarray,
    out: str | Path,
    *,
    names: Sequence[str] = DEFAULT_KERNELS,
    columns: int = 4,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Draw `pixels` ((H, W) or (H, W, C) uint8) filtered by each named kernel, in a grid."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"kernels takes a uint8 picture, got {pixels.dtype}; pass 0-255 pixels")
    names = list(names)
    if not names:
        raise ValueError(f"give at least one kernel name: {', '.join(ops.KERNELS)}")
    filtered = [np.asarray(ops.apply_kernel(pixels, name)) for name in names]
    columns = max(1, min(columns, len(names)))
    rows = -(-len(names) // columns)
    if figsize is None:
        figsize = (2.2 * columns, 2.4 * rows)
    plt = pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, name, image in zip(axes.flat, names, filtered, strict=False):
        show_image(ax, image, title=name.replace("_", " "), vmin=0, vmax=255)
    fig.tight_layout()
    return save_figure(fig, out, dpi)
