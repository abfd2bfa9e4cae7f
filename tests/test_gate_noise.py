"""The gate's noise allowance (``update --gate-noise``): an earlier split may drop by as many
standard errors of the current model's score on its validation rows, when that is more than the
tolerance. Chosen on dev (benchmarks/PROTOCOL.md); these tests pin what it lets through."""

from __future__ import annotations

import math

import pytest

from registry.continual import UpdateOptions
from registry.continual.evaluate import Score
from registry.continual.gate import allowed_drop, gate
from registry.errors import InvalidInput


def _new() -> Score:
    return Score("kitchen", 2, 0.84, 0.74, new=True, rows=100)


def _earlier(candidate: float, incumbent: float, rows: int | None) -> Score:
    return Score("sst2", 1, candidate, incumbent, new=False, rows=rows)


def test_the_allowance_is_the_binomial_standard_error_or_the_tolerance() -> None:
    assert allowed_drop(_earlier(0.7, 0.8, 100), 0.01, 1.0) == pytest.approx(0.04)
    assert allowed_drop(_earlier(0.7, 0.8, 100), 0.01, 2.0) == pytest.approx(0.08)
    assert allowed_drop(_earlier(0.7, 0.5, 400), 0.01, 1.0) == pytest.approx(0.025)
    # the tolerance is a floor: a large split, a perfect score, no noise, unknown rows
    assert allowed_drop(_earlier(0.7, 0.8, 10_000), 0.01, 1.0) == 0.01
    assert allowed_drop(_earlier(0.7, 1.0, 100), 0.01, 1.0) == 0.01
    assert allowed_drop(_earlier(0.7, 0.8, 100), 0.01, 0.0) == 0.01
    assert allowed_drop(_earlier(0.7, 0.8, None), 0.01, 1.0) == 0.01
    assert allowed_drop(_earlier(0.7, 0.8, 100), 0.05, 1.0) == 0.05


def test_a_dip_within_the_noise_of_a_small_split_is_promoted_not_a_large_one() -> None:
    # 72% -> 69% on 100 rows (one standard error there: 0.045), the dip that kept refusing
    # the domain stream's updates under the 0.01 tolerance alone
    dip = _earlier(0.69, 0.72, 100)
    ok, why = gate([_new(), dip], 0.01, noise=1.0)
    assert ok, why
    assert why.endswith("no earlier split regresses beyond 0.010 or 1 standard error of its "
                        "validation rows")  # fmt: skip
    ok, why = gate([_new(), dip], 0.01, noise=0.0)
    assert not ok and why.endswith("(more than the tolerance 0.010)")
    # the same 3 points on 5,000 rows are real: the standard error there is 0.0063
    ok, why = gate([_new(), _earlier(0.69, 0.72, 5000)], 0.01, noise=1.0)
    assert not ok, why
    # a 10-point fall on 100 rows is more than one standard error: refused, and said so
    ok, why = gate([_new(), _earlier(0.62, 0.72, 100)], 0.01, noise=1.0)
    assert not ok
    limit = math.sqrt(0.72 * 0.28 / 100)
    assert why == (
        f"sst2 would regress from 72.0% to 62.0% accuracy (more than the allowed {limit:.3f}: "
        "1 standard error of its 100 validation rows)"
    )


def test_noise_never_lets_a_candidate_that_loses_on_the_new_data_through() -> None:
    loses = Score("kitchen", 2, 0.83, 0.85, new=True, rows=100)
    ok, why = gate([loses, _earlier(0.72, 0.72, 100)], 0.01, noise=3.0)
    assert not ok and why.startswith("does not beat the current model on the new data")


def test_the_option_is_checked_before_any_work() -> None:
    assert UpdateOptions().gate_noise == 1.0
    with pytest.raises(InvalidInput, match="gate noise must be"):
        UpdateOptions(gate_noise=-0.5)
    with pytest.raises(InvalidInput, match="gate noise must be"):
        UpdateOptions(gate_noise=math.nan)
