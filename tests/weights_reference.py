"""The reference outputs of reference/make_parity_outputs.py, and the state_dicts behind them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from cnnjax.weights.synthetic import synthetic_state_dict

REFERENCE = Path(__file__).parent / "data" / "weights_parity"


@functools.cache
def reference() -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays): the cases and versions, and logits / keys / shapes by name."""
    meta = json.loads(REFERENCE.with_suffix(".json").read_text())
    with np.load(REFERENCE.with_suffix(".npz"), allow_pickle=False) as arrays:
        return meta, {key: arrays[key] for key in arrays.files}


def source_state_dict(source: str, model: str) -> dict[str, np.ndarray]:
    """The synthetic state_dict the reference script loaded into the source's network."""
    _, arrays = reference()
    keys = [str(k) for k in arrays[f"{source}/{model}/keys"]]
    shapes = [tuple(int(n) for n in row if n >= 0) for row in arrays[f"{source}/{model}/shapes"]]
    return synthetic_state_dict(zip(keys, shapes, strict=True))


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| relative to the largest |theirs|."""
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))
