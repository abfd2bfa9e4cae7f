"""Drift's promises, measured: its false-positive rate at alpha, and its power with samples of
unequal size.

Each trial draws fresh data and runs the real decision (:func:`registry.drift.detect_drift`, with
its permutation MMD and chi-square label test). Under "nothing changed" the share of trials that
say "drift" must stay at most alpha, within binomial slack; a decision that compared each test
with the full alpha instead of its Bonferroni share would exceed it. Under a real shift the test
must see it, also when the reference and the new sample differ in size.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from registry.drift import ReferenceProfile, detect_drift, mmd_permutation_test

pytestmark = pytest.mark.slow  # about 20 s on 2 shared cores

TRIALS = 400
ALPHA = 0.2  # large, so the trials resolve it: the Bonferroni share is 0.1 per test
LABELS = ("neg", "neu", "pos")
LABEL_P = (0.3, 0.3, 0.4)
# Unequal sizes on purpose: 60 reference rows, 25 new ones (and the other way round).
SIZES = ((60, 25), (25, 60))


def _profile(rng: np.random.Generator, n: int, shift: float = 0.0) -> ReferenceProfile:
    embeddings = rng.normal(loc=shift, size=(n, 6)).astype(np.float32)
    labels = rng.choice(len(LABELS), size=n, p=LABEL_P)
    counts = {name: int((labels == i).sum()) for i, name in enumerate(LABELS)}
    return ReferenceProfile(embeddings=embeddings, label_counts=counts)


def _slack_bound(trials: int, rate: float) -> int:
    """The count of positives that a true rate of ``rate`` exceeds with chance under 1e-4."""
    return int(stats.binom.ppf(1 - 1e-4, trials, rate))


def test_false_positive_rate_stays_at_alpha_over_same_distribution_trials() -> None:
    rng = np.random.default_rng(20261201)
    alarms = {"any": 0, "embedding_mmd": 0, "label_shift": 0}
    for trial in range(TRIALS):
        n_ref, n_new = SIZES[trial % 2]
        result = detect_drift(
            _profile(rng, n_ref), _profile(rng, n_new), alpha=ALPHA, n_permutations=99, seed=trial
        )
        assert result.per_test_alpha == pytest.approx(ALPHA / 2)
        alarms["any"] += int(result.drift)
        for test in result.tests:
            alarms[test.name] += int(test.drift)
    # The family-wise rate stays at alpha; each test at its share of it.
    assert alarms["any"] <= _slack_bound(TRIALS, ALPHA), alarms
    for name in ("embedding_mmd", "label_shift"):
        assert alarms[name] <= _slack_bound(TRIALS, ALPHA / 2), alarms
    # And the test is not blind: under the null it still fires about as often as allowed.
    assert alarms["embedding_mmd"] >= stats.binom.ppf(1e-4, TRIALS, ALPHA / 2) * 0.5, alarms


@pytest.mark.parametrize(("n_ref", "n_new"), SIZES)
def test_mmd_power_with_unequal_sample_sizes(n_ref: int, n_new: int) -> None:
    rng = np.random.default_rng(7 + n_ref)
    trials, detected, null_alarms = 100, 0, 0
    for trial in range(trials):
        x = rng.normal(size=(n_ref, 6))
        shifted = mmd_permutation_test(
            x, rng.normal(0.5, size=(n_new, 6)), n_permutations=99, seed=trial
        )
        same = mmd_permutation_test(x, rng.normal(size=(n_new, 6)), n_permutations=99, seed=trial)
        detected += int(shifted.p_value < 0.05)
        null_alarms += int(same.p_value < 0.05)
        assert (shifted.n_ref, shifted.n_new) == (n_ref, n_new)
    assert detected >= 0.9 * trials, detected  # measured: 96 (60 vs 25) and 99 (25 vs 60)
    assert null_alarms <= _slack_bound(trials, 0.05), null_alarms
