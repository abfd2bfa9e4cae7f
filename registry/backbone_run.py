"""Running a loaded backbone: forward passes (eager, compiled, data-parallel), the encoder layer
by layer (for the frozen-prefix cache), fusion attention, and inspecting parameters, adapters and
heads. A mixin of :class:`registry.backbone.Backbone`, which owns loading, adding, saving and
training set-up; the two modules are the only ones that touch the ``adapters`` engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import layout
from .errors import InvalidInput, NotFound


class ModelRunner:
    """Running and inspecting the wrapped ``adapters`` model (see :class:`Backbone`)."""

    model: Any
    device: str

    # ----------------------------------------------------------------- running
    @contextlib.contextmanager
    def base_only(self) -> Iterator[None]:
        """Run the frozen base encoder alone (no adapter active) inside the block."""
        import logging

        previous = self.model.active_adapters
        self.model.set_active_adapters(None)
        # adapters warns on every forward that loaded adapters are inactive; here that is the point.
        quiet = logging.getLogger("adapters")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            yield
        finally:
            quiet.setLevel(level)
            if previous is not None:
                self.model.set_active_adapters(previous)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor]:
        """Run the active setup with gradients; return (loss if labels given, logits)."""
        out = self.model(**self._inputs(batch, with_labels=True))
        return getattr(out, "loss", None), out.logits

    def forward_context(self, batch: dict[str, Tensor]) -> contextlib.AbstractContextManager[Any]:
        """Return adapters' ForwardContext for a batch, for code that runs model parts by hand.

        The model's own ``forward`` enters it (``@ForwardContext.wrap``); adapter layers read the
        active setup from it, so running layers outside ``forward`` needs it too.
        """
        from adapters.context import ForwardContext

        inputs = self._inputs(batch, with_labels=False)
        context: contextlib.AbstractContextManager[Any] = ForwardContext(self.model, **inputs)
        return context

    def set_training(self, mode: bool) -> None:
        """Switch the whole model to training (dropout on) or evaluation mode."""
        self.model.train(mode)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Return the base encoder's last hidden states (no head; see :meth:`base_only`)."""
        inputs = self._inputs(batch, with_labels=False)
        hidden: Tensor = self.model.base_model(**inputs).last_hidden_state
        return hidden

    # ----------------------------------------------------------------- encoder parts
    def encoder_parts(self) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
        """Return (embeddings, encoder layers) of a BERT-style encoder with flexible heads.

        For code that runs the encoder layer by layer (the frozen-prefix cache).

        Raises:
            InvalidInput: the model is not laid out that way.
        """
        base = self.model.base_model
        stack = getattr(getattr(base, "encoder", None), "layer", None)
        if (
            stack is None
            or not hasattr(base, "embeddings")
            or not hasattr(self.model, "forward_head")
        ):
            raise InvalidInput(
                f"The frozen-prefix cache supports BERT-style encoders (embeddings, encoder.layer, "
                f"flexible heads); {type(self.model).__name__} is not one.",
                hint="Train without --cache-prefix.",
            )
        return base.embeddings, list(stack)

    @contextlib.contextmanager
    def capture_layer(self, index: int) -> Iterator[dict[str, Any]]:
        """Inside the block, record encoder layer ``index``'s output and the attention mask it
        was given (``hidden``, ``mask``; detached) on every forward."""
        captured: dict[str, Any] = {}

        def hook(
            _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            hidden = output[0] if isinstance(output, tuple | list) else output
            mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
            captured["hidden"] = hidden.detach()
            captured["mask"] = mask.detach() if mask is not None else None

        _, layers = self.encoder_parts()
        handle = layers[index].register_forward_hook(hook, with_kwargs=True)
        try:
            yield captured
        finally:
            handle.remove()

    def run_from_layer(
        self, k: int, hidden: Tensor, mask: Tensor | None, batch: dict[str, Tensor]
    ) -> Tensor:
        """Run layers ``k..L-1``, the pooler and the active head on layer ``k-1``'s output
        (``mask``: the extended attention mask the encoder passes its layers), as the model's
        own ``forward`` does; return the logits."""
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        base = self.model.base_model
        _, layers = self.encoder_parts()
        with self.forward_context(batch):
            out: Any = hidden
            for layer in layers[k:]:
                # BertEncoder passes hidden states and the extended mask positionally.
                out = layer(out, mask)[0]
            pooler = getattr(base, "pooler", None)
            pooled = pooler(out) if pooler is not None else None
            outputs = BaseModelOutputWithPoolingAndCrossAttentions(
                last_hidden_state=out, pooler_output=pooled
            )
            attention = batch.get("attention_mask")
            result = self.model.forward_head(
                outputs,
                attention_mask=attention.to(self.device) if attention is not None else None,
                return_dict=True,
                pooled_output=pooled,
            )
        logits: Tensor = result.logits
        return logits

    def active_module_names(self) -> set[str]:
        """Return the names of the adapter modules the active setup runs."""
        active = self.model.active_adapters
        return set(active.flatten()) if active is not None else set()

    def embedding_side_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Return the parameters of adapter parts that act on the embeddings (invertible
        adapters, prompt tuning), named ``part.parameter``."""
        base = self.model.base_model
        out: list[tuple[str, torch.nn.Parameter]] = []
        for attr in ("invertible_adapters", "prompt_tuning"):
            sub = getattr(base, attr, None)
            if sub is not None:
                out += [(f"{attr}.{n}", p) for n, p in sub.named_parameters()]
        return out

    def model_id(self) -> int:
        """Return an id of the live model object (it changes only if the model is replaced)."""
        return id(self.model)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Return the active setup's logits for a batch, in eval mode without gradients."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits: Tensor = self.model(**self._inputs(batch, with_labels=False)).logits
                return logits
        finally:
            # Restore the mode so evaluating mid-training does not switch dropout off for good.
            self.model.train(was_training)

    def fusion_attention(self, batch: dict[str, Tensor], members: list[str]) -> np.ndarray:
        """Return the mean attention each fusion member gets per layer, shape [layers, members].

        Averaged over real (unpadded) tokens, the batch and, for double_seq_bn, both adapter
        positions in a layer. Layers without the fusion (``leave_out``) are omitted.
        """
        self._require_fusion(members)
        name = layout.fusion_name(members)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(
                    **self._inputs(batch, with_labels=False),
                    output_adapter_fusion_attentions=True,
                )
        finally:
            self.model.train(was_training)
        per_layer = out["adapter_fusion_attentions"].get(name, {})
        mask = batch.get("attention_mask")
        rows = []
        for layer in sorted(per_layer):
            positions = []
            for probs in per_layer[layer].values():
                arr = np.asarray(probs, dtype=np.float64)  # [batch, seq, members]
                if mask is not None:
                    weights = mask.cpu().numpy().astype(np.float64)[..., None]
                    positions.append((arr * weights).sum(axis=(0, 1)) / weights.sum())
                else:
                    positions.append(arr.mean(axis=(0, 1)))
            rows.append(np.mean(positions, axis=0))
        return np.stack(rows) if rows else np.zeros((0, len(members)))

    def fusion_regularization_loss(self) -> Tensor | None:
        """Return the dynamic-fusion value regulariser to add to the loss (None if not used)."""
        loss = self.model.get_fusion_regularization_loss()
        return loss if isinstance(loss, Tensor) else None

    # ----------------------------------------------------------------- inspection
    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Return (name, parameter) for every parameter that requires a gradient."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def count_parameters(self, trainable_only: bool = True) -> int:
        """Return the number of (trainable) parameters."""
        return sum(
            p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only
        )

    def named_tensors(self, prefix_filter: str | None = None) -> dict[str, Tensor]:
        """Return a cloned snapshot of the state dict, optionally only names containing a string."""
        return {
            n: t.detach().clone()
            for n, t in self.model.state_dict().items()
            if prefix_filter is None or prefix_filter in n
        }

    @property
    def adapter_names(self) -> list[str]:
        """Return the names of the loaded adapters."""
        return list(self.model.adapters_config.adapters)

    @property
    def head_names(self) -> list[str]:
        """Return the names of the loaded heads."""
        return list(self.model.heads)

    def head_labels(self, head: str) -> list[str]:
        """Return a head's label names in class-id order."""
        self._require_head(head)
        id2label = self.model.get_labels_dict(head)
        return [str(id2label[i]) for i in sorted(id2label)]

    # ----------------------------------------------------------------- helpers
    def _inputs(self, batch: dict[str, Tensor], *, with_labels: bool) -> dict[str, Tensor]:
        keys = ["input_ids", "attention_mask", "token_type_ids"]
        if with_labels:
            keys.append("labels")
        # Asynchronous when the batch is in pinned memory and the device is a GPU.
        return {k: batch[k].to(self.device, non_blocking=True) for k in keys if k in batch}

    def compiled_logits(self) -> Callable[[dict[str, Tensor]], Tensor]:
        """Return a training forward pass (batch → logits) through ``torch.compile``."""
        compiled = torch.compile(self.model, dynamic=True)
        return lambda batch: compiled(**self._inputs(batch, with_labels=False)).logits  # type: ignore[no-untyped-call]

    def data_parallel_logits(self) -> Callable[[dict[str, Tensor]], Tensor]:
        """Return a training forward pass through DistributedDataParallel (needs a process
        group): gradients are averaged over the ranks in the backward pass."""
        from torch.nn.parallel import DistributedDataParallel

        gpu = self.device.startswith("cuda")
        index = int(self.device.split(":", 1)[1]) if ":" in self.device else 0
        ddp = DistributedDataParallel(self.model, device_ids=[index] if gpu else None)
        return lambda batch: ddp(**self._inputs(batch, with_labels=False)).logits

    def model_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return a batch's model inputs (no labels) on the model's device."""
        return self._inputs(batch, with_labels=False)

    def _require_adapters(self, names: list[str]) -> None:
        if not names:
            raise InvalidInput("No adapter names given.", hint="Name one or more loaded adapters.")
        missing = [n for n in names if n not in self.model.adapters_config.adapters]
        if missing:
            raise NotFound(
                f"Adapter(s) {missing} are not loaded; loaded: {self.adapter_names or 'none'}.",
                hint="Load them with Backbone.load_adapter(folder, name) first.",
            )

    def _require_head(self, name: str) -> None:
        if name not in self.model.heads:
            raise NotFound(
                f"Head {name!r} is not loaded; loaded: {self.head_names or 'none'}.",
                hint="Add it with Backbone.add_head(name, label_names).",
            )

    def _require_fusion(self, members: list[str], name: str | None = None) -> None:
        self._require_adapters(members)
        if (name or layout.fusion_name(members)) not in self.model.adapters_config.fusions:
            raise NotFound(
                f"No fusion over {members} is loaded.",
                hint="Add it with Backbone.add_fusion(members) or load it with load_fusion.",
            )
