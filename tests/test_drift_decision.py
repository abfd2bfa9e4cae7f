"""Drift's decision at its exact boundaries, with real p-values (nothing patched).

Each test computes a real p-value first, then sets alpha just above and just below the level at
which the decision must flip: the Bonferroni share ``alpha / k`` (``k`` = decisive tests with a
p-value), compared strictly (``p < alpha / k``). A decision that used the full alpha, counted
``k`` wrongly, or compared with ``<=`` fails here. Fast; the calibration over many trials is in
test_drift_calibration.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from registry.drift import (
    ReferenceProfile,
    detect_drift,
    label_shift_test,
    mmd_permutation_test,
)
from registry.errors import InvalidInput

PERMS = 199


def _emb(seed: int, n: int, shift: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(n, 4)).astype(np.float32)


def _pair(shift: float, labels: bool) -> tuple[ReferenceProfile, ReferenceProfile]:
    ref_counts = {"a": 40, "b": 40} if labels else None
    new_counts = {"a": 19, "b": 31} if labels else None
    ref = ReferenceProfile(embeddings=_emb(1, 80, 0.0), label_counts=ref_counts)
    new = ReferenceProfile(embeddings=_emb(2, 50, shift), label_counts=new_counts)
    return ref, new


def _decide(ref: ReferenceProfile, new: ReferenceProfile, alpha: float) -> dict[str, bool]:
    result = detect_drift(ref, new, alpha=alpha, n_permutations=PERMS, seed=3)
    out = {t.name: t.drift for t in result.tests}
    out["overall"] = result.drift
    return out


def test_mmd_alone_flips_exactly_at_alpha() -> None:
    ref, new = _pair(0.35, labels=False)
    p = mmd_permutation_test(ref.embeddings, new.embeddings, n_permutations=PERMS, seed=3).p_value
    assert 0.0 < p < 0.5
    result = detect_drift(ref, new, alpha=p, n_permutations=PERMS, seed=3)
    assert result.per_test_alpha == p  # one p-value test: the whole alpha
    assert result.drift is False  # p < alpha is strict
    assert _decide(ref, new, p * 1.001)["overall"] is True
    assert _decide(ref, new, p * 0.999)["overall"] is False


def test_each_test_gets_half_of_alpha_when_both_run() -> None:
    ref, new = _pair(0.35, labels=True)
    p_mmd = mmd_permutation_test(
        ref.embeddings, new.embeddings, n_permutations=PERMS, seed=3
    ).p_value
    assert ref.label_counts is not None and new.label_counts is not None
    p_lab = label_shift_test(ref.label_counts, new.label_counts).p_value
    assert 0.0 < p_mmd < 0.4 and 0.0 < p_lab < 0.4
    for p, name in ((p_mmd, "embedding_mmd"), (p_lab, "label_shift")):
        above, below = _decide(ref, new, 2 * p * 1.001), _decide(ref, new, 2 * p * 0.999)
        assert above[name] is True and below[name] is False, (name, p)
        assert _decide(ref, new, 2 * p)[name] is False  # p == alpha / 2: strict, no drift
        # The overall decision is the OR of the decisive tests.
        assert above["overall"] is True
        assert below["overall"] is (below["embedding_mmd"] or below["label_shift"])
    result = detect_drift(ref, new, alpha=0.05, n_permutations=PERMS, seed=3)
    assert result.per_test_alpha == pytest.approx(0.025)
    assert result.to_dict()["correction"] == "bonferroni"


def test_nothing_changed_means_no_drift_and_a_large_shift_means_drift() -> None:
    ref, _ = _pair(0.0, labels=True)
    same = ReferenceProfile(
        embeddings=ref.embeddings.copy(), label_counts=dict(ref.label_counts or {})
    )
    result = detect_drift(ref, same, alpha=0.05, n_permutations=PERMS, seed=3)
    assert result.drift is False
    assert all(t.p_value is not None and t.p_value > 0.5 for t in result.tests)
    far = ReferenceProfile(embeddings=_emb(2, 50, 3.0), label_counts={"a": 40, "b": 40})
    shifted = detect_drift(ref, far, alpha=0.05, n_permutations=PERMS, seed=3)
    assert shifted.drift is True and shifted.test("embedding_mmd").drift  # type: ignore[union-attr]
    assert not shifted.test("label_shift").drift  # type: ignore[union-attr]


def test_alpha_outside_zero_one_is_refused() -> None:
    ref, new = _pair(0.0, labels=False)
    for alpha in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InvalidInput, match="alpha must be in") as err:
            detect_drift(ref, new, alpha=alpha)
        assert err.value.hint == (
            "Pick a level in (0, 1): adapter-registry drift TASK --data SPEC --alpha 0.05"
        )
