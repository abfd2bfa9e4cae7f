"""Tests for registry.drift: MMD, label shift, text statistics, profiles, the combined decision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from registry.drift import (
    ReferenceProfile,
    TextProfile,
    detect_drift,
    label_shift_test,
    mean_pool,
    mmd_permutation_test,
    text_profile,
    text_shift_test,
)
from registry.errors import InvalidInput

UNK = 1


def _gauss(seed: int, n: int = 200, d: int = 16, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(n, d)).astype(np.float32)


def _tokens(seed: int, n: int, vocab: range, unk_share: float = 0.0) -> list[list[int]]:
    """Zipf-like token ids from ``vocab``; a share of them replaced by the unknown id."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(vocab) + 1)
    probs = (1.0 / ranks) / (1.0 / ranks).sum()
    ids = np.array(list(vocab))
    out = []
    for _ in range(n):
        length = int(rng.integers(5, 30))
        row = rng.choice(ids, size=length, p=probs)
        row[rng.random(length) < unk_share] = UNK
        out.append([int(t) for t in row])
    return out


def _texts(token_ids: list[list[int]]) -> list[str]:
    return [" ".join(f"w{t}" for t in ids) for ids in token_ids]


def _profile(token_ids: list[list[int]]) -> TextProfile:
    return text_profile(_texts(token_ids), token_ids, UNK)


# ------------------------------------------------------------------------------------- MMD


def test_mmd_same_distribution_not_significant() -> None:
    res = mmd_permutation_test(_gauss(1), _gauss(2), n_permutations=300, seed=0)
    assert res.p_value > 0.05
    assert res.n_ref == 200 and res.n_new == 200 and res.n_permutations == 300
    assert res.bandwidth > 0


def test_mmd_shifted_mean_significant() -> None:
    res = mmd_permutation_test(_gauss(1), _gauss(2, shift=0.5), n_permutations=300, seed=0)
    assert res.p_value < 0.01
    assert res.statistic > 0
    # The smallest attainable permutation p-value.
    assert res.p_value == pytest.approx(1 / 301)


def test_mmd_seed_reproducible_and_seed_dependent() -> None:
    x, y = _gauss(3, n=120), _gauss(4, n=120, shift=0.05)
    a = mmd_permutation_test(x, y, n_permutations=200, seed=7)
    b = mmd_permutation_test(x, y, n_permutations=200, seed=7)
    assert a == b
    others = {mmd_permutation_test(x, y, n_permutations=200, seed=s).p_value for s in range(8, 12)}
    assert len(others | {a.p_value}) > 1


def test_mmd_subsamples_to_max_samples() -> None:
    res = mmd_permutation_test(
        _gauss(5, n=300), _gauss(6, n=50), max_samples=100, n_permutations=10
    )
    assert (res.n_ref, res.n_new) == (100, 50)


def test_mmd_identical_points_gives_p_one() -> None:
    res = mmd_permutation_test(np.ones((10, 3)), np.ones((12, 3)), n_permutations=50)
    assert res.statistic == pytest.approx(0.0, abs=1e-12)
    assert res.p_value == 1.0


def test_mmd_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput):
        mmd_permutation_test(_gauss(1, d=4), _gauss(2, d=5))
    with pytest.raises(InvalidInput):
        mmd_permutation_test(_gauss(1, n=1), _gauss(2))
    bad = _gauss(1)
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInput):
        mmd_permutation_test(bad, _gauss(2))


# ------------------------------------------------------------------------------ label shift


def test_label_shift_detects_swap() -> None:
    res = label_shift_test({"pos": 90, "neg": 10}, {"pos": 10, "neg": 90})
    assert res.p_value < 1e-6
    assert res.dof == 1
    # Hand-computed Pearson statistic: expected 50 in every cell, (40² / 50) × 4 = 128.
    assert res.statistic == pytest.approx(128.0)
    assert res.counts == {"neg": (10, 90), "pos": (90, 10)}


def test_label_shift_ignores_small_change() -> None:
    res = label_shift_test({"pos": 50, "neg": 50}, {"pos": 52, "neg": 48})
    assert res.p_value > 0.05


