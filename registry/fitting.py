"""The fit loop shared by adapter and fusion training, and the scoring of what it trained.

:func:`fit` trains whatever parameters of a :class:`~registry.backbone.Backbone` require a
gradient (an adapter + head, or a fusion layer + head) and restores the best validation epoch;
:func:`fit_and_evaluate` adds the batching before and the per-split scores after, so trainer and
composer run one training path.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .configs import FitConfig
from .data import Example, label_distribution, make_batches
from .errors import InvalidInput
from .fit_steps import LOG_EVERY as LOG_EVERY
from .fit_steps import _Steps
from .progress import bar

if TYPE_CHECKING:
    from torch import Tensor

    from .backbone import Backbone
    from .prefix_cache import PrefixCache

#: Batch size when scoring the finished model on each split (on a CPU; see :func:`eval_batching`).
EVAL_BATCH_SIZE = 64
#: Rows and padded tokens per no-grad batch on a GPU: no gradients or optimiser state to hold,
#: so batches are several times the training ones.
GPU_EVAL_BATCH_SIZE = 1024
GPU_EVAL_MAX_TOKENS = 1024 * 128


def eval_batching(device: str) -> tuple[int, int | None]:
    """Return (rows, max padded tokens) of a no-grad batch on ``device``."""
    if device.startswith("cuda"):
        return GPU_EVAL_BATCH_SIZE, GPU_EVAL_MAX_TOKENS
    return EVAL_BATCH_SIZE, None


@dataclass
class EpochLog:
    """Loss and validation scores after one epoch."""

    epoch: int
    train_loss: float
    val_accuracy: float | None
    val_macro_f1: float | None
    train_time_s: float = 0.0


@dataclass
class FitResult:
    """What :func:`fit` measured."""

    best_epoch: int
    history: list[EpochLog]
    wall_time_s: float
    train_time_s: float
    real_tokens: int
    steps: int

    @property
    def tokens_per_s(self) -> float:
        """Return real (unpadded) training tokens per second of training time."""
        return self.real_tokens / self.train_time_s if self.train_time_s > 0 else 0.0


@dataclass
class FitData:
    """The rows of one training run: fitted, choosing the epoch, and scored afterwards."""

    train_rows: list[Example]
    val_rows: list[Example]
    eval_sets: dict[str, list[Example]]
    label_names: list[str]


def class_weight_tensor(examples: Sequence[Example], label_names: list[str]) -> Tensor:
    """Return inverse-frequency class weights ``n / (K * n_c)`` (1.0 for absent classes)."""
    import torch

    counts = label_distribution(list(examples))
    n = sum(counts.values())
    k = len(label_names)
    weights = [n / (k * counts[lab]) if counts.get(lab) else 1.0 for lab in label_names]
    return torch.tensor(weights, dtype=torch.float32)


def evaluate_batches(
    backbone: Backbone,
    batches: list[dict[str, Tensor]],
    label_names: list[str],
    *,
    precision: str = "fp32",
) -> dict[str, float]:
    """Return accuracy, macro-F1 and per-class F1 of the active setup on labelled batches.

    Predictions stay on the device until the last batch (one copy back, not one per batch).
    """
    import torch

    from .evaluate import classification_metrics
    from .runtime import autocast

    y_true: list[int] = []
    on_device: list[Tensor] = []
    with autocast(backbone.device, precision):
        for batch in bar(batches, "evaluate"):
            on_device.append(backbone.logits(batch).argmax(dim=-1))
            y_true.extend(int(i) for i in batch["labels"].tolist())
    y_pred = [int(i) for i in torch.cat(on_device).tolist()] if on_device else []
    if not y_true:
        raise InvalidInput(
            "Nothing to evaluate: the split has no labelled rows.",
            hint="Give data whose split has a label in every row.",
        )
    return classification_metrics(y_true, y_pred, label_names)


def batches_for(
    backbone: Backbone,
    rows: list[Example],
    label_names: list[str],
    config: FitConfig,
    *,
    shuffle: bool,
    batch_size: int | None = None,
    max_tokens: int | None = None,
) -> list[dict[str, Tensor]]:
    """Return the rows as tensor batches for ``backbone`` (shuffled with the config's seed).

    Training batches follow ``config.batch_size`` and ``config.max_tokens``; ``batch_size`` and
    ``max_tokens`` given here (no-grad batches) replace both. On a GPU the tensors are pinned,
    so copies to the device run asynchronously.
    """
    explicit = batch_size is not None
    return make_batches(
        backbone.tokenizer,
        rows,
        label_names,
        batch_size=batch_size if batch_size is not None else config.rows_per_batch,
        max_length=config.max_length,
        shuffle=shuffle,
        seed=config.seed if shuffle else 0,
        max_tokens=max_tokens if explicit else config.max_tokens,
        pin_memory=backbone.device.startswith("cuda"),
    )[0]


def evaluate_splits(
    backbone: Backbone, data: FitData, config: FitConfig
) -> dict[str, dict[str, float]]:
    """Return the trained model's metrics on each of ``data.eval_sets`` (large no-grad batches
    on the training device, at the training precision)."""
    rows_per_batch, tokens = eval_batching(backbone.device)
    return {
        split: evaluate_batches(
            backbone,
            batches_for(
                backbone,
                rows,
                data.label_names,
                config,
                shuffle=False,
                batch_size=rows_per_batch,
                max_tokens=tokens,
            ),
            data.label_names,
            precision=config.precision,
        )
        for split, rows in data.eval_sets.items()
    }


def fit_and_evaluate(
    backbone: Backbone,
    data: FitData,
    config: FitConfig,
    *,
    extra_loss: Callable[[], Tensor | None] | None = None,
    progress: bool = True,
    desc: str = "training",
    prefix_cache: PrefixCache | None = None,
) -> tuple[FitResult, dict[str, dict[str, float]]]:
    """Batch the rows, :func:`fit`, then score every evaluation split; return both.

    The caller seeds first (:func:`registry.runtime.seed_everything`): batching and the fit
    loop draw from the seeded generators in this order.
    """
    train_batches = batches_for(backbone, data.train_rows, data.label_names, config, shuffle=True)
    # On a GPU validation runs in the large no-grad batches; on a CPU in the training ones.
    val_rows, val_tokens = (
        eval_batching(backbone.device) if backbone.device.startswith("cuda") else (None, None)
    )
    val_batches = (
        batches_for(
            backbone,
            data.val_rows,
            data.label_names,
            config,
            shuffle=False,
            batch_size=val_rows,
            max_tokens=val_tokens,
        )
        if data.val_rows
        else []
    )
    weights = (
        class_weight_tensor(data.train_rows, data.label_names) if config.class_weights else None
    )
    result = fit(
        backbone,
        train_batches,
        val_batches,
        data.label_names,
        config,
        class_weights=weights,
        extra_loss=extra_loss,
        progress=progress,
        desc=desc,
        prefix_cache=prefix_cache,
    )
    del prefix_cache, train_batches  # free cached hidden states before evaluation
    return result, evaluate_splits(backbone, data, config)


class _BestEpoch:
    """Early stopping and the trainable tensors of the best validation epoch so far."""

    def __init__(self, backbone: Backbone, patience: int) -> None:
        self.backbone = backbone
        self.patience = patience
        self.key: tuple[float, float] = (-math.inf, -math.inf)
        self.epoch = 0
        self.stale = 0
        self.state: dict[str, Any] | None = None

    def offer(self, epoch: int, val: dict[str, float] | None) -> bool:
        """Record an epoch's validation score; return True when training should stop."""
        key = (val["accuracy"], val["macro_f1"]) if val else (float(epoch), 0.0)
        if key > self.key:
            self.key, self.epoch, self.stale = key, epoch, 0
            self.state = {n: p.detach().clone() for n, p in self.backbone.trainable_parameters()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        """Copy the best epoch's tensors back into the model."""
        import torch

        if self.state is None:
            return
        with torch.no_grad():
            for name, param in self.backbone.trainable_parameters():
                param.copy_(self.state[name])


def fit(
    backbone: Backbone,
    train_batches: list[dict[str, Tensor]],
    val_batches: list[dict[str, Tensor]],
    label_names: list[str],
    config: FitConfig,
    *,
    class_weights: Tensor | None = None,
    extra_loss: Callable[[], Tensor | None] | None = None,
    progress: bool = True,
    desc: str = "training",
    prefix_cache: PrefixCache | None = None,
) -> FitResult:
    """Train the backbone's trainable parameters; keep the best validation epoch.

    AdamW with a linear schedule and warm-up, gradient clipping, early stopping after
    ``config.patience`` epochs without a better validation score. At the end the best
    epoch's trainable tensors are restored (the registry keeps the best, not the last).
    With ``prefix_cache``, training steps go through it (frozen prefix without dropout, and
    after the first sight of a batch only the layers above the prefix run).
    """
    from .distributed import from_main

    step = _Steps.start(
        backbone,
        train_batches,
        config,
        class_weights=class_weights,
        extra_loss=extra_loss,
        progress=progress,
        desc=desc,
        prefix_cache=prefix_cache,
    )
    share = step.share
    rng = random.Random(config.seed)
    history: list[EpochLog] = []
    best = _BestEpoch(backbone, config.patience)
    train_time = 0.0
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            backbone.set_training(True)
            order = list(range(len(train_batches)))
            rng.shuffle(order)
            t0 = time.perf_counter()
            train_loss = step.epoch(train_batches, order, epoch)
            epoch_time = time.perf_counter() - t0
            train_time += epoch_time
            val = (
                evaluate_batches(backbone, val_batches, label_names, precision=config.precision)
                if val_batches
                else None
            )
            if share is not None:
                val = from_main(val)  # every rank stops at the same epoch
            history.append(
                EpochLog(
                    epoch=epoch,
                    train_loss=train_loss,
                    val_accuracy=val["accuracy"] if val else None,
                    val_macro_f1=val["macro_f1"] if val else None,
                    train_time_s=epoch_time,
                )
            )
            if best.offer(epoch, val):
                break
    finally:
        step.bar.close()
    best.restore()
    backbone.set_training(False)
    return FitResult(
        best_epoch=best.epoch,
        history=history,
        wall_time_s=time.perf_counter() - start,
        train_time_s=train_time,
        real_tokens=step.real_tokens,
        steps=step.steps,
    )
