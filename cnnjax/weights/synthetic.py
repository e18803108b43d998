"""Synthetic state_dicts and inputs that numpy alone reproduces, for parity tests without torch.

Each tensor is a function of (seed, its name, its shape) through numpy's PCG64 generator and
`Generator.random` (uniform doubles, a stream numpy keeps stable), so a script with torch
(`reference/make_parity_outputs.py`) and the test suite without it build the same weights.
Scales keep deep nets' activations in range: He-uniform conv/linear weights, BatchNorm with
non-trivial statistics (running mean in ±0.2, variance in [0.5, 2], scale in [0.5, 1.5]).

Only numpy is imported, so the reference script can load this file on its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np


def _uniform(seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.random(shape)  # float64 in [0, 1)


def synthetic_tensor(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The tensor `name` of a synthetic state_dict (float32; BN counters as int64 zeros)."""
    shape = tuple(int(n) for n in shape)
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, np.int64)
    u = _uniform(seed, name, shape)
    if name.endswith("running_var"):
        values = 0.5 + 1.5 * u
    elif name.endswith("running_mean"):
        values = 0.4 * (u - 0.5)
    elif name.endswith("bias"):
        values = 0.2 * (u - 0.5)
    elif len(shape) == 1:  # a 1-D weight is a BatchNorm scale
        values = 0.5 + u
    else:  # conv (out, in, kh, kw) or linear (out, in): He-uniform over the fan-in
        fan_in = int(np.prod(shape[1:]))
        values = (2 * u - 1) * np.sqrt(6.0 / fan_in)
    return values.astype(np.float32)


def synthetic_state_dict(
    shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int = 0
) -> dict[str, np.ndarray]:
    """{name: tensor} for (name, shape) pairs, e.g. a torch model's state_dict items."""
    return {name: synthetic_tensor(name, shape, seed) for name, shape in shapes}


def synthetic_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """(batch, size, size, 3) float32 in [-2, 2): normalised-image-like NHWC inputs."""
    return (4 * _uniform(seed, f"images/{batch}x{size}", (batch, size, size, 3)) - 2).astype(
        np.float32
    )
