"""The promotion gate at its exact boundaries, on real scores of real adapters (#16 pins).

A books adapter is the incumbent; the candidate is trained on the same cues with the labels
flipped, so it really forgets books. Validation splits of 16 rows make every accuracy a multiple
of 1/16, exact in binary, so "loses exactly the tolerance" is an exact comparison. The tests are
about the boundaries (``tolerance`` is passed in), not about the default tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.configs import TrainConfig
from registry.continual.evaluate import Score
from registry.continual.gate import gate
from registry.data import load_spec
from registry.inference import predict
from registry.store import Registry
from registry.trainer import train
from tests._util import sentiment_rows, write_splits

STEP = 1 / 16


def _accuracy(registry: Registry, ref: str, data: Path) -> float:
    rows = load_spec(str(data)).split("validation")
    preds = predict(registry, ref, data=str(data), split="validation")
    return sum(p["label"] == r.label for p, r in zip(preds, rows, strict=True)) / len(rows)


@pytest.fixture(scope="module")
def scores(tiny_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """Real accuracies: the incumbent and the forgetting candidate, on books (16 rows)."""
    root = tmp_path_factory.mktemp("gate")
    books = write_splits(
        root / "books", {"train": sentiment_rows(64, 0), "validation": sentiment_rows(16, 1)}
    )
    flip = {"positive": "negative", "negative": "positive"}
    flipped = [{**r, "label": flip[r["label"]]} for r in sentiment_rows(64, 2)]
    forget = write_splits(root / "forget", {"train": flipped, "validation": sentiment_rows(16, 3)})
    registry = Registry.init(root / "home")
    cfg = TrainConfig(epochs=10, lr=3e-2, batch_size=16, patience=10, max_length=32, seed=0)
    train(registry, "sentiment", str(books), str(tiny_base_dir), config=cfg, progress=False)
    train(registry, "sentiment", str(forget), str(tiny_base_dir), config=cfg, progress=False)
    return {
        "incumbent": _accuracy(registry, "sentiment@1", books),
        "candidate": _accuracy(registry, "sentiment@2", books),
    }


def _earlier(scores: dict[str, float]) -> Score:
    return Score("books", 1, scores["candidate"], scores["incumbent"], new=False)


def _new(candidate: float, incumbent: float | None) -> Score:
    return Score("pets", 2, candidate, incumbent, new=True)


def test_the_candidate_really_forgets(scores: dict[str, float]) -> None:
    drop = scores["incumbent"] - scores["candidate"]
    assert drop >= 2 * STEP, scores
    assert (drop / STEP).is_integer()  # exact multiples: the boundary is an exact comparison


def test_losing_exactly_the_tolerance_promotes_and_one_step_more_refuses(
    scores: dict[str, float],
) -> None:
    drop = scores["incumbent"] - scores["candidate"]
    win = _new(0.75, 0.5)
    ok, why = gate([win, _earlier(scores)], tolerance=drop)
    assert ok, why
    for tolerance in (drop - STEP, drop / 2, 0.0):
        ok, why = gate([win, _earlier(scores)], tolerance=tolerance)
        assert not ok and why.startswith("books would regress"), (tolerance, why)
        assert f"(more than the tolerance {tolerance:.3f})" in why


def test_a_tie_on_the_new_data_does_not_promote(scores: dict[str, float]) -> None:
    same = scores["incumbent"]
    ok, why = gate([_new(same, same)], tolerance=1.0)
    assert not ok and why.startswith("does not beat the current model on the new data"), why
    ok, why = gate([_new(same - STEP, same)], tolerance=1.0)
    assert not ok
    ok, why = gate([_new(same + STEP, same) if same < 1 else _new(same, same - STEP)], 1.0)
    assert ok and why.startswith("beats the current model on the new data"), why


def test_the_new_data_must_be_scored_and_unscored_splits_are_skipped(
    scores: dict[str, float],
) -> None:
    assert gate([_earlier(scores)], tolerance=1.0) == (
        False,
        "the new data's validation split could not be evaluated",
    )
    assert not gate([Score("pets", 2, None, 0.5, new=True)], tolerance=1.0)[0]
    # No incumbent on the new data (a first model): any score passes that step.
    assert gate([_new(scores["candidate"], None)], tolerance=0.0)[0]
    # Splits either side did not score are not compared, however low.
    unscored = Score("dvd", 3, None, 0.9, new=False)
    assert gate([_new(0.75, 0.5), unscored, Score("toys", 4, 0.0, None, new=False)], 0.0)[0]


def test_the_reasons_name_the_metric_and_both_scores() -> None:
    """What ``update`` prints and records as the gate's verdict, exactly (no model needed)."""
    earlier = Score("books", 1, 0.5, 0.75, new=False)
    assert gate([_new(0.5, 0.625)], tolerance=0.1) == (
        False,
        "does not beat the current model on the new data (accuracy 50.0% vs 62.5%)",
    )
    assert gate([_new(0.75, 0.5), earlier], tolerance=0.125, metric="macro_f1") == (
        False,
        "books would regress from 75.0% to 50.0% macro_f1 (more than the tolerance 0.125)",
    )
    assert gate([_new(0.75, 0.5), earlier], tolerance=0.25) == (
        True,
        "beats the current model on the new data (accuracy 75.0% vs 50.0%) and no earlier "
        "split regresses beyond 0.250",
    )
