"""#16 finding 9 for ``update``: resumable by design, never half-done.

``update`` is not one transaction: each step commits its own complete record (drift report,
adapter version, fusion, scores) so that a rerun on the same data resumes instead of training
again; only the promotion (its rows and the alias move) commits as one, at the end. Here real
database failures (SQLite triggers that abort a statement, on a real registry after a real
training run) hit the two late steps, and after each failure:

- the alias has not moved and no promotion row exists (no half-promotion);
- nothing is orphaned: ``verify`` finds no problem and no unreferenced artifact, and no staging
  folder is left;
- the rerun resumes: it reuses the drift report and the adapter version (no new version).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from registry import continual
from registry.errors import RegistryError
from registry.store import Registry
from tests.test_continual import (
    _counts,
    _update,
    seeded,  # noqa: F401, F811 (the same seeded registry fixture)
)

# Score rows are the only metric rows with both a dataset and an update step.
FAIL_SCORES = (
    "CREATE TRIGGER fail_scores BEFORE INSERT ON metrics "
    "WHEN NEW.step IS NOT NULL AND NEW.dataset_id IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'injected: the scores cannot be recorded'); END"
)
FAIL_ALIAS = (
    "CREATE TRIGGER fail_alias BEFORE UPDATE ON aliases "
    "BEGIN SELECT RAISE(ABORT, 'injected: the alias cannot move'); END"
)


def _sql(db: Path, statement: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(statement)


def _nothing_half_done(reg: Registry) -> None:
    assert reg.resolve("sentiment:production").ref == "sentiment@1"
    assert continual.production_history(reg, "sentiment") == []
    report = reg.verify()
    assert report.ok and not report.orphans, (report.problems, report.orphans)
    assert list(reg.artifacts.leftovers()) == []


@pytest.mark.slow  # three update runs on a real tiny model
def test_a_failed_update_leaves_no_half_promotion_and_a_rerun_resumes(
    seeded: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    reg, data = seeded
    db = tmp_path / "home" / "registry.db"
    assert db.exists()

    # 1. The evaluation's scores cannot be recorded (after the new version is registered).
    _sql(db, FAIL_SCORES)
    with pytest.raises(RegistryError, match="injected: the scores cannot be recorded"):
        _update(reg, data["pets"], force=True)
    assert _counts(reg) == (2, 0, 1)  # the new version and its drift report are kept, complete
    assert reg.resolve("sentiment@2").status == "active"
    _nothing_half_done(reg)

    # 2. Rerun: it resumes (no second version, no second report) and fails at the alias move,
    # after the promotion rows were written in the same transaction: none of them stays.
    _sql(db, "DROP TRIGGER fail_scores")
    _sql(db, FAIL_ALIAS)
    with pytest.raises(RegistryError, match="injected: the alias cannot move"):
        _update(reg, data["pets"], force=True)
    assert _counts(reg) == (2, 0, 1)
    _nothing_half_done(reg)

    # 3. Rerun: resumes again and promotes, once.
    _sql(db, "DROP TRIGGER fail_alias")
    result = _update(reg, data["pets"], force=True)
    assert _counts(reg) == (2, 0, 1)
    assert "adapter sentiment@2" in result.reused and "drift report #1" in result.reused[0]
    assert result.promoted and result.step == 1
    assert reg.resolve("sentiment:production").ref == "sentiment@2"
    history = continual.production_history(reg, "sentiment")
    assert [(s.step, s.entity.ref) for s in history] == [(0, "sentiment@1"), (1, "sentiment@2")]
