"""Frozen-prefix cache: skip the frozen lower layers after the first epoch (AdapterDrop).

When the trained adapter is left out of the lowest ``k`` layers (``leave_out=[0..k-1]``, Rücklé
et al. 2021, "AdapterDrop"), the embeddings and layers ``0..k-1`` are frozen and hold no active
adapter module, so the hidden states they hand to layer ``k`` are the same for a given batch in
every epoch. :class:`PrefixCache` records them (the output of layer ``k-1`` plus the extended
attention mask the encoder passes to its layers) while epoch 1 runs the full forward, and from
then on runs only layers ``k..L-1``, the pooler and the head, inside adapters' ``ForwardContext``
exactly as the model's own ``forward`` does (so the adapter modules in those layers run as in a
full forward).

Dropout: frozen layers still apply dropout in train mode, and a cached output is only valid for a
deterministic prefix. So while a cache is in use, the frozen prefix (embeddings + layers
``0..k-1``) runs in eval mode in EVERY training step, the recording ones included; layers ``>= k``,
the adapters and the head keep their dropout. This is a small change to training compared with no
cache (the frozen layers no longer add dropout noise), recorded with the run as
``cache_prefix=True``. ``PrefixCache(..., replay=False)`` trains exactly like the cached path
without caching anything: the like-for-like reference the tests compare against.

Staleness: a cache belongs to one live model and one training run. Every entry is keyed by a
sha256 over the base revision, the training data's fingerprint, ``max_length``, ``k`` and the
exact token tensors of the batch (its composition), and the cache refuses to replay if any prefix
parameter was changed in place since it was built (torch's per-tensor version counters), if a
prefix parameter became trainable, or if another model is passed. Memory is bounded by
``max_bytes``; batches past the bound are simply not cached (they run the full forward).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError, InvalidInput

if TYPE_CHECKING:
    from torch import Tensor, nn

    from .backbone import Backbone

#: Default bound on the memory the cached hidden states may take (bytes).
DEFAULT_MAX_BYTES = 4 * 2**30
_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def frozen_prefix_length(leave_out: Iterable[int]) -> int:
    """Return ``k`` such that ``leave_out`` covers layers ``0..k-1`` (0 if it misses layer 0)."""
    left = set(int(i) for i in leave_out)
    k = 0
    while k in left:
        k += 1
    return k


@dataclass
class _Entry:
    hidden: Tensor
    mask: Tensor | None
    nbytes: int


@dataclass
class CacheStats:
    """What a cache did: recorded and replayed batches, bytes held."""

    recorded: int = 0
    replayed: int = 0
    full_forwards: int = 0
    bytes: int = 0


class PrefixCache:
    """Cached outputs of the frozen layers ``0..k-1`` of one backbone, per batch.

    Args:
        backbone: the model being trained; its active setup must have no module in the prefix.
        layers: ``k``, the number of frozen lower layers (1..num_layers).
        base_revision, data_fingerprint, max_length: the identity every entry is keyed by.
        replay: False records nothing and always runs the full forward (with the same eval-mode
            prefix): the uncached reference that trains identically.
        max_bytes: stop caching new batches past this many bytes.
    """

    def __init__(
        self,
        backbone: Backbone,
        layers: int,
        *,
        base_revision: str,
        data_fingerprint: str,
        max_length: int,
        replay: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.backbone = backbone
        self._model_id = backbone.model_id()
        self.k = int(layers)
        self.replay = replay
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: dict[str, _Entry] = {}
        embeddings, self._layers = backbone.encoder_parts()
        if not 1 <= self.k <= len(self._layers):
            raise InvalidInput(
                f"The cached prefix must be 1..{len(self._layers)} layers, got {self.k}.",
                hint="Leave the adapter out of layers 0..k-1 (--leave-out 0,1,...).",
            )
        self._prefix: list[nn.Module] = [embeddings, *self._layers[: self.k]]
        identity = f"{base_revision}\0{data_fingerprint}\0{max_length}\0{self.k}"
        self._identity = hashlib.sha256(identity.encode()).digest()
        self._check_prefix_frozen()
        self._versions = self._param_versions()

    # ----------------------------------------------------------------- public
    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Return the active setup's logits for a training batch (with gradients).

        The first time a batch is seen (or with ``replay=False``) this is the model's full
        forward, recording layer ``k-1``'s output; afterwards layers ``k..L-1`` + head only.
        """
        self.prefix_eval()
        inputs = {k: batch[k] for k in _INPUT_KEYS if k in batch}
        key = self._key(inputs) if self.replay else ""
        entry = self._entries.get(key) if self.replay else None
        if entry is not None:
            self._check_unchanged()
            self.stats.replayed += 1
            return self._run_suffix(inputs, entry)
        record = self.replay and self.stats.bytes < self.max_bytes
        with self._capture() as captured:
            _, logits = self.backbone.forward(inputs)
        if record and "hidden" in captured:
            hidden = captured["hidden"]
            mask = captured.get("mask")
            nbytes = hidden.numel() * hidden.element_size()
            if mask is not None:
                nbytes += mask.numel() * mask.element_size()
            self._entries[key] = _Entry(hidden, mask, nbytes)
            self.stats.recorded += 1
            self.stats.bytes += nbytes
        else:
            self.stats.full_forwards += 1
        return logits

    def prefix_eval(self) -> None:
        """Switch the frozen prefix (embeddings + layers ``0..k-1``) to eval mode: no dropout."""
        for module in self._prefix:
            if module.training:
                module.eval()

    def clear(self) -> None:
        """Drop every cached entry."""
        self._entries.clear()
        self.stats.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    # ----------------------------------------------------------------- internals
    def _run_suffix(self, inputs: dict[str, Tensor], entry: _Entry) -> Tensor:
        """Run layers ``k..L-1``, the pooler and the head as ``BertAdapterModel.forward`` does."""
        return self.backbone.run_from_layer(self.k, entry.hidden, entry.mask, inputs)

    def _capture(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return self.backbone.capture_layer(self.k - 1)

    def _key(self, inputs: dict[str, Tensor]) -> str:
        h = hashlib.sha256(self._identity)
        for name in _INPUT_KEYS:
            tensor = inputs.get(name)
            if tensor is None:
                continue
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def _prefix_params(self) -> Iterator[tuple[str, Any]]:
        for i, module in enumerate(self._prefix):
            for name, param in module.named_parameters():
                yield f"{i}.{name}", param

    def _param_versions(self) -> dict[str, int]:
        return {name: int(p._version) for name, p in self._prefix_params()}

    def _check_prefix_frozen(self) -> None:
        trainable = [n for n, p in self._prefix_params() if p.requires_grad]
        if trainable:
            raise InvalidInput(
                f"The cached prefix (embeddings + layers 0..{self.k - 1}) has trainable "
                f"parameters: {trainable[:3]}.",
                hint="Cache only layers every trained module is left out of.",
            )
        names = self.backbone.active_module_names()
        # A fusion layer's path segment is "a,b": split on both so its members match.
        inside = [
            n for n, _ in self._prefix_params() if names & set(n.replace(",", ".").split("."))
        ]
        inside += [
            n for n, _ in self.backbone.embedding_side_parameters() if names & set(n.split(".")[1:])
        ]
        if inside:
            raise InvalidInput(
                f"Active adapter modules sit in the cached prefix (layers 0..{self.k - 1}): "
                f"{inside[:3]}.",
                hint="Leave the adapter out of those layers (--leave-out 0,...,k-1).",
            )

    def _check_unchanged(self) -> None:
        if self.backbone.model_id() != self._model_id:
            raise IntegrityError(
                "The prefix cache belongs to another model.",
                hint="Make a new PrefixCache for this model.",
            )
        if self._param_versions() != self._versions:
            self.clear()
            raise IntegrityError(
                "A frozen prefix parameter changed in place after its outputs were cached; "
                "the cache was dropped.",
                hint="This is a bug in the caller: the base model must stay frozen.",
            )
        if any(p.requires_grad for _, p in self._prefix_params()):
            raise IntegrityError(
                "A prefix parameter became trainable after caching.",
                hint="Cache only layers that stay frozen (--leave-out 0,...,k-1).",
            )
