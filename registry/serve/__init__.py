"""Serve production aliases over HTTP, hot-swapped on promotion; a read-only web UI.

- :mod:`registry.serve.pool`: one backbone per base model; adapters and fusions loaded beside
  each other on it; the alias watcher that swaps ``TASK:production`` atomically.
- :mod:`registry.serve.batcher`: dynamic micro-batching of concurrent requests.
- :mod:`registry.serve.app`: the FastAPI application (predict, models, health, metrics, docs).
- :mod:`registry.serve.ui`: the server-rendered pages under ``/ui``.

Nothing here imports torch at module level; the pool imports it when it loads a model.
"""

from __future__ import annotations

from .config import ServeConfig

__all__ = ["ServeConfig"]
