"""What drift is measured against: text statistics (:class:`TextProfile`) and the reference
profile of a dataset (:class:`ReferenceProfile`: embeddings, label counts, text statistics), its
file format, and :func:`mean_pool` to make the embeddings."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from registry.drift_stats import _check_counts
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from torch import Tensor

PROFILE_FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH_SAMPLES = 2000
DEFAULT_MAX_VOCAB = 50_000


# --------------------------------------------------------------------------------------------
# Text statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextProfile:
    """Token statistics of a text sample (JSON-able through :meth:`to_dict`).

    Args:
        n_texts: rows profiled.
        total_tokens: tokens over all rows.
        mean_length: mean tokens per row.
        std_length: population standard deviation of tokens per row.
        mean_chars: mean characters per row.
        length_sample: up to ``max_length_samples`` row lengths (a seeded subsample).
        unk_id: the tokenizer's unknown-token id, or None when it has none.
        unk_count: unknown tokens seen.
        vocab_ids: token ids, most frequent first (at most ``max_vocab``).
        vocab_counts: their counts, aligned with ``vocab_ids``.
        n_types: distinct token ids seen (before the ``max_vocab`` cut).
    """

    n_texts: int
    total_tokens: int
    mean_length: float
    std_length: float
    mean_chars: float
    length_sample: list[int]
    unk_id: int | None
    unk_count: int
    vocab_ids: list[int]
    vocab_counts: list[int]
    n_types: int

    @property
    def unk_rate(self) -> float:
        """Return the share of tokens that are the unknown token."""
        return self.unk_count / self.total_tokens if self.total_tokens else 0.0

    def expected_coverage(self) -> float:
        """Estimate the coverage of fresh same-distribution data by this profile's vocabulary.

        Good-Turing: the unseen mass is about (singletons / tokens); kept tokens seen once are
        discounted entirely, dropped tokens (beyond ``max_vocab``) and unknown tokens count as
        uncovered.
        """
        if self.total_tokens == 0:
            return 0.0
        kept = 0
        for tok, c in zip(self.vocab_ids, self.vocab_counts, strict=True):
            if tok != self.unk_id and c > 1:
                kept += c
        return kept / self.total_tokens

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "n_texts": self.n_texts,
            "total_tokens": self.total_tokens,
            "mean_length": self.mean_length,
            "std_length": self.std_length,
            "mean_chars": self.mean_chars,
            "length_sample": list(self.length_sample),
            "unk_id": self.unk_id,
            "unk_count": self.unk_count,
            "vocab_ids": list(self.vocab_ids),
            "vocab_counts": list(self.vocab_counts),
            "n_types": self.n_types,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextProfile:
        """Build a profile from :meth:`to_dict` output."""
        try:
            return cls(
                n_texts=int(d["n_texts"]),
                total_tokens=int(d["total_tokens"]),
                mean_length=float(d["mean_length"]),
                std_length=float(d["std_length"]),
                mean_chars=float(d["mean_chars"]),
                length_sample=[int(v) for v in d["length_sample"]],
                unk_id=None if d["unk_id"] is None else int(d["unk_id"]),
                unk_count=int(d["unk_count"]),
                vocab_ids=[int(v) for v in d["vocab_ids"]],
                vocab_counts=[int(v) for v in d["vocab_counts"]],
                n_types=int(d["n_types"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"not a text profile: {exc!r}",
                hint="The profile is damaged. Run: adapter-registry verify",
            ) from exc


def text_profile(
    texts: Sequence[str],
    token_ids: Sequence[Sequence[int]],
    unk_id: int | None,
    *,
    max_length_samples: int = DEFAULT_MAX_LENGTH_SAMPLES,
    max_vocab: int = DEFAULT_MAX_VOCAB,
    seed: int = 0,
) -> TextProfile:
    """Profile texts and their token ids (special tokens are the caller's choice; be consistent).

    Args:
        texts: the raw texts (for character lengths), aligned with ``token_ids``.
        token_ids: token ids per text.
        unk_id: the tokenizer's unknown-token id, or None.
        max_length_samples: row lengths kept for the length test (seeded subsample).
        max_vocab: most frequent token ids kept with their counts.
        seed: seeds the length subsample.
    """
    if len(texts) != len(token_ids):
        raise InvalidInput(
            f"{len(texts)} texts but {len(token_ids)} token id lists",
            hint="Tokenise exactly the profiled texts: one token id list per text.",
        )
    if not texts:
        raise InvalidInput("cannot profile an empty text sample", hint="Profile at least one text.")
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    counter: Counter[int] = Counter()
    for ids in token_ids:
        counter.update(int(t) for t in ids)
    total = int(lengths.sum())
    if max_length_samples < len(lengths):
        rng = np.random.default_rng(seed)
        sample = lengths[np.sort(rng.choice(len(lengths), max_length_samples, replace=False))]
    else:
        sample = lengths
    # Most frequent first; ties by token id so the profile is deterministic.
    vocab = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab]
    return TextProfile(
        n_texts=len(texts),
        total_tokens=total,
        mean_length=float(lengths.mean()),
        std_length=float(lengths.std()),
        mean_chars=float(np.mean([len(t) for t in texts])),
        length_sample=[int(v) for v in sample],
        unk_id=unk_id,
        unk_count=counter.get(unk_id, 0) if unk_id is not None else 0,
        vocab_ids=[t for t, _ in vocab],
        vocab_counts=[c for _, c in vocab],
        n_types=len(counter),
    )


# --------------------------------------------------------------------------------------------
# Reference profile
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ReferenceProfile:
    """What drift is measured against: an embedding sample, label counts and text statistics.

    Args:
        embeddings: n × hidden mean-pooled embeddings (float32); n may be 0.
        label_counts: label → count, or None for unlabelled data.
        text: token statistics, or None.
        base_model_revision: revision of the encoder that made the embeddings.
        dataset_fingerprint: fingerprint of the profiled data.
        seed: seed used to draw the embedding sample.
    """

    embeddings: np.ndarray
    label_counts: dict[str, int] | None = None
    text: TextProfile | None = None
    base_model_revision: str | None = None
    dataset_fingerprint: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        emb = np.asarray(self.embeddings, dtype=np.float32)
        if emb.ndim == 1 and emb.size == 0:
            emb = emb.reshape(0, 0)
        if emb.ndim != 2:
            raise InvalidInput(
                f"embeddings must be 2-D (rows × hidden), got shape {emb.shape}",
                hint="Pass mean-pooled embeddings, rows x hidden (registry.drift.mean_pool).",
            )
        self.embeddings = emb
        if self.label_counts is not None:
            self.label_counts = _check_counts(self.label_counts, "label_counts")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceProfile):
            return NotImplemented
        return (
            self.embeddings.shape == other.embeddings.shape
            and bool(np.array_equal(self.embeddings, other.embeddings))
            and self._meta() == other._meta()
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_embeddings(self) -> int:
        """Return the number of embedding rows."""
        return int(self.embeddings.shape[0])

    def _meta(self) -> dict[str, Any]:
        """Return everything but the embeddings as a JSON-able dict."""
        return {
            "format_version": PROFILE_FORMAT_VERSION,
            "label_counts": None if self.label_counts is None else dict(self.label_counts),
            "text": None if self.text is None else self.text.to_dict(),
            "base_model_revision": self.base_model_revision,
            "dataset_fingerprint": self.dataset_fingerprint,
            "seed": self.seed,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (embeddings as a list of lists of floats)."""
        d = self._meta()
        d["embedding_shape"] = list(self.embeddings.shape)
        d["embeddings"] = self.embeddings.tolist()
        return d

    @classmethod
    def _from_meta(cls, d: Mapping[str, Any], embeddings: np.ndarray) -> ReferenceProfile:
        """Build a profile from the JSON part and an embedding array."""
        version = d.get("format_version", PROFILE_FORMAT_VERSION)
        if version != PROFILE_FORMAT_VERSION:
            raise InvalidInput(
                f"reference profile format {version} is not supported "
                f"(this code reads {PROFILE_FORMAT_VERSION})",
                hint="recompute the reference profile with this version",
            )
        try:
            text = d.get("text")
            return cls(
                embeddings=embeddings,
                label_counts=d.get("label_counts"),
                text=None if text is None else TextProfile.from_dict(text),
                base_model_revision=d.get("base_model_revision"),
                dataset_fingerprint=d.get("dataset_fingerprint"),
                seed=int(d.get("seed", 0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(
                f"not a reference profile: {exc!r}",
                hint="The profile is damaged. Run: adapter-registry verify",
            ) from exc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        """Build a profile from :meth:`to_dict` output."""
        if "embeddings" not in d:
            raise InvalidInput(
                "not a reference profile: no 'embeddings'",
                hint="The profile is damaged. Run: adapter-registry verify",
            )
        shape = tuple(int(s) for s in d.get("embedding_shape", ()))
        emb = np.asarray(d["embeddings"], dtype=np.float32)
        if shape:
            emb = emb.reshape(shape)
        return cls._from_meta(d, emb)

    def save(self, path: str | Path) -> Path:
        """Write the profile to one ``.npz`` file (embeddings array + a JSON string); no pickle."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(self._meta(), sort_keys=True, allow_nan=False)
        with p.open("wb") as fh:
            np.savez(fh, embeddings=self.embeddings, meta_json=np.array(meta))
        return p

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise InvalidInput(
                f"reference profile file not found: {p}",
                hint="Run: adapter-registry verify (a profile is stored with its adapter version)",
            )
        try:
            with np.load(p, allow_pickle=False) as npz:
                embeddings = np.array(npz["embeddings"])
                meta = json.loads(str(npz["meta_json"][()]))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput(
                f"{p} is not a reference profile file: {exc}",
                hint="Run: adapter-registry verify (a profile is stored with its adapter version)",
            ) from exc
        return cls._from_meta(meta, embeddings)


# --------------------------------------------------------------------------------------------
# Embedding helper
# --------------------------------------------------------------------------------------------


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average token states over the unmasked positions.

    Args:
        hidden: batch × tokens × hidden states.
        attention_mask: batch × tokens, 1 for real tokens and 0 for padding.
    """
    import torch

    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise InvalidInput(
            f"expected hidden [batch, tokens, dim] and mask [batch, tokens], "
            f"got {tuple(hidden.shape)} and {tuple(attention_mask.shape)}",
            hint="Pass the encoder's last hidden states and the batch's attention mask.",
        )
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    summed = (hidden * mask).sum(dim=1)
    counts = torch.clamp(mask.sum(dim=1), min=1e-9)
    return summed / counts
