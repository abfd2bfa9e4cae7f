"""The full fine-tuning baseline: every parameter of the base model trains (never registered).

Benchmarks compare adapters and fusions against it. It plans like ``registry.trainer.train``
(same checks, rows and validation split, against a throw-away registry), adds the same adapter
and head, then unfreezes everything and runs the shared fit loop.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from registry.configs import TrainConfig
from registry.fitting import FitResult, fit_and_evaluate
from registry.runtime import pick_device, seed_everything, set_threads
from registry.store import Registry
from registry.trainer import MODULE, plan_training


def full_finetune(
    task: str, data: Any, base: str, config: TrainConfig | None = None, progress: bool = False
) -> tuple[dict[str, dict[str, float]], FitResult]:
    """Fully fine-tune ``base`` + a head on ``data``; return (metrics per split, fit result)."""
    from registry.backbone import Backbone

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Registry.init(Path(tmp) / "scratch")
        try:
            plan = plan_training(scratch, task, data, base, config=config)
        finally:
            scratch.close()
    cfg = plan.config
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    backbone = Backbone.load(base, device=device)
    backbone.add_adapter(MODULE, cfg.method, cfg.reduction_factor, cfg.leave_out or None)
    backbone.add_head(MODULE, plan.schema.label_names, layers=cfg.head_layers)
    backbone.activate(MODULE, MODULE)
    backbone.unfreeze_all()
    seed_everything(cfg.seed)
    result, metrics = fit_and_evaluate(
        backbone, plan.fit_data(), cfg, progress=progress, desc=f"fine-tune {task}"
    )
    return metrics, result