def test_label_shift_degenerate_tables() -> None:
    one = label_shift_test({"a": 10}, {"a": 30})
    assert (one.statistic, one.p_value, one.dof) == (0.0, 1.0, 0)
    zero_col = label_shift_test({"a": 10, "b": 0}, {"a": 5, "c": 0})
    assert (zero_col.statistic, zero_col.p_value) == (0.0, 1.0)
    # A label seen only on the new side is part of the union.
    new_label = label_shift_test({"a": 50, "b": 50}, {"a": 40, "b": 40, "c": 20})
    assert new_label.dof == 2 and new_label.p_value < 0.001
    with pytest.raises(InvalidInput):
        label_shift_test({"a": 0}, {"a": 3})
    with pytest.raises(InvalidInput):
        label_shift_test({"a": -1, "b": 3}, {"a": 3})


# ------------------------------------------------------------------------------------- text


def test_text_profile_basic_numbers() -> None:
    ids = [[5, 6, UNK], [5], [7, 7, 7, 5, UNK]]
    prof = text_profile(["a b c", "a", "x y z w v"], ids, UNK)
    assert prof.n_texts == 3 and prof.total_tokens == 9
    assert prof.mean_length == pytest.approx(3.0)
    assert prof.std_length == pytest.approx(np.std([3, 1, 5]))
    assert prof.unk_rate == pytest.approx(2 / 9)
    assert prof.vocab_ids[:2] == [5, 7] and prof.vocab_counts[:2] == [3, 3]
    assert sorted(prof.length_sample) == [1, 3, 5]
    # Kept tokens seen more than once, unknown excluded: 5 (×3) and 7 (×3) out of 9.
    assert prof.expected_coverage() == pytest.approx(6 / 9)
    with pytest.raises(InvalidInput):
        text_profile(["a"], [[1], [2]], UNK)


def test_text_shift_same_distribution_no_drift() -> None:
    ref = _profile(_tokens(1, 400, range(10, 300)))
    new = _profile(_tokens(2, 400, range(10, 300)))
    res = text_shift_test(ref, new)
    assert not res["vocabulary_coverage"]["drift"]
    assert (
        res["vocabulary_coverage"]["statistic"] > res["vocabulary_coverage"]["details"]["threshold"]
    )
    assert res["length"]["p_value"] > 0.01


def test_text_shift_detects_new_vocabulary() -> None:
    ref = _profile(_tokens(1, 300, range(10, 300)))
    new = _profile(_tokens(2, 300, range(200, 500)))
    res = text_shift_test(ref, new)
    cov = res["vocabulary_coverage"]
    assert cov["drift"] is True
    assert cov["statistic"] < cov["details"]["expected_coverage"] - 0.1


def test_text_shift_detects_unknown_tokens() -> None:
    ref = _profile(_tokens(1, 300, range(10, 300)))
    new = _profile(_tokens(2, 300, range(10, 300), unk_share=0.3))
    res = text_shift_test(ref, new)
    cov = res["vocabulary_coverage"]
    assert cov["details"]["unk_rate_new"] == pytest.approx(0.3, abs=0.03)
    assert cov["details"]["unk_rate_ref"] == 0.0
    assert cov["drift"] is True


def test_text_shift_detects_length_change() -> None:
    ref = _profile(_tokens(1, 300, range(10, 300)))
    long_rows = [row * 3 for row in _tokens(2, 300, range(10, 300))]
    res = text_shift_test(ref, _profile(long_rows))
    assert res["length"]["p_value"] < 1e-6 and res["length"]["drift"] is True


def test_text_shift_rejects_different_tokenizers() -> None:
    ids = _tokens(1, 20, range(10, 50))
    with pytest.raises(InvalidInput):
        text_shift_test(text_profile(_texts(ids), ids, 1), text_profile(_texts(ids), ids, 100))


# --------------------------------------------------------------------------------- profiles


def _reference(
    seed: int,
    shift: float = 0.0,
    labels: dict[str, int] | None = None,
    vocab: range = range(10, 300),
) -> ReferenceProfile:
    return ReferenceProfile(
        embeddings=_gauss(seed, n=150, shift=shift),
        label_counts=labels if labels is not None else {"neg": 75, "pos": 75},
        text=_profile(_tokens(seed, 150, vocab)),
        base_model_revision="rev-abc",
        dataset_fingerprint=f"sha256:{seed:064x}",
        seed=seed,
    )


