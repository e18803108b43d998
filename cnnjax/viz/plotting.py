"""Shared figure plumbing: matplotlib's Agg backend, PNG output and tile mosaics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DPI = 100


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_png_path(out: str | Path) -> Path:
    """The output path, which must end in .png (its folder is created when missing)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output {str(out)!r} must be a .png file, e.g. --out=filters.png")
    return out


def save_figure(fig: Any, out: str | Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write `fig` as a PNG of exactly figsize × dpi pixels and close it; returns the path."""
    out = check_png_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    pyplot().close(fig)
    return out


def grid_columns(count: int, aspect: float = 1.5) -> int:
    """Columns of a grid of `count` tiles about `aspect` times wider than tall (96 -> 12)."""
    return max(1, min(count, math.ceil(math.sqrt(count * aspect))))


def mosaic(tiles: np.ndarray, columns: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """Lay (N, h, w[, c]) tiles out row by row in `columns`, `pad` pixels of `fill` between.

    Float output; NaN padding shows as the colour map's 'bad' colour (white in our plots).
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    count, height, width = tiles.shape[:3]
    rows = math.ceil(count / columns)
    out = np.full(
        (rows * (height + pad) - pad, columns * (width + pad) - pad, *tiles.shape[3:]),
        fill,
        np.float32,
    )
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + pad), (i % columns) * (width + pad)
        out[top : top + height, left : left + width] = tile
    return out


def show_image(ax: Any, image: np.ndarray, title: str | None = None, **imshow: Any) -> None:
    """Draw an (H, W, 1|3) or (H, W) image without axes; one channel is drawn in grey."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
        imshow.setdefault("cmap", "gray")
    ax.imshow(image, interpolation="nearest", **imshow)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
