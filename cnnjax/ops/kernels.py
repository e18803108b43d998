"""The classic hand-made image kernels, and `apply_kernel` to run one over a picture.

Values follow Victor Powell's "Image Kernels" explainer (setosa.io/ev/image-kernels), which
applies them as a weighted sum over the neighbourhood, i.e. cross-correlation (`conv2d`):

  name          kernel                                      note
  identity      [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
  box_blur      ones(3, 3) / 9                              mean of the neighbourhood
  smooth        [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16      setosa's "blur" (3×3 binomial)
  gaussian      outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256   5×5 binomial approximation
  sharpen       [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
  outline       [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]   Laplacian-style edge detector
  emboss        [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
  sobel_top     [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]        bright above, dark below -> positive
  sobel_bottom  -sobel_top
  sobel_left    [[1, 0, -1], [2, 0, -2], [1, 0, -1]]        bright left, dark right -> positive
  sobel_right   -sobel_left
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.ops.conv import conv2d, same_padding


def _frozen(rows: list[list[int]] | np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A read-only float32 kernel, so the shared table cannot be edited by accident."""
    kernel = np.asarray(rows, dtype=np.float64) / scale
    kernel = kernel.astype(np.float32)
    kernel.setflags(write=False)
    return kernel


_BINOMIAL_5 = np.array([1, 4, 6, 4, 1])  # row 4 of Pascal's triangle

KERNELS: dict[str, np.ndarray] = {
    "identity": _frozen([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box_blur": _frozen(np.ones((3, 3)), 9),
    "smooth": _frozen([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 16),
    "gaussian": _frozen(np.outer(_BINOMIAL_5, _BINOMIAL_5), 256),
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "outline": _frozen([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "emboss": _frozen([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
    "sobel_top": _frozen([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]),
    "sobel_bottom": _frozen([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "sobel_left": _frozen([[1, 0, -1], [2, 0, -2], [1, 0, -1]]),
    "sobel_right": _frozen([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
}


def _resolve_kernel(name_or_kernel: str | jax.Array | np.ndarray) -> jax.Array:
    if isinstance(name_or_kernel, str):
        name = name_or_kernel.lower()
        if name not in KERNELS:
            raise ValueError(
                f"unknown kernel {name_or_kernel!r}; choose one of {', '.join(KERNELS)} "
                f"or pass a 2-D array"
            )
        return jnp.asarray(KERNELS[name])
    kernel = jnp.asarray(name_or_kernel)
    if kernel.ndim != 2:
        raise ValueError(
            f"apply_kernel needs a 2-D (kh, kw) kernel or a name from KERNELS, got shape "
            f"{kernel.shape}"
        )
    return kernel.astype(jnp.float32)


def apply_kernel(
    image: jax.Array | np.ndarray, name_or_kernel: str | jax.Array | np.ndarray
) -> jax.Array:
    """Filter an image with a named (see `KERNELS`) or given 2-D kernel, channel by channel.

    image: (H, W) or (H, W, C), uint8 or floating. The output has the input's shape: the border
    is extended by repeating the edge pixels (not zeros), so a blur does not darken the frame.
    uint8 in gives uint8 out, rounded and clipped to [0, 255]; floats come back unclipped in
    the input dtype.
    """
    image = jnp.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"apply_kernel takes an (H, W) or (H, W, C) image, got shape {image.shape}"
        )
    is_uint8 = image.dtype == jnp.uint8
    if not (is_uint8 or jnp.issubdtype(image.dtype, jnp.floating)):
        raise ValueError(
            f"apply_kernel takes uint8 or floating images, got {image.dtype}; convert with "
            f".astype(np.uint8) or .astype(np.float32)"
        )
    kernel = _resolve_kernel(name_or_kernel)
    pads = [same_padding(n, f) for n, f in zip(image.shape[:2], kernel.shape, strict=True)]
    pads += [(0, 0)] * (image.ndim - 2)
    padded = jnp.pad(image.astype(jnp.float32), pads, mode="edge")
    out = conv2d(padded, kernel)
    if is_uint8:
        return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
    return out.astype(image.dtype)
