"""Reference profiles: what a task's data looked like when its adapter was trained.

A profile holds mean-pooled embeddings of the FROZEN base encoder (no adapter active) for a
seeded sample of rows, the label counts and cheap text statistics. Drift checks compare new data
with it (see :mod:`registry.drift`).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import CHARS_PER_TOKEN_CAP, Example, label_distribution
from .drift import ReferenceProfile, mean_pool, text_profile
from .layout import PROFILE_FILE
from .progress import bar

if TYPE_CHECKING:
    from torch import Tensor

    from .backbone import Backbone

DEFAULT_PROFILE_SAMPLES = 300


def sample_examples(examples: list[Example], max_samples: int, seed: int) -> list[Example]:
    """Return a seeded sample of at most ``max_samples`` examples (order kept)."""
    if len(examples) <= max_samples:
        return list(examples)
    idx = sorted(random.Random(seed).sample(range(len(examples)), max_samples))
    return [examples[i] for i in idx]


def embed_examples(
    backbone: Backbone, examples: list[Example], *, batch_size: int = 64, max_length: int = 256
) -> np.ndarray:
    """Return mean-pooled last-layer embeddings of the base encoder, one row per example."""
    import torch

    from .data import make_batches

    unlabelled = [dataclasses.replace(e, label=None) for e in examples]
    batches, _ = make_batches(
        backbone.tokenizer,
        unlabelled,
        None,
        batch_size=batch_size,
        max_length=max_length,
        shuffle=False,
        seed=0,
        bucket=False,
    )
    rows = []
    with torch.no_grad(), backbone.base_only():
        for batch in bar(batches, "embed"):
            inputs: dict[str, Tensor] = {
                k: batch[k].to(backbone.device)
                for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in batch
            }
            hidden = backbone.encode(inputs)
            rows.append(mean_pool(hidden, inputs["attention_mask"]).float().cpu().numpy())
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, backbone.info.hidden_size))


def build_profile(
    backbone: Backbone,
    examples: list[Example],
    *,
    dataset_fingerprint: str,
    seed: int = 0,
    max_samples: int = DEFAULT_PROFILE_SAMPLES,
    max_length: int = 256,
) -> ReferenceProfile:
    """Build the reference profile of a data split on the frozen base encoder."""
    sample = sample_examples(examples, max_samples, seed)
    max_length = backbone.length_for(max_length)
    cap = max_length * CHARS_PER_TOKEN_CAP  # a huge row is cut before it is tokenised
    texts = [(e.text_a if e.text_b is None else f"{e.text_a} {e.text_b}")[:cap] for e in sample]
    token_ids = backbone.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    labelled = [e for e in examples if e.label is not None]
    return ReferenceProfile(
        embeddings=embed_examples(backbone, sample, max_length=max_length),
        label_counts=label_distribution(labelled) if labelled else {},
        text=text_profile(texts, token_ids, backbone.tokenizer.unk_token_id, seed=seed),
        base_model_revision=backbone.info.revision,
        dataset_fingerprint=dataset_fingerprint,
        seed=seed,
    )


def save_profile(profile: ReferenceProfile, folder: Path) -> Path:
    """Write a profile into ``folder`` (created) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    profile.save(folder / PROFILE_FILE)
    return folder


def load_profile(folder: Path) -> ReferenceProfile:
    """Read a profile written by :func:`save_profile` (numpy, no pickle)."""
    return ReferenceProfile.load(folder / PROFILE_FILE)
