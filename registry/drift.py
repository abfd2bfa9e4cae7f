"""Reference profiles and drift tests: embedding MMD, label shift, length and vocabulary shift.

Pure computation: no database, no model loading. The caller embeds and tokenizes the data (see
:func:`mean_pool`), builds a :class:`ReferenceProfile` for the reference data and one for the new
data, and calls :func:`detect_drift`. Three modules: :mod:`registry.drift_stats` (the MMD and
chi-square tests on arrays and counts), :mod:`registry.drift_profiles` (text and reference
profiles, their file format) and this one (the text-shift tests, the decision and its report);
everything is importable from here.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from registry.drift_profiles import (
    DEFAULT_MAX_LENGTH_SAMPLES as DEFAULT_MAX_LENGTH_SAMPLES,
)
from registry.drift_profiles import DEFAULT_MAX_VOCAB as DEFAULT_MAX_VOCAB
from registry.drift_profiles import PROFILE_FORMAT_VERSION as PROFILE_FORMAT_VERSION
from registry.drift_profiles import ReferenceProfile, TextProfile, mean_pool, text_profile
from registry.drift_stats import ChiSquareResult, MMDResult, label_shift_test, mmd_permutation_test
from registry.errors import InvalidInput

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

DEFAULT_COVERAGE_MARGIN = 0.10


# --------------------------------------------------------------------------------------------
# Text shift (vocabulary coverage and lengths)
# --------------------------------------------------------------------------------------------


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


#: How many quantiles of a permutation null distribution a report keeps (for ``drift show``).
NULL_QUANTILES = 201


def null_quantiles(null: Sequence[float]) -> list[float]:
    """Return evenly spaced quantiles (min to max) of a permutation null distribution."""
    if not null:
        return []
    qs = np.quantile(np.asarray(null, dtype=np.float64), np.linspace(0.0, 1.0, NULL_QUANTILES))
    return [float(v) for v in qs]


# long: the decision rule in one place: each test in turn, then the Bonferroni OR
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
        raise InvalidInput(
            f"alpha must be in (0, 1), got {alpha}",
            hint="Pick a level in (0, 1): adapter-registry drift TASK --data SPEC --alpha 0.05",
        )
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
        details["null_quantiles"] = null_quantiles(mmd.null)
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
