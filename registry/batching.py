"""Batching examples for a model: tokenising, length buckets, token budgets and padding figures."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput

if TYPE_CHECKING:
    from torch import Tensor

    from .data import Example


# --------------------------------------------------------------------------- batching
@dataclass
class BatchStats:
    """Token counts of a batching, to measure padding waste.

    ``batch_indices[i]`` lists the example indices in batch ``i``, so predictions can be put
    back in row order after bucketing.
    """

    real_tokens: int
    padded_tokens: int
    n_examples: int
    n_batches: int
    batch_indices: list[list[int]] = field(default_factory=list)

    @property
    def real_fraction(self) -> float:
        """Return the share of batch positions that hold real tokens."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


#: Characters kept per token of ``max_length`` before tokenising (a token spans at least one
#: character, so this keeps every token the limit allows unless a row is mostly whitespace).
CHARS_PER_TOKEN_CAP = 64


def make_batches(
    tokenizer: Any,
    examples: list[Example],
    label_names: list[str] | None,
    *,
    batch_size: int,
    max_length: int = 256,
    shuffle: bool,
    seed: int,
    bucket: bool = True,
    pad_to: int | None = None,
    max_tokens: int | None = None,
    pin_memory: bool = False,
) -> tuple[list[dict[str, Tensor]], BatchStats]:
    """Tokenize once and cut examples into padded tensor batches.

    With ``bucket``, rows are sorted by length inside chunks of ``50 * batch_size`` so each batch
    pads to a similar length; with ``shuffle`` the row order (before bucketing) and the batch
    order are shuffled with ``seed``. Each batch pads to its own longest row, or to ``pad_to``
    (which also caps ``max_length``). Labels become a ``labels`` LongTensor when every example has
    one; ``label_names`` fixes the ids.

    ``max_tokens`` caps each batch's padded size (rows x its longest row) as well: a batch is
    closed early when the next row would take it over the budget, so buckets of short rows hold
    up to ``batch_size`` rows and buckets of long rows fewer. It must be at least ``max_length``
    (every row then fits alone). With ``pin_memory`` the tensors live in page-locked memory,
    for asynchronous copies to a GPU.
    """
    if batch_size < 1:
        raise InvalidInput(
            f"batch_size must be at least 1, got {batch_size}.", hint="e.g. --batch-size 32"
        )
    if not examples:
        raise InvalidInput("No examples to batch.", hint="Give data with at least one row.")
    if pad_to is not None:
        max_length = min(max_length, pad_to)
    if max_tokens is not None and max_tokens < max(max_length, 1):
        raise InvalidInput(
            f"max_tokens ({max_tokens}) must be at least max_length ({max_length}), so every "
            "row fits in a batch.",
            hint=f"e.g. --max-tokens {64 * max_length}",
        )

    labels = _label_ids(examples, label_names)
    pair = examples[0].text_b is not None
    if any((ex.text_b is not None) != pair for ex in examples):
        raise InvalidInput(
            "Examples mix single texts and text pairs.",
            hint="Give every row one text, or every row two (--text-fields a,b).",
        )
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < max_length:
        max_length = limit  # the model has no positions past its limit (Backbone.load sets it)
    # Cut each text before tokenising: a row of megabytes would otherwise be tokenised whole.
    cap = max_length * CHARS_PER_TOKEN_CAP
    first = [ex.text_a[:cap] for ex in examples]
    second = [(ex.text_b or "")[:cap] for ex in examples] if pair else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    input_ids: list[list[int]] = encoded["input_ids"]
    type_ids: list[list[int]] | None = encoded.get("token_type_ids")
    lengths = [len(ids) for ids in input_ids]

    groups = _batch_groups(lengths, batch_size, shuffle, seed, bucket, max_tokens, pad_to)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = [
        _tensors(group, input_ids, type_ids, lengths, labels, pad_id, pad_to, pin_memory)
        for group in groups
    ]
    padded_total = sum(int(b["input_ids"].numel()) for b in batches)
    stats = BatchStats(
        real_tokens=sum(lengths),
        padded_tokens=padded_total,
        n_examples=len(examples),
        n_batches=len(batches),
        batch_indices=groups,
    )
    return batches, stats


