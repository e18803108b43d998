"""Reading published weight files without executing anything they contain.

`.safetensors` (a JSON header and raw arrays) is read with the `safetensors` package, no torch
needed. A PyTorch `.pth`/`.pt` file is a pickle: it is read only with
`torch.load(weights_only=True)`, whose unpickler admits tensors and plain containers and
refuses every other object, and only when torch is installed (an optional extra).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np

SAFETENSORS = (".safetensors",)
PICKLED = (".pth", ".pt", ".bin")
# torchvision names its files NAME-HASH.pth, HASH being the first hex digits of their sha256.
_HASHED_NAME = re.compile(r"-([0-9a-f]{8,})$")


class WeightsFileError(ValueError):
    """A weight file that cannot be read as one (missing, damaged, unsafe, needs torch)."""


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The named arrays of a .safetensors or PyTorch state_dict file, as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"--file={path}: no such file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        return _read_safetensors(path)
    if suffix in PICKLED:
        return _read_state_dict(path)
    raise WeightsFileError(
        f"--file={path}: unknown format {suffix or '(no extension)'}; pass a .safetensors file "
        f"or a PyTorch state_dict ({', '.join(PICKLED)})"
    )


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, ValueError, OSError) as e:
        raise WeightsFileError(f"--file={path} is not a readable .safetensors file ({e})") from None


def _read_state_dict(path: Path) -> dict[str, np.ndarray]:
    if importlib.util.find_spec("torch") is None:
        raise WeightsFileError(
            f"--file={path}: reading PyTorch files needs torch (pip install 'cnnjax[torch]'); "
            "or pass the same tensors as .safetensors"
        )
    check_torchvision_hash(path)
    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unsafe or damaged pickle: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(
            f"--file={path} cannot be read as a state_dict of tensors ({first[:200]})"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint that wraps the state_dict
    tensors_only = isinstance(loaded, dict) and all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    )
    if not tensors_only:
        raise WeightsFileError(f"--file={path} holds no state_dict (a mapping of names to tensors)")
    return {name: _to_numpy(tensor) for name, tensor in loaded.items()}


def _to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()  # numpy has no bfloat16; float32 holds it exactly
    return tensor.detach().cpu().numpy()


def check_torchvision_hash(path: Path) -> None:
    """A torchvision-named file whose sha256 does not start with its name's hash is damaged."""
    match = _HASHED_NAME.search(path.stem)
    if match is None:
        return
    digest = sha256(path)
    if not digest.startswith(match[1]):
        raise WeightsFileError(
            f"--file={path} is damaged or not the published file: its sha256 starts with "
            f"{digest[: len(match[1])]}, its name says {match[1]}; download it again"
        )


def sha256(path: Path) -> str:
    """The file's sha256 in hex, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