def test_reference_profile_npz_round_trip_exact(tmp_path: Path) -> None:
    prof = _reference(11)
    path = prof.save(tmp_path / "sub" / "ref.npz")
    loaded = ReferenceProfile.load(path)
    assert loaded == prof
    assert loaded.embeddings.dtype == np.float32
    assert np.array_equal(loaded.embeddings, prof.embeddings)
    assert loaded.text == prof.text
    assert loaded.label_counts == prof.label_counts
    assert loaded.base_model_revision == "rev-abc"
    with np.load(path, allow_pickle=False) as npz:  # readable without pickle
        assert set(npz.files) == {"embeddings", "meta_json"}


def test_reference_profile_json_round_trip_exact() -> None:
    prof = _reference(12)
    text = json.dumps(prof.to_dict(), allow_nan=False)
    back = ReferenceProfile.from_dict(json.loads(text))
    assert back == prof


def test_reference_profile_without_embeddings_or_text(tmp_path: Path) -> None:
    prof = ReferenceProfile(embeddings=np.zeros((0, 8)), label_counts=None, text=None)
    assert ReferenceProfile.load(prof.save(tmp_path / "empty.npz")) == prof
    assert ReferenceProfile.from_dict(prof.to_dict()) == prof


def test_reference_profile_load_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InvalidInput):
        ReferenceProfile.load(bad)
    with pytest.raises(InvalidInput):
        ReferenceProfile.load(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- detect_drift


def test_detect_drift_no_drift() -> None:
    res = detect_drift(
        _reference(1), _reference(2, labels={"neg": 74, "pos": 76}), n_permutations=200
    )
    assert res.drift is False
    assert res.per_test_alpha == pytest.approx(0.025)
    names = [t.name for t in res.tests]
    assert names == ["embedding_mmd", "label_shift", "vocabulary_coverage", "length"]
    assert not any(t.drift for t in res.tests if t.decisive)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["drift"] is False and d["n_ref"] == 150 and d["n_new"] == 150
    assert {"name", "statistic", "p_value", "drift", "details"} <= set(d["tests"][0])


def test_detect_drift_embedding_shift() -> None:
    res = detect_drift(_reference(1), _reference(2, shift=0.6), n_permutations=200)
    assert res.drift is True
    mmd = res.test("embedding_mmd")
    assert mmd is not None and mmd.drift and mmd.p_value is not None and mmd.p_value < 0.01


def test_detect_drift_label_shift_only() -> None:
    res = detect_drift(
        _reference(1, labels={"neg": 135, "pos": 15}),
        _reference(2, labels={"neg": 15, "pos": 135}),
        n_permutations=100,
    )
    assert res.drift is True
    lab = res.test("label_shift")
    emb = res.test("embedding_mmd")
    assert lab is not None and lab.drift
    assert emb is not None and not emb.drift


def test_detect_drift_vocabulary_only() -> None:
    res = detect_drift(_reference(1), _reference(2, vocab=range(400, 700)), n_permutations=100)
    assert res.drift is True
    cov = res.test("vocabulary_coverage")
    assert cov is not None and cov.drift and cov.p_value is None


def test_detect_drift_unlabelled_new_data_skips_label_test() -> None:
    new = _reference(2)
    new.label_counts = None
    res = detect_drift(_reference(1), new, n_permutations=100)
    assert res.test("label_shift") is None
    assert res.per_test_alpha == pytest.approx(0.05)


def test_detect_drift_rejects_mismatched_base_model() -> None:
    other = _reference(2)
    other.base_model_revision = "rev-other"
    with pytest.raises(InvalidInput) as exc:
        detect_drift(_reference(1), other)
    assert exc.value.hint


# ------------------------------------------------------------------------------- mean_pool


def test_mean_pool_ignores_padding() -> None:
    torch = pytest.importorskip("torch")
    hidden = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [9.0, 9.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = mean_pool(hidden, mask)
    assert torch.allclose(out, torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
