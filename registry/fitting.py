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
from .progress import bar, tqdm_for

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
#: Steps between two updates of the progress bar's loss (each one waits for the device).
LOG_EVERY = 50


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
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from .distributed import from_main
    from .runtime import autocast

    params = [p for _, p in backbone.trainable_parameters()]
    if not params:
        raise InvalidInput(
            "Nothing to train: no parameter requires a gradient.",
            hint="Add an adapter or a fusion to the model before training it.",
        )
    device = backbone.device
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = max(1, config.epochs * len(train_batches))
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    # fp16 needs loss scaling; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    share = _RankShare.current(backbone, prefix_cache)
    forward = share.forward if share is not None else _forward(backbone, config, prefix_cache)
    weights = class_weights.to(device) if class_weights is not None else None
    # Counted once on the host: the hot loop below never waits for the device.
    batch_tokens = [int(b["attention_mask"].sum()) for b in train_batches]
    rng = random.Random(config.seed)
    history: list[EpochLog] = []
    best = _BestEpoch(backbone, config.patience)
    real_tokens = 0
    steps = 0
    train_time = 0.0
    start = time.perf_counter()
    progress = progress and (share is None or share.main)
    step_bar = tqdm_for(total=total_steps, desc=desc, shown=progress, unit="step")
    try:
        for epoch in range(1, config.epochs + 1):
            backbone.set_training(True)
            order = list(range(len(train_batches)))
            rng.shuffle(order)
            # The epoch's loss adds up on the device; it is read once per LOG_EVERY steps.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            t0 = time.perf_counter()
            for n, i in enumerate(order, start=1):
                batch = train_batches[i]
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                labels = batch["labels"].to(device, non_blocking=True)
                with autocast(device, config.precision):
                    if share is not None:
                        loss = share.loss(inputs, batch["labels"], labels, weights)
                    else:
                        logits = forward(inputs)
                        loss = F.cross_entropy(logits.float(), labels, weight=weights)
                    if extra_loss is not None:
                        reg = extra_loss()
                        if reg is not None:
                            loss = loss + reg
                _step(loss, params, optimizer, scaler, config.max_grad_norm)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                real_tokens += batch_tokens[i]
                steps += 1
                step_bar.update(1)
                if not step_bar.disable and (n % LOG_EVERY == 0 or n == len(order)):
                    step_bar.set_postfix(epoch=epoch, loss=f"{float(loss_sum) / n:.4f}")
            if share is not None:
                loss_sum = share.mean(loss_sum)
            train_loss = float(loss_sum) / max(1, len(order))  # waits for the epoch's last step
            if not math.isfinite(train_loss):
                # A diverged run would only write useless weights: stop before registering.
                # (Checked once per epoch, where the loss is read anyway: not per step.)
                raise InvalidInput(
                    f"The training loss became {train_loss} in epoch {epoch}: training "
                    "diverged and nothing was registered.",
                    hint=f"Lower the learning rate, e.g. --lr {config.lr / 10:g}",
                )
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
        step_bar.close()
    best.restore()
    backbone.set_training(False)
    return FitResult(
        best_epoch=best.epoch,
        history=history,
        wall_time_s=time.perf_counter() - start,
        train_time_s=train_time,
        real_tokens=real_tokens,
        steps=steps,
    )


def _forward(
    backbone: Backbone, config: FitConfig, prefix_cache: PrefixCache | None
) -> Callable[[dict[str, Tensor]], Tensor]:
    """Return the training forward pass: through the prefix cache, compiled, or plain."""
    if prefix_cache is not None:
        return prefix_cache.logits
    if config.compile:
        return backbone.compiled_logits()
    return lambda inputs: backbone.forward(inputs)[1]


def _step(
    loss: Tensor,
    params: list[Any],
    optimizer: Any,
    scaler: Any,
    max_grad_norm: float,
) -> None:
    """Backpropagate, clip and update (through the loss scaler for fp16)."""
    import torch

    if scaler is None:
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(optimizer)
    scaler.update()


class _RankShare:
    """This rank's part of every global batch under torch.distributed (DDP).

    Every rank holds the same global batches; rank ``r`` of ``W`` trains on the ``r``-th of
    ``W`` near-equal slices of each. Its loss is the slice's summed cross-entropy times ``W``
    over the global batch's total weight, so DDP's gradient average over ranks equals the
    gradient of the single-process mean loss over the whole batch (class weights included),
    whatever the slice sizes. A rank whose slice is empty (a batch with fewer rows than ranks)
    runs one row with its loss times 0, so the gradient all-reduce still meets every rank.
    """

    def __init__(self, backbone: Backbone, rank: int, world: int) -> None:
        self.backbone = backbone
        self.rank = rank
        self.world = world
        self.forward = backbone.data_parallel_logits()

    @classmethod
    def current(cls, backbone: Backbone, prefix_cache: PrefixCache | None) -> _RankShare | None:
        """Return the share for a job with several ranks, None for a single process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return None
        if prefix_cache is not None:
            raise InvalidInput(
                "--cache-prefix does not run under torchrun (each rank would cache its own "
                "slice of every batch).",
                hint="Drop --cache-prefix, or train in a single process.",
            )
        return cls(backbone, dist.get_rank(), dist.get_world_size())

    @property
    def main(self) -> bool:
        """Return True on rank 0."""
        return self.rank == 0

    def loss(
        self,
        inputs: dict[str, Tensor],
        host_labels: Tensor,
        labels: Tensor,
        weights: Tensor | None,
    ) -> Tensor:
        """Return this rank's share of the global batch's mean loss, times the world size."""
        import torch
        import torch.nn.functional as F

        n = int(host_labels.shape[0])
        chunk = torch.arange(n).tensor_split(self.world)[self.rank]
        scale = 1.0
        if chunk.numel() == 0:
            chunk, scale = torch.arange(1), 0.0
        total = weights[labels].sum() if weights is not None else float(n)
        mine = {k: v[chunk] for k, v in inputs.items()}
        logits = self.forward(mine)
        local = labels[chunk.to(labels.device)]
        summed = F.cross_entropy(logits.float(), local, weight=weights, reduction="sum")
        return summed * (scale * self.world) / total

    def mean(self, value: Tensor) -> Tensor:
        """Return the mean of ``value`` over the ranks (one all-reduce)."""
        import torch.distributed as dist

        out = value.clone()
        dist.all_reduce(out)
        return out / self.world
