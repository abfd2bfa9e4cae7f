"""Where and how reproducibly a run executes: device choice, threads, seeds, library versions."""

from __future__ import annotations

import platform
import random
from importlib.metadata import PackageNotFoundError, version

from .errors import InvalidInput


def pick_device(requested: str) -> str:
    """Return ``cuda`` when asked for (or ``auto`` and available), else ``cpu``.

    Raises:
        InvalidInput: a GPU was asked for and there is none.
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput("CUDA was requested but no GPU is available.", hint="Use --device cpu")
    return requested


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count (None keeps torch's choice)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    """Return the versions that decide numerical results."""
    import torch
    import transformers

    from . import __version__

    return {
        "adapter-registry": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adapters": dist_version("adapters"),
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }


def dist_version(name: str) -> str:
    """Return an installed distribution's version, or ``unknown``."""
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"
