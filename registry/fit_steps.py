"""The optimisation steps of :func:`registry.fitting.fit`: set-up (optimiser, schedule, loss
scaler, which forward pass), one epoch of steps, backward/clip/update, and this rank's share of
each batch under torch.distributed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .configs import FitConfig
from .errors import InvalidInput
from .progress import tqdm_for

if TYPE_CHECKING:
    from torch import Tensor

    from .backbone import Backbone
    from .prefix_cache import PrefixCache

#: Steps between two updates of the progress bar's loss (each one waits for the device).
LOG_EVERY = 50


@dataclass
class _Steps:
    """The optimisation steps of :func:`fit`: one epoch at a time, counting tokens and steps."""

    config: FitConfig
    params: list[Any]
    optimizer: Any
    scheduler: Any
    scaler: Any
    share: _RankShare | None
    forward: Callable[[dict[str, Tensor]], Tensor]
    weights: Tensor | None
    extra_loss: Callable[[], Tensor | None] | None
    device: str
    bar: Any
    progress: bool
    batch_tokens: list[int]
    real_tokens: int = 0
    steps: int = 0

    @classmethod
    def start(
        cls,
        backbone: Backbone,
        train_batches: list[dict[str, Tensor]],
        config: FitConfig,
        *,
        class_weights: Tensor | None,
        extra_loss: Callable[[], Tensor | None] | None,
        progress: bool,
        desc: str,
        prefix_cache: PrefixCache | None,
    ) -> _Steps:
        """Set up the optimiser, schedule, loss scaler, forward pass and progress bar."""
        import torch
        from transformers import get_linear_schedule_with_warmup

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
        share = _RankShare.current(backbone, prefix_cache)
        progress = progress and (share is None or share.main)
        return cls(
            config=config,
            params=params,
            optimizer=optimizer,
            scheduler=scheduler,
            # fp16 needs loss scaling; bf16 has fp32's range and does not.
            scaler=torch.amp.GradScaler("cuda") if config.precision == "fp16" else None,
            share=share,
            forward=share.forward
            if share is not None
            else _forward(backbone, config, prefix_cache),
            weights=class_weights.to(device) if class_weights is not None else None,
            extra_loss=extra_loss,
            device=device,
            bar=tqdm_for(total=total_steps, desc=desc, shown=progress, unit="step"),
            progress=progress,
            # Counted once on the host: the hot loop never waits for the device.
            batch_tokens=[int(b["attention_mask"].sum()) for b in train_batches],
        )

    def epoch(self, train_batches: list[dict[str, Tensor]], order: list[int], epoch: int) -> float:
        """Run one epoch's steps in ``order``; return its mean training loss, if finite."""
        import torch
        import torch.nn.functional as F

        from .runtime import autocast

        # The epoch's loss adds up on the device; it is read once per LOG_EVERY steps.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for n, i in enumerate(order, start=1):
            batch = train_batches[i]
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            labels = batch["labels"].to(self.device, non_blocking=True)
            with autocast(self.device, self.config.precision):
                if self.share is not None:
                    loss = self.share.loss(inputs, batch["labels"], labels, self.weights)
                else:
                    logits = self.forward(inputs)
                    loss = F.cross_entropy(logits.float(), labels, weight=self.weights)
                if self.extra_loss is not None:
                    reg = self.extra_loss()
                    if reg is not None:
                        loss = loss + reg
            _step(loss, self.params, self.optimizer, self.scaler, self.config.max_grad_norm)
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            self.real_tokens += self.batch_tokens[i]
            self.steps += 1
            self.bar.update(1)
            if not self.bar.disable and (n % LOG_EVERY == 0 or n == len(order)):
                self.bar.set_postfix(epoch=epoch, loss=f"{float(loss_sum) / n:.4f}")
        if self.share is not None:
            loss_sum = self.share.mean(loss_sum)
        train_loss = float(loss_sum) / max(1, len(order))  # waits for the epoch's last step
        if not math.isfinite(train_loss):
            # A diverged run would only write useless weights: stop before registering.
            # (Checked once per epoch, where the loss is read anyway: not per step.)
            raise InvalidInput(
                f"The training loss became {train_loss} in epoch {epoch}: training "
                "diverged and nothing was registered.",
                hint=f"Lower the learning rate, e.g. --lr {self.config.lr / 10:g}",
            )
        return train_loss


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