def _label_ids(examples: list[Example], label_names: list[str] | None) -> list[int] | None:
    """Return each example's label id, or None when no example has a label."""
    if all(ex.label is not None for ex in examples):
        if label_names is None:
            raise InvalidInput(
                "Labelled examples need label_names to map labels to ids.",
                hint="Pass the task's label names.",
            )
        ids = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({str(ex.label) for ex in examples} - set(ids))
        if unknown:
            raise InvalidInput(
                f"Labels {unknown} are not among the task's labels {label_names}.",
                hint="Fix the data, or register it under a new task name.",
            )
        return [ids[str(ex.label)] for ex in examples]
    elif any(ex.label is not None for ex in examples):
        raise InvalidInput(
            "Some examples have labels and some do not; batch them separately.",
            hint="Label every row, or none.",
        )

    return None


def _batch_groups(
    lengths: list[int],
    batch_size: int,
    shuffle: bool,
    seed: int,
    bucket: bool,
    max_tokens: int | None,
    pad_to: int | None,
) -> list[list[int]]:
    """Return the row indices of each batch: shuffled, bucketed by length, cut, shuffled."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    if bucket:
        chunk = 50 * batch_size
        order = [
            i
            for start in range(0, len(order), chunk)
            for i in sorted(order[start : start + chunk], key=lambda j: lengths[j])
        ]
    groups = _group(order, lengths, batch_size, max_tokens, pad_to)
    if shuffle:
        # Shuffle whole batches so sorted buckets do not feed short-to-long every epoch.
        rng.shuffle(groups)

    return groups


def _tensors(
    group: list[int],
    input_ids: list[list[int]],
    type_ids: list[list[int]] | None,
    lengths: list[int],
    labels: list[int] | None,
    pad_id: int,
    pad_to: int | None,
    pin_memory: bool,
) -> dict[str, Tensor]:
    """Return one padded batch of the rows ``group``."""
    import torch

    width = pad_to if pad_to is not None else max(lengths[i] for i in group)
    ids_t = torch.full((len(group), width), pad_id, dtype=torch.long)
    mask_t = torch.zeros((len(group), width), dtype=torch.long)
    types_t = torch.zeros((len(group), width), dtype=torch.long)
    for row, i in enumerate(group):
        n = lengths[i]
        ids_t[row, :n] = torch.tensor(input_ids[i], dtype=torch.long)
        mask_t[row, :n] = 1
        if type_ids is not None:
            types_t[row, :n] = torch.tensor(type_ids[i], dtype=torch.long)
    batch: dict[str, Tensor] = {"input_ids": ids_t, "attention_mask": mask_t}
    if type_ids is not None:
        batch["token_type_ids"] = types_t
    if labels is not None:
        batch["labels"] = torch.tensor([labels[i] for i in group], dtype=torch.long)
    if pin_memory:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


def _group(
    order: list[int],
    lengths: list[int],
    batch_size: int,
    max_tokens: int | None,
    pad_to: int | None,
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches of at most ``batch_size`` rows and, with
    ``max_tokens``, at most that many padded tokens (rows x the widest row, or ``pad_to``)."""
    if max_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    groups: list[list[int]] = []
    group: list[int] = []
    width = 0
    for i in order:
        new_width = pad_to if pad_to is not None else max(width, lengths[i])
        if group and (len(group) >= batch_size or (len(group) + 1) * new_width > max_tokens):
            groups.append(group)
            group, new_width = [], pad_to if pad_to is not None else lengths[i]
        group.append(i)
        width = new_width
    if group:
        groups.append(group)
    return groups
