"""adapter-registry: a continual-learning registry for task adapters on frozen encoders.

Import light: heavy libraries (torch, transformers, adapters, huggingface_hub) load only in the
modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
