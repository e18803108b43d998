"""Feature maps of chosen layers for one input image, one panel of tiles per layer.

Each panel shows a layer's output (`cnnjax.features`: the module's return value, so a bare
conv's maps are pre-ReLU) as one tile per channel, first `max_maps` channels, on one colour
scale per layer so weak and dead maps stand out. A vector output (a dense layer) is drawn as
its values wrapped into a strip about eight times wider than tall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax.features import feature_shapes, features
from cnnjax.viz.plotting import DEFAULT_DPI, mosaic, pyplot, save_figure, show_image


def default_layers(model: Any, input_shape: Sequence[int]) -> list[str]:
    """The model's top-level layers whose outputs are feature maps (H, W, C), in call order."""
    shapes = feature_shapes(model, input_shape)
    return [name for name, shape in shapes.items() if "/" not in name and len(shape) == 3]


def _map_columns(count: int) -> int:
    """Tiles per row: all of up to 8 maps, else half of them, at most 16 (16 -> 8, 32 -> 16)."""
    return count if count <= 8 else min(16, max(8, -(-count // 2)))


def layer_panel(value: np.ndarray, max_maps: int) -> tuple[np.ndarray, str]:
    """One example's layer output -> (2-D image of tiles, caption of what is shown)."""
    value = np.asarray(value, dtype=np.float32)
    shape = "×".join(map(str, value.shape))
    if value.ndim == 3:
        shown = min(value.shape[-1], max_maps)
        tiles = np.moveaxis(value[..., :shown], -1, 0)
        grid = mosaic(tiles, columns=_map_columns(shown), pad=1)
        note = f" (first {shown} maps)" if shown < value.shape[-1] else ""
        return grid, shape + note
    flat = value.reshape(-1)
    # A strip about 8 times wider than tall: one row up to 32 values, 4096 -> 23 rows of 182.
    columns = flat.size if flat.size <= 32 else math.ceil(math.sqrt(flat.size * 8))
    padded = np.full(math.ceil(flat.size / columns) * columns, np.nan, np.float32)
    padded[: flat.size] = flat
    return padded.reshape(-1, columns), f"{shape} (in rows of {columns})"


def activations(
    model: Any,
    variables: Any,
    image: np.ndarray,
    layers: Sequence[str],
    out: str | Path,
    *,
    display: np.ndarray | None = None,
    max_maps: int = 32,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Plot the input and the outputs of `layers` for one normalised (H, W, C) `image`.

    `display` is the picture to show for the input (default: `image` min-max scaled).
    """
    if max_maps < 1:
        raise ValueError(f"max_maps must be >= 1, got {max_maps}")
    image = np.asarray(image, dtype=np.float32)
    outputs = features(model, variables, image[None], list(layers))
    panels = [layer_panel(np.asarray(outputs[name])[0], max_maps) for name in layers]
    if display is None:
        display = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    # Every panel spans the figure width; its height follows its tile grid's aspect.
    ratios = [0.35] + [min(max(g.shape[0] / g.shape[1], 0.08), 1.2) for g, _ in panels]
    width = 8.0
    if figsize is None:
        figsize = (width, round(sum(ratios) * width * 0.9 + 0.45 * len(ratios), 2))
    plt = pyplot()
    fig, axes = plt.subplots(len(ratios), 1, figsize=figsize, height_ratios=ratios)
    axes = np.atleast_1d(axes)
    show_image(axes[0], display, title="input")
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    for ax, name, (grid, caption) in zip(axes[1:], layers, panels, strict=True):
        values = grid[np.isfinite(grid)]
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        ax.imshow(
            grid,
            cmap=cmap,
            vmin=low,
            vmax=high if high > low else low + 1.0,
            interpolation="nearest",
        )
        ax.set_axis_off()
        ax.set_title(f"{name}  {caption}  [{low:.2g}, {high:.2g}]", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi)
