"""The statistics drift is decided with, on plain arrays and counts: the embedding MMD permutation
test and the chi-square test of label counts (see :mod:`registry.drift` for the decision rule)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from registry.errors import InvalidInput

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
    #: The permutation statistics (the null distribution the observed one is ranked in).
    null: tuple[float, ...] = ()

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
        raise InvalidInput(
            f"{name} must be a 2-D array (rows × features), got shape {arr.shape}",
            hint="Pass the embeddings as rows x features.",
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(
            f"{name} contains NaN or infinite values",
            hint="Check the encoder's weights: adapter-registry verify",
        )
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


# long: input checks, the kernel and the chunked permutation loop share their arrays
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
        raise InvalidInput(
            f"n_permutations must be >= 0, got {n_permutations}",
            hint="e.g. adapter-registry drift TASK --data SPEC --permutations 500",
        )
    if max_samples < 2:
        raise InvalidInput(
            f"max_samples must be >= 2, got {max_samples}",
            hint="Subsample at least 2 rows a side (the default is 500).",
        )
    rng = np.random.default_rng(seed)
    xa = _subsample(xa, max_samples, rng)
    ya = _subsample(ya, max_samples, rng)
    n, m = xa.shape[0], ya.shape[0]
    if n < 2 or m < 2:
        raise InvalidInput(
            f"MMD needs at least 2 rows on each side, got {n} and {m}",
            hint="Give 2 rows or more a side: adapter-registry drift TASK --data SPEC",
        )

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
    null: list[float] = []
    # Ties (e.g. identical samples) must count as "≥": compare with a small tolerance.
    threshold = observed - 1e-12 * max(1.0, abs(observed))
    done = 0
    while done < n_permutations:
        p = min(_PERMUTATION_CHUNK, n_permutations - done)
        order = rng.permuted(np.tile(np.arange(size), (p, 1)), axis=1)
        masks = np.zeros((p, size))
        masks[np.arange(p)[:, None], order[:, :n]] = 1.0
        perm_stats = _mmd2_for_masks(kernel, masks, n, m, row_sums, total)
        null.extend(float(v) for v in perm_stats)
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
        null=tuple(null),
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
            raise InvalidInput(
                f"{name}[{label!r}] must be a non-negative integer, got {c!r}",
                hint="Give label counts as label -> non-negative integer.",
            )
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
        raise InvalidInput(
            "label_shift_test needs at least one labelled row on each side",
            hint="Compare labelled data on both sides, or leave the label test out.",
        )
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
