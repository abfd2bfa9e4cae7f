"""Drift's tests and decision, pinned exactly: statistics, defaults, refusals and the rules for
which tests run (``make mutants`` measures how much of this a change could break unnoticed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from registry.drift import (
    ReferenceProfile,
    detect_drift,
    label_shift_test,
    mmd_permutation_test,
    text_profile,
)
from registry.errors import InvalidInput


def _emb(seed: int, n: int, d: int = 3, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(n, d))


def _reference_mmd2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unbiased MMD² with an RBF kernel, median heuristic, written out plainly."""
    z = np.concatenate([x, y])
    n, m = len(x), len(y)
    d2 = [[float(((a - b) ** 2).sum()) for b in z] for a in z]
    upper = [d2[i][j] for i in range(n + m) for j in range(i + 1, n + m)]
    sigma2 = float(np.median(upper))

    def k(i: int, j: int) -> float:
        return math.exp(-d2[i][j] / (2 * sigma2))

    xx = sum(k(i, j) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(i, j) for i in range(n, n + m) for j in range(n, n + m) if i != j) / (m * (m - 1))
    xy = sum(k(i, j) for i in range(n) for j in range(n, n + m)) / (n * m)
    return xx + yy - 2 * xy, math.sqrt(sigma2)


def test_mmd_statistic_and_bandwidth_match_the_formula() -> None:
    x, y = _emb(1, 7), _emb(2, 4, shift=0.8)
    res = mmd_permutation_test(x, y, n_permutations=20, seed=5)
    statistic, bandwidth = _reference_mmd2(x, y)
    assert res.statistic == pytest.approx(statistic, rel=1e-9)
    assert res.bandwidth == pytest.approx(bandwidth, rel=1e-12)
    assert (res.n_ref, res.n_new, res.n_permutations, res.seed) == (7, 4, 20, 5)
    assert res.p_value * 21 == pytest.approx(round(res.p_value * 21))


def test_mmd_defaults() -> None:
    x, y = _emb(3, 520), _emb(4, 510)
    res = mmd_permutation_test(x, y)
    assert (res.n_permutations, res.seed, res.n_ref, res.n_new) == (500, 0, 500, 500)
    assert res == mmd_permutation_test(x, y, n_permutations=500, seed=0, max_samples=500)


def test_mmd_runs_exactly_the_permutations_asked_for() -> None:
    same = np.ones((6, 2))
    for n_permutations in (0, 1, 127, 128, 129, 300):
        res = mmd_permutation_test(same, same, n_permutations=n_permutations)
        assert res.p_value == 1.0, n_permutations  # every permutation ties: (1 + n) / (1 + n)


def test_mmd_subsamples_both_sides() -> None:
    res = mmd_permutation_test(_emb(5, 30), _emb(6, 40), max_samples=12, n_permutations=5)
    assert (res.n_ref, res.n_new) == (12, 12)
    small = mmd_permutation_test(_emb(5, 2), _emb(6, 2), max_samples=2, n_permutations=3)
    assert (small.n_ref, small.n_new) == (2, 2)


def test_mmd_refusals_are_exact() -> None:
    cases = [
        ((_emb(1, 5, d=3), _emb(2, 5, d=2)), {}, "x has 3 features but y has 2"),
        ((_emb(1, 5), _emb(2, 5)), {"n_permutations": -1}, "n_permutations must be >= 0, got -1"),
        ((_emb(1, 5), _emb(2, 5)), {"max_samples": 1}, "max_samples must be >= 2, got 1"),
        ((_emb(1, 1), _emb(2, 5)), {}, "MMD needs at least 2 rows on each side, got 1 and 5"),
        ((_emb(1, 5), _emb(2, 1)), {}, "MMD needs at least 2 rows on each side, got 5 and 1"),
        ((np.full((3, 2), np.nan), _emb(2, 5, d=2)), {}, "x contains NaN or infinite values"),
        ((_emb(1, 5, d=2), np.full((3, 2), np.inf)), {}, "y contains NaN or infinite values"),
    ]
    for (x, y), kwargs, message in cases:
        with pytest.raises(InvalidInput) as err:
            mmd_permutation_test(x, y, **kwargs)  # type: ignore[arg-type]
        assert err.value.message == message
    # Each refusal names the next step (#17's hints, pinned exactly).
    hints = [
        ({"n_permutations": -1}, "e.g. adapter-registry drift TASK --data SPEC --permutations 500"),
        ({"max_samples": 1}, "Subsample at least 2 rows a side (the default is 500)."),
    ]
    for kwargs, hint in hints:
        with pytest.raises(InvalidInput) as err:
            mmd_permutation_test(_emb(1, 5), _emb(2, 5), **kwargs)  # type: ignore[arg-type]
        assert err.value.hint == hint
    with pytest.raises(InvalidInput) as err:
        mmd_permutation_test(_emb(1, 1), _emb(2, 5))
    assert err.value.hint == "Give 2 rows or more a side: adapter-registry drift TASK --data SPEC"
    with pytest.raises(InvalidInput) as err:
        mmd_permutation_test(_emb(1, 5, d=3), _emb(2, 5, d=2))
    assert err.value.hint == "embed both samples with the same base model"
    assert mmd_permutation_test(_emb(1, 2), _emb(2, 2), n_permutations=0).p_value == 1.0


