"""First-layer filters as an image grid (Krizhevsky et al. 2012, Fig. 3: 96 11×11×3 kernels).

Each (kh, kw, cin) filter is min-max scaled to [0, 1] before drawing:

- `normalize='per_filter'` (default, the usual rendering, e.g. the AlexNet figure): every filter
  gets its own min and max over all its weights, so each tile uses the full colour range and
  its pattern is visible however small its weights; colour balance within a filter is kept.
  Tiles can then not be compared for strength.
- `normalize='global'`: one min and max over the whole layer, so tiles are comparable and weak
  (or dead) filters look flat grey.

Filters over 3 input channels are drawn in colour (RGB order), over 1 channel in grey; any
other input width (a deeper layer) gives a grey tile per (filter, input channel), one row per
filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax.features import feature_names
from cnnjax.layers.residual import unrolled
from cnnjax.viz.plotting import DEFAULT_DPI, grid_columns, mosaic, pyplot, save_figure

NORMALIZATIONS = ("per_filter", "global")


def normalize_filters(kernel: np.ndarray, normalize: str = "per_filter") -> np.ndarray:
    """(kh, kw, cin, cout) conv kernel -> (cout, kh, kw, cin) filters min-max scaled to [0, 1].

    A constant filter (max == min) becomes mid grey (0.5).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose per_filter or global")
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 4:
        raise ValueError(f"expected a (kh, kw, in, out) conv kernel, got shape {kernel.shape}")
    filters = np.moveaxis(kernel, -1, 0)
    axes = (1, 2, 3) if normalize == "per_filter" else (0, 1, 2, 3)
    low = filters.min(axis=axes, keepdims=True)
    span = filters.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (filters - low) / safe, 0.5).astype(np.float32)


def filter_tiles(filters: np.ndarray) -> tuple[np.ndarray, int]:
    """(cout, kh, kw, cin) filters -> (tiles, columns): colour/grey tiles, or one per channel."""
    count, height, width, channels = filters.shape
    if channels in (1, 3):
        return filters, grid_columns(count)
    per_channel = np.moveaxis(filters, -1, 1).reshape(count * channels, height, width, 1)
    return per_channel, channels


def conv_kernel(
    model: Any, variables: Any, input_shape: Sequence[int], layer: str | None = None
) -> tuple[str, np.ndarray]:
    """(name, kernel) of the first convolution inside `layer` (default: of the whole model).

    'Inside' means the layer itself or its submodules in call order, so a conv-BN unit's name
    ('conv1') finds its convolution ('conv1/conv').
    """
    names = feature_names(model, input_shape)
    params = unrolled(model, variables)[1]["params"]  # scanned stages: kernels block by block

    def kernel_of(name: str) -> Any:
        node = params
        for key in name.split("/"):
            node = node.get(key, {}) if hasattr(node, "get") else {}
        kernel = node.get("kernel") if hasattr(node, "get") else None
        return kernel if kernel is not None and np.ndim(kernel) == 4 else None

    if layer is not None and layer not in names:
        top = ", ".join(n for n in names if "/" not in n)
        raise ValueError(f"{type(model).__name__} has no layer {layer!r}; top-level layers: {top}")
    inside = [n for n in names if layer is None or n == layer or n.startswith(layer + "/")]
    for name in inside:
        kernel = kernel_of(name)
        if kernel is not None:
            return name, np.asarray(kernel)
    convs = [n for n in names if kernel_of(n) is not None]
    raise ValueError(
        f"layer {layer!r} holds no 2-D convolution; layers with one: {', '.join(convs) or 'none'}"
    )


def filters(
    kernel: np.ndarray,
    out: str | Path,
    *,
    normalize: str = "per_filter",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Draw a (kh, kw, cin, cout) conv kernel as a grid of filters (see the module docstring).

    The default figure is 0.8 inch per grid column (4 to 8 inches) wide, with the grid's aspect.
    """
    tiles, columns = filter_tiles(normalize_filters(kernel, normalize))
    colour = tiles.shape[-1] == 3
    grid = mosaic(tiles, columns, pad=1, fill=1.0 if colour else np.nan)
    if figsize is None:
        width = min(max(0.8 * columns, 4.0), 8.0)
        figsize = (width, round(width * grid.shape[0] / grid.shape[1] + 0.5, 2))
    plt = pyplot()
    fig = plt.figure(figsize=figsize)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 - 0.4 / figsize[1]))
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    if colour:
        ax.imshow(grid, interpolation="nearest")
    else:
        ax.imshow(grid[..., 0], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    height, width_px, channels, count = np.shape(kernel)
    shape = f"{height}×{width_px}×{channels}"
    ax.set_title(title or f"{count} filters {shape} ({normalize.replace('_', '-')})", fontsize=10)
    return save_figure(fig, out, dpi)
