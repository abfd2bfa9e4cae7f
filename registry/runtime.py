"""Where and how reproducibly a run executes: device choice, threads, seeds, library versions."""

from __future__ import annotations

import contextlib
import platform
import random
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InvalidInput

if TYPE_CHECKING:
    from .configs import FitConfig

C = TypeVar("C", bound="FitConfig")


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


def bf16_supported(device: str) -> bool:
    """Return whether ``device`` is a GPU that runs bf16 natively (Ampere and later)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_config(config: C) -> C:
    """Pick the config's device and fill in the defaults that depend on it.

    Raises:
        InvalidInput: a GPU was asked for and there is none; fp16 without a GPU.
    """
    from .distributed import rank_device

    device = rank_device(pick_device(config.device))
    return config.resolved(device, bf16_supported=bf16_supported(device))


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Return the autocast context of a resolved ``precision`` (a no-op for fp32)."""
    if precision in ("fp32", "auto"):
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.split(":")[0], dtype=dtype)


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
