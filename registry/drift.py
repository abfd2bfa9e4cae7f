"""Reference profiles and drift tests: embedding MMD, label shift, length and vocabulary shift.

Pure computation: no database, no model loading. The caller embeds and tokenizes the data (see
:func:`mean_pool`), builds a :class:`ReferenceProfile` for the reference data and one for the new
data, and calls :func:`detect_drift`.

Decision rule of :func:`detect_drift` (``alpha`` is the family-wise level):

- ``embedding_mmd``: unbiased MMD² between mean-pooled embeddings, RBF kernel with the median
  heuristic, permutation p-value. Drift when ``p < alpha / k``.
- ``label_shift``: chi-square test of homogeneity of the label counts, run only when both sides
  have labels. Drift when ``p < alpha / k``.
- ``vocabulary_coverage``: the share of the new data's token mass whose token ids (unknown token
  excluded) occur in the reference. Drift when it falls more than ``coverage_margin`` (default
  0.10) below the coverage expected for fresh data from the reference distribution, which is
  estimated with Good-Turing from the reference alone (one minus the unknown rate minus the
  share of singleton tokens). No p-value: tokens are not independent draws.
- ``length``: two-sample Kolmogorov-Smirnov test on token lengths. Reported, not decisive: the
  embeddings already carry most of a length shift, and with large samples a harmless change of a
  token or two becomes significant.

``k`` is the number of decisive tests that have a p-value (1 or 2): a Bonferroni correction, so the
chance of a false "drift" (which triggers training a new adapter) stays at most ``alpha`` when
nothing changed. Overall drift is the OR of the decisive tests.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from registry.errors import InvalidInput

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "ChiSquareResult",
    "DriftResult",
    "DriftTest",
    "MMDResult",
    "ReferenceProfile",
    "TextProfile",
    "detect_drift",
    "label_shift_test",
    "mean_pool",
    "mmd_permutation_test",
    "text_profile",
    "text_shift_test",
]

PROFILE_FORMAT_VERSION = 1
DEFAULT_COVERAGE_MARGIN = 0.10
DEFAULT_MAX_LENGTH_SAMPLES = 2000
DEFAULT_MAX_VOCAB = 50_000
_PERMUTATION_CHUNK = 128

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Embedding MMD
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MMDResult:
    """Result of :func:`mmd_permutation_test`.

    Args:
        statistic: unbiased MMD² estimate (can be slightly negative when there is no difference).
        p_value: permutation p-value, ``(1 + #perm ≥ observed) / (1 + n_permutations)``.
        n_ref: reference rows used (after subsampling).
        n_new: new rows used (after subsampling).
        n_permutations: permutations drawn.
        bandwidth: RBF bandwidth sigma, ``k(x, y) = exp(-|x - y|² / (2 sigma²))``.
        seed: seed of the subsampling and the permutations.
    """

    statistic: float
    p_value: float
    n_ref: int
    n_new: int
    n_permutations: int
    bandwidth: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_ref": self.n_ref,
            "n_new": self.n_new,
            "n_permutations": self.n_permutations,
            "bandwidth": self.bandwidth,
            "seed": self.seed,
        }


def _as_matrix(a: npt.ArrayLike, name: str) -> FloatArray:
    """Return ``a`` as a finite 2-D float64 array (a 1-D input is one feature per row)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-D array (rows × features), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{name} contains NaN or infinite values")
    return arr


def _subsample(arr: FloatArray, max_samples: int, rng: np.random.Generator) -> FloatArray:
    """Return at most ``max_samples`` rows of ``arr`` drawn without replacement."""
    if arr.shape[0] <= max_samples:
        return arr
    idx = np.sort(rng.choice(arr.shape[0], size=max_samples, replace=False))
    return arr[idx]


def _squared_distances(z: FloatArray) -> FloatArray:
    """Return the matrix of pairwise squared Euclidean distances between rows of ``z``."""
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    out: FloatArray = d2
    return out


def _median_bandwidth(d2: FloatArray) -> float:
    """Return sigma = sqrt(median pairwise squared distance); fall back when it is zero."""
    upper = d2[np.triu_indices(d2.shape[0], k=1)]
    med = float(np.median(upper)) if upper.size else 0.0
    if med <= 0.0:
        positive = upper[upper > 0.0]
        med = float(positive.mean()) if positive.size else 1.0
    return math.sqrt(med)


def _mmd2_for_masks(
    kernel: FloatArray, masks: FloatArray, n: int, m: int, row_sums: FloatArray, total: float
) -> FloatArray:
    """Return the unbiased MMD² for each row of ``masks`` (1 marks the first sample).

    Args:
        kernel: pooled N × N kernel matrix with ones on the diagonal (RBF).
        masks: P × N matrix of 0/1; each row has ``n`` ones.
        n: size of the first sample.
        m: size of the second sample (``N - n``).
        row_sums: ``kernel.sum(axis=1)``.
        total: ``kernel.sum()``.
    """
    ka = kernel @ masks.T  # N × P
    xx = np.einsum("pn,np->p", masks, ka)  # aᵀKa
    x_all = masks @ row_sums  # aᵀK1
    xy = x_all - xx  # aᵀKb
    yy = total - 2.0 * x_all + xx  # bᵀKb
    # The diagonal of an RBF kernel is 1: remove it from the within-sample sums.
    mmd2: FloatArray = (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)
    return mmd2


def mmd_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int = 500,
    seed: int = 0,
    max_samples: int = 500,
) -> MMDResult:
    """Test whether two samples come from the same distribution with an RBF-kernel MMD.

    Args:
        x: reference sample, rows × features (1-D means one feature).
        y: new sample, rows × the same features.
        n_permutations: label permutations for the p-value (0 gives p = 1).
        seed: seeds the subsampling and the permutations; same inputs and seed, same result.
        max_samples: each side is subsampled to at most this many rows.
    """
    xa = _as_matrix(x, "x")
    ya = _as_matrix(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise InvalidInput(
            f"x has {xa.shape[1]} features but y has {ya.shape[1]}",
            hint="embed both samples with the same base model",
        )
    if n_permutations < 0:
        raise InvalidInput(f"n_permutations must be >= 0, got {n_permutations}")
    if max_samples < 2:
        raise InvalidInput(f"max_samples must be >= 2, got {max_samples}")
    rng = np.random.default_rng(seed)
    xa = _subsample(xa, max_samples, rng)
    ya = _subsample(ya, max_samples, rng)
    n, m = xa.shape[0], ya.shape[0]
    if n < 2 or m < 2:
        raise InvalidInput(f"MMD needs at least 2 rows on each side, got {n} and {m}")

    pooled = np.concatenate([xa, ya], axis=0)
    d2 = _squared_distances(pooled)
    bandwidth = _median_bandwidth(d2)
    kernel = np.exp(d2 / (-2.0 * bandwidth * bandwidth))
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    size = n + m

    observed_mask = np.zeros((1, size))
    observed_mask[0, :n] = 1.0
    observed = float(_mmd2_for_masks(kernel, observed_mask, n, m, row_sums, total)[0])

    exceed = 0
    # Ties (e.g. identical samples) must count as "≥": compare with a small tolerance.
    threshold = observed - 1e-12 * max(1.0, abs(observed))
    done = 0
    while done < n_permutations:
        p = min(_PERMUTATION_CHUNK, n_permutations - done)
        order = rng.permuted(np.tile(np.arange(size), (p, 1)), axis=1)
        masks = np.zeros((p, size))
        masks[np.arange(p)[:, None], order[:, :n]] = 1.0
        perm_stats = _mmd2_for_masks(kernel, masks, n, m, row_sums, total)
        exceed += int(np.count_nonzero(perm_stats >= threshold))
        done += p

    p_value = (1.0 + exceed) / (1.0 + n_permutations)
    return MMDResult(
        statistic=observed,
        p_value=float(p_value),
        n_ref=n,
        n_new=m,
        n_permutations=n_permutations,
        bandwidth=bandwidth,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# Label shift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChiSquareResult:
    """Result of :func:`label_shift_test`.

    Args:
        statistic: Pearson chi-square statistic (no continuity correction).
        p_value: its p-value; 1.0 when fewer than two labels occur.
        dof: degrees of freedom (occurring labels − 1).
        counts: label → (reference count, new count), over the union of labels.
    """

    statistic: float
    p_value: float
    dof: int
    counts: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "dof": self.dof,
            "counts": {k: [a, b] for k, (a, b) in self.counts.items()},
        }


def _check_counts(counts: Mapping[str, int], name: str) -> dict[str, int]:
    """Return ``counts`` as a plain dict of non-negative ints, or raise InvalidInput."""
    out: dict[str, int] = {}
    for label, c in counts.items():
        value = int(c)
        if value != c or value < 0:
            raise InvalidInput(f"{name}[{label!r}] must be a non-negative integer, got {c!r}")
        out[str(label)] = value
    return out


def label_shift_test(
    ref_counts: Mapping[str, int], new_counts: Mapping[str, int]
) -> ChiSquareResult:
    """Test whether the label distribution changed (chi-square test of homogeneity, 2 × K).

    Labels with zero counts on both sides are dropped; with fewer than two labels left the
    result is statistic 0, p 1, dof 0.
    """
    ref = _check_counts(ref_counts, "ref_counts")
    new = _check_counts(new_counts, "new_counts")
    if sum(ref.values()) == 0 or sum(new.values()) == 0:
        raise InvalidInput("label_shift_test needs at least one labelled row on each side")
    labels = sorted(set(ref) | set(new))
    counts = {lab: (ref.get(lab, 0), new.get(lab, 0)) for lab in labels}
    occurring = [lab for lab in labels if sum(counts[lab]) > 0]
    if len(occurring) < 2:
        return ChiSquareResult(statistic=0.0, p_value=1.0, dof=0, counts=counts)
    table = np.array([[counts[lab][0] for lab in occurring], [counts[lab][1] for lab in occurring]])
    res = stats.chi2_contingency(table, correction=False)
    return ChiSquareResult(
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        dof=int(res.dof),
        counts=counts,
    )


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
            raise InvalidInput(f"not a text profile: {exc!r}") from exc


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
        raise InvalidInput(f"{len(texts)} texts but {len(token_ids)} token id lists")
    if not texts:
        raise InvalidInput("cannot profile an empty text sample")
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


@dataclass(frozen=True)
class DriftTest:
    """One test inside a drift report.

    Args:
        name: ``embedding_mmd``, ``label_shift``, ``vocabulary_coverage`` or ``length``.
        statistic: the test statistic (coverage share for ``vocabulary_coverage``).
        p_value: its p-value, or None for a threshold rule.
        drift: whether this test, on its own rule, flags drift.
        decisive: whether it takes part in the overall decision.
        details: test-specific numbers (JSON-able).
    """

    name: str
    statistic: float
    p_value: float | None
    drift: bool
    decisive: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "name": self.name,
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "drift": self.drift,
            "decisive": self.decisive,
            "details": self.details,
        }