def test_label_shift_pinned() -> None:
    res = label_shift_test({"a": 5, "b": 1}, {"a": 5, "b": 0})
    assert res.dof == 1  # a label seen once in all still counts
    assert res.counts == {"a": (5, 5), "b": (1, 0)}
    tiny = label_shift_test({"a": 3, "b": 3}, {"a": 1})  # one labelled row is enough
    assert tiny.dof == 1 and 0.0 < tiny.p_value < 1.0
    degenerate = label_shift_test({"a": 3}, {"a": 2, "b": 0})
    assert degenerate.counts == {"a": (3, 2), "b": (0, 0)}
    for ref, new, message in (
        ({"a": 0}, {"a": 3}, "label_shift_test needs at least one labelled row on each side"),
        ({"a": 3}, {"a": 0}, "label_shift_test needs at least one labelled row on each side"),
        ({"a": -1}, {"a": 3}, "ref_counts['a'] must be a non-negative integer, got -1"),
        ({"a": 3}, {"b": 1.5}, "new_counts['b'] must be a non-negative integer, got 1.5"),
    ):
        with pytest.raises(InvalidInput) as err:
            label_shift_test(ref, new)  # type: ignore[arg-type]
        assert err.value.message == message
        assert err.value.hint == (
            "Compare labelled data on both sides, or leave the label test out."
            if "labelled row" in message
            else "Give label counts as label -> non-negative integer."
        )


def _text(seed: int) -> object:
    rng = np.random.default_rng(seed)
    ids = [[int(t) for t in rng.integers(5, 60, size=8)] for _ in range(30)]
    return text_profile([" ".join(map(str, r)) for r in ids], ids, 1)


def test_detect_drift_reports_every_statistic_and_its_defaults() -> None:
    ref = ReferenceProfile(embeddings=_emb(1, 520), label_counts={"a": 30, "b": 20})
    new = ReferenceProfile(embeddings=_emb(2, 510), label_counts={"a": 20, "b": 30})
    result = detect_drift(ref, new)
    mmd, lab = result.test("embedding_mmd"), result.test("label_shift")
    assert mmd is not None and lab is not None
    direct = mmd_permutation_test(ref.embeddings, new.embeddings)
    assert (mmd.statistic, mmd.p_value) == (direct.statistic, direct.p_value)
    null = mmd.details.pop("null_quantiles")
    assert mmd.details == {
        "n_ref": 500,
        "n_new": 500,
        "n_permutations": 500,
        "bandwidth": direct.bandwidth,
        "seed": 0,
    }
    # the null distribution the p-value ranks the statistic in: its quantiles, min to max
    assert len(direct.null) == 500 and len(null) == 201
    assert (null[0], null[-1]) == (min(direct.null), max(direct.null))
    exceed = sum(v >= mmd.statistic - 1e-12 * max(1.0, abs(mmd.statistic)) for v in direct.null)
    assert mmd.p_value == (1 + exceed) / 501
    chi = label_shift_test({"a": 30, "b": 20}, {"a": 20, "b": 30})
    assert (lab.statistic, lab.p_value) == (chi.statistic, chi.p_value)
    assert lab.details == {"dof": 1, "counts": {"a": [30, 20], "b": [20, 30]}}
    assert (result.alpha, result.per_test_alpha) == (0.05, 0.025)
    assert (result.n_ref, result.n_new) == (520, 510)
    seeded = detect_drift(ref, new, seed=4, n_permutations=50, max_samples=40)
    assert seeded.test("embedding_mmd").details["seed"] == 4  # type: ignore[union-attr]
    assert seeded.test("embedding_mmd").details["n_ref"] == 40  # type: ignore[union-attr]


def test_which_tests_run() -> None:
    two = ReferenceProfile(embeddings=_emb(1, 2), label_counts={"a": 1, "b": 1})
    one = ReferenceProfile(embeddings=_emb(2, 1), label_counts={"a": 2, "b": 1})
    names = [t.name for t in detect_drift(two, two, n_permutations=5).tests]
    assert names == ["embedding_mmd", "label_shift"]  # two rows on each side are enough
    for a, b in ((two, one), (one, two)):
        result = detect_drift(a, b, n_permutations=5)
        assert [t.name for t in result.tests] == ["label_shift"]
        assert result.per_test_alpha == 0.05
    text_only = ReferenceProfile(embeddings=np.zeros((0, 0)), text=_text(1))  # type: ignore[arg-type]
    other = ReferenceProfile(embeddings=np.zeros((0, 0)), text=_text(2))  # type: ignore[arg-type]
    names = [t.name for t in detect_drift(text_only, other).tests]
    assert names == ["vocabulary_coverage", "length"]
    half = ReferenceProfile(embeddings=_emb(3, 5), text=_text(3))  # type: ignore[arg-type]
    assert [t.name for t in detect_drift(half, ReferenceProfile(embeddings=_emb(4, 5))).tests] == [
        "embedding_mmd"
    ]
    empty = ReferenceProfile(embeddings=np.zeros((0, 0)))
    with pytest.raises(InvalidInput) as err:
        detect_drift(empty, empty)
    assert err.value.message == (
        "nothing to compare: the profiles share no embeddings, labels or text statistics"
    )
    assert err.value.hint == "build both profiles with embeddings (at least 2 rows each)"


def test_profiles_from_different_base_models_are_refused() -> None:
    a = ReferenceProfile(embeddings=_emb(1, 5), base_model_revision="r1")
    b = ReferenceProfile(embeddings=_emb(2, 5), base_model_revision="r2")
    with pytest.raises(InvalidInput) as err:
        detect_drift(a, b)
    assert err.value.message == "profiles come from different base model revisions (r1 vs r2)"
    assert err.value.hint == "recompute the reference profile with the same base model revision"
    b.base_model_revision = None  # unknown on one side: compared anyway
    assert detect_drift(a, b, n_permutations=5).tests
