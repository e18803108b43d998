"""Weight constraints the papers apply after every update: max-norm columns, capped filter RMS.

| op                    | applies to                         | paper                           |
|-----------------------|------------------------------------|---------------------------------|
| `max_norm_columns`    | a dense kernel (in, out): each     | Kim 2014 Sec. 3.1 (s = 3), after |
|                       | output unit's weight vector ≤ r    | Hinton et al. 2012's max-norm   |
| `cap_filter_rms`      | a conv kernel (kh, kw, in, out):   | Zeiler & Fergus 2014 Sec. 3     |
|                       | each filter's RMS ≤ r              | (r = 0.1)                       |

Both are projections onto l2 balls (optax's `projection_l2_ball`), run per column / filter:
a vector inside the ball is returned unchanged, one outside is rescaled onto its surface.
"""

from __future__ import annotations

import math

import jax
import optax


def max_norm_columns(kernel: jax.Array, max_norm: float) -> jax.Array:
    """Rescale each column (one output unit's incoming weights) to l2 norm ≤ `max_norm`."""
    per_column = jax.vmap(optax.projections.projection_l2_ball, in_axes=(-1, None), out_axes=-1)
    return per_column(kernel, max_norm)


def cap_filter_rms(kernel: jax.Array, max_rms: float) -> jax.Array:
    """Rescale each filter (last axis) whose RMS exceeds `max_rms` to exactly `max_rms`.

    RMS ≤ r over n = kh·kw·in weights is the l2 ball of radius r·sqrt(n).
    """
    radius = max_rms * math.sqrt(math.prod(kernel.shape[:-1]))
    return max_norm_columns(kernel, radius)