def _json_float(v: float | None) -> float | None:
    """Return ``v`` with NaN/inf mapped to None, so the dict is strict JSON."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _text_tests(
    ref: TextProfile, new: TextProfile, *, alpha: float, coverage_margin: float
) -> list[DriftTest]:
    """Return the vocabulary-coverage and length tests for two text profiles."""
    if ref.unk_id != new.unk_id:
        raise InvalidInput(
            f"text profiles use different unknown-token ids ({ref.unk_id} vs {new.unk_id})",
            hint="profile both samples with the same tokenizer",
        )
    ref_vocab = {t for t in ref.vocab_ids if t != ref.unk_id}
    covered = sum(c for t, c in zip(new.vocab_ids, new.vocab_counts, strict=True) if t in ref_vocab)
    coverage = covered / new.total_tokens if new.total_tokens else 1.0
    expected = ref.expected_coverage()
    threshold = max(0.0, expected - coverage_margin)
    vocab_test = DriftTest(
        name="vocabulary_coverage",
        statistic=coverage,
        p_value=None,
        drift=bool(new.total_tokens > 0 and coverage < threshold),
        decisive=True,
        details={
            "coverage": coverage,
            "expected_coverage": expected,
            "threshold": threshold,
            "coverage_margin": coverage_margin,
            "unk_rate_ref": ref.unk_rate,
            "unk_rate_new": new.unk_rate,
            "unk_rate_difference": new.unk_rate - ref.unk_rate,
            "n_types_ref": ref.n_types,
            "n_types_new": new.n_types,
        },
    )
    if ref.length_sample and new.length_sample:
        ks = stats.ks_2samp(ref.length_sample, new.length_sample)
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    else:
        ks_stat, ks_p = 0.0, 1.0
    length_test = DriftTest(
        name="length",
        statistic=ks_stat,
        p_value=ks_p,
        drift=ks_p < alpha,
        decisive=False,
        details={
            "test": "ks_2samp",
            "mean_length_ref": ref.mean_length,
            "mean_length_new": new.mean_length,
            "std_length_ref": ref.std_length,
            "std_length_new": new.std_length,
            "mean_chars_ref": ref.mean_chars,
            "mean_chars_new": new.mean_chars,
            "n_ref": len(ref.length_sample),
            "n_new": len(new.length_sample),
        },
    )
    return [vocab_test, length_test]


def text_shift_test(
    ref: TextProfile,
    new: TextProfile,
    *,
    alpha: float = 0.05,
    coverage_margin: float = DEFAULT_COVERAGE_MARGIN,
) -> dict[str, dict[str, Any]]:
    """Compare two text profiles: vocabulary coverage (with unknown rates) and token lengths.

    Returns ``{"vocabulary_coverage": test, "length": test}``, each shaped like
    :meth:`DriftTest.to_dict`. Coverage is the share of the new token mass whose ids occur in the
    reference (unknown token excluded); it flags drift below ``expected - coverage_margin``.

    Args:
        ref: the reference profile.
        new: the new data's profile (same tokenizer).
        alpha: level for the length test's own flag.
        coverage_margin: allowed drop below the Good-Turing expected coverage.
    """
    tests = _text_tests(ref, new, alpha=alpha, coverage_margin=coverage_margin)
    return {t.name: t.to_dict() for t in tests}


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
            raise InvalidInput(f"embeddings must be 2-D (rows × hidden), got shape {emb.shape}")
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
            raise InvalidInput(f"not a reference profile: {exc!r}") from exc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        """Build a profile from :meth:`to_dict` output."""
        if "embeddings" not in d:
            raise InvalidInput("not a reference profile: no 'embeddings'")
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
            raise InvalidInput(f"reference profile file not found: {p}")
        try:
            with np.load(p, allow_pickle=False) as npz:
                embeddings = np.array(npz["embeddings"])
                meta = json.loads(str(npz["meta_json"][()]))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput(f"{p} is not a reference profile file: {exc}") from exc
        return cls._from_meta(meta, embeddings)


# --------------------------------------------------------------------------------------------
# Combined decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    """Outcome of :func:`detect_drift`.

    Args:
        drift: overall decision (OR of the decisive tests).
        alpha: family-wise level.
        per_test_alpha: level each decisive p-value is compared with (Bonferroni).
        tests: every test that ran.
        n_ref: reference embedding rows (before MMD subsampling).
        n_new: new embedding rows (before MMD subsampling).
    """

    drift: bool
    alpha: float
    per_test_alpha: float
    tests: list[DriftTest]
    n_ref: int
    n_new: int

    def test(self, name: str) -> DriftTest | None:
        """Return the test called ``name``, or None when it did not run."""
        return next((t for t in self.tests if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "drift": self.drift,
            "alpha": self.alpha,
            "per_test_alpha": self.per_test_alpha,
            "correction": "bonferroni",
            "n_ref": self.n_ref,
            "n_new": self.n_new,
            "tests": [t.to_dict() for t in self.tests],
        }


def detect_drift(
    ref: ReferenceProfile,
    new: ReferenceProfile,
    *,
    alpha: float = 0.05,
    n_permutations: int = 500,
    seed: int = 0,
    max_samples: int = 500,
    coverage_margin: float = DEFAULT_COVERAGE_MARGIN,
) -> DriftResult:
    """Decide whether ``new`` drifted from ``ref``; see the module docstring for the rule.

    Args:
        ref: the reference profile (the task's current adapter's data).
        new: the new data's profile, made the same way.
        alpha: family-wise significance level, split over the decisive p-value tests.
        n_permutations: permutations for the MMD p-value.
        seed: seeds the MMD subsampling and permutations.
        max_samples: MMD subsample size per side.
        coverage_margin: allowed drop of vocabulary coverage below its expected value.
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha}")
    if (
        ref.base_model_revision is not None
        and new.base_model_revision is not None
        and ref.base_model_revision != new.base_model_revision
    ):
        raise InvalidInput(
            f"profiles come from different base model revisions "
            f"({ref.base_model_revision} vs {new.base_model_revision})",
            hint="recompute the reference profile with the same base model revision",
        )
    run_mmd = ref.n_embeddings >= 2 and new.n_embeddings >= 2
    run_labels = bool(ref.label_counts) and bool(new.label_counts)
    run_text = ref.text is not None and new.text is not None
    n_pvalue_tests = int(run_mmd) + int(run_labels)
    if n_pvalue_tests == 0 and not run_text:
        raise InvalidInput(
            "nothing to compare: the profiles share no embeddings, labels or text statistics",
            hint="build both profiles with embeddings (at least 2 rows each)",
        )
    per_test_alpha = alpha / max(1, n_pvalue_tests)
    tests: list[DriftTest] = []

    if run_mmd:
        mmd = mmd_permutation_test(
            ref.embeddings,
            new.embeddings,
            n_permutations=n_permutations,
            seed=seed,
            max_samples=max_samples,
        )
        details = mmd.to_dict()
        del details["statistic"], details["p_value"]
        tests.append(
            DriftTest(
                name="embedding_mmd",
                statistic=mmd.statistic,
                p_value=mmd.p_value,
                drift=mmd.p_value < per_test_alpha,
                decisive=True,
                details=details,
            )
        )
    if run_labels:
        assert ref.label_counts is not None and new.label_counts is not None
        chi = label_shift_test(ref.label_counts, new.label_counts)
        details = chi.to_dict()
        del details["statistic"], details["p_value"]
        tests.append(
            DriftTest(
                name="label_shift",
                statistic=chi.statistic,
                p_value=chi.p_value,
                drift=chi.p_value < per_test_alpha,
                decisive=True,
                details=details,
            )
        )
    if run_text:
        assert ref.text is not None and new.text is not None
        tests.extend(
            _text_tests(ref.text, new.text, alpha=per_test_alpha, coverage_margin=coverage_margin)
        )
    return DriftResult(
        drift=any(t.drift for t in tests if t.decisive),
        alpha=alpha,
        per_test_alpha=per_test_alpha,
        tests=tests,
        n_ref=ref.n_embeddings,
        n_new=new.n_embeddings,
    )


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
            f"got {tuple(hidden.shape)} and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    summed = (hidden * mask).sum(dim=1)
    counts = torch.clamp(mask.sum(dim=1), min=1e-9)
    return summed / counts
