"""The gate's metric (#18): macro-F1 when the new classes are imbalanced, and update's exit codes.

The issue's case: a candidate that wins on accuracy but loses on macro-F1 (a majority-class
model on an 85%-positive split) must not be promoted by default. Training, drift checks and the
candidate's scores on the new data are real; the other cells are set through the same
``evaluate_entity`` seam ``tests/test_continual.py`` uses, relative to the real recorded ones,
so the verdict is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry import continual
from registry import entities as E
from registry.cli import cli
from registry.continual import evaluate as continual_evaluate
from registry.continual.gate import IMBALANCE_RATIO, choose_gate_metric
from registry.errors import InvalidInput
from registry.store import Registry
from tests.test_continual import seeded  # noqa: F401, F811 (the same seeded registry fixture)

LABELS = ("negative", "positive")


def _labels(pos: int, neg: int) -> list[str]:
    return ["positive"] * pos + ["negative"] * neg


def test_auto_takes_macro_f1_only_above_the_imbalance_ratio() -> None:
    assert IMBALANCE_RATIO == 1.5
    assert choose_gate_metric("auto", _labels(3, 2), LABELS)[0] == "accuracy"  # exactly 1.5
    metric, why = choose_gate_metric("auto", _labels(8, 5), LABELS)  # 1.6
    assert metric == "macro_f1" and "negative 5, positive 8" in why, why
    assert choose_gate_metric("auto", _labels(8, 2), LABELS)[0] == "macro_f1"
    assert choose_gate_metric("auto", _labels(5, 0), LABELS)[0] == "macro_f1"  # a class missing
    assert choose_gate_metric("auto", [None, None], LABELS)[0] == "accuracy"  # unlabelled
    assert choose_gate_metric("accuracy", _labels(8, 2), LABELS) == (
        "accuracy",
        "asked for (--gate-metric)",
    )
    with pytest.raises(InvalidInput, match="auto, accuracy or macro_f1"):
        choose_gate_metric("f1", _labels(1, 1), LABELS)
    with pytest.raises(InvalidInput, match="auto, accuracy or macro_f1"):
        continual.UpdateOptions(gate_metric="recall")


def _majority_like(delta: float) -> Any:
    """Cells the run evaluates: the incumbent on pets is ``delta`` below the candidate's real
    accuracy and ``delta`` above its real macro-F1; the candidate on books equals the
    incumbent's real score there (no regression)."""

    def evaluate(
        registry: Registry, entity: E.Entity, columns: list[continual.Column], **kw: Any
    ) -> dict[int, float]:
        metric = kw.get("metric", "accuracy")
        out = {}
        for c in columns:
            if c.name == "pets":
                candidate = registry.resolve("sentiment@2")
                real = continual.recorded_scores(registry, candidate, metric)[c.dataset.id]
                out[c.dataset.id] = real - delta if metric == "accuracy" else real + delta
            else:
                incumbent = registry.resolve("sentiment@1")
                out[c.dataset.id] = continual.recorded_scores(registry, incumbent, metric)[
                    c.dataset.id
                ]
        return out

    return evaluate


def _update(data: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["update", "sentiment", "--data", str(data), "--epochs", "2", "--batch-size", "16"]
    args += ["--max-length", "32", "--device", "cpu", "--seed", "0", "--json", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def test_a_majority_class_win_is_refused_on_macro_f1_with_exit_4(
    seeded: Any,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    reg, data = seeded
    monkeypatch.setattr(continual_evaluate, "evaluate_entity", _majority_like(0.05))
    code, out = _update(data["pets"])
    assert out["gate_metric"] == "macro_f1" and "imbalanced" in out["gate_metric_reason"], out
    assert code == 4 and not out["promoted"], out
    assert out["gate"].startswith("does not beat the current model on the new data (macro_f1")
    assert reg.resolve("sentiment:production").ref == "sentiment@1"
    new = next(s for s in out["scores"] if s["new_data"])
    assert new["incumbent"] == pytest.approx(new["candidate"] + 0.05)
    # the incumbent's macro-F1 on the new data is recorded as such, not as accuracy
    incumbent = reg.resolve("sentiment@1")
    assert continual.recorded_scores(reg, incumbent, "macro_f1")[new["dataset_id"]] == (
        pytest.approx(new["incumbent"])
    )
    # and its accuracy too, under its own name: the accuracy matrix that report and the UI draw
    # (tests/test_serve_ui.py's BWT) needs accuracy rows whatever the gate compared
    accuracy = continual.recorded_scores(reg, incumbent)
    assert new["dataset_id"] in accuracy
    assert accuracy[new["dataset_id"]] != pytest.approx(new["incumbent"])

    _refusal_is_recorded_shown_and_drawn(reg, tmp_path, new["dataset_id"], out["gate"])

    # The same run judged on accuracy promotes (finished steps are reused) and exits 0.
    code, out = _update(data["pets"], "--gate-metric", "accuracy")
    assert (code, out["gate_metric"], out["promoted"]) == (0, "accuracy", True), out
    assert out["adapter"] == "sentiment@2" and out["reused"], out
    assert reg.resolve("sentiment:production").ref == "sentiment@2"
    # the promotion row carries the metric its gate compared; the refusal became the promotion
    promotions = reg.promotions(reg.get_task("sentiment").id)
    assert [(p.step, p.outcome, p.gate_metric) for p in promotions] == [
        (0, "promoted", None),  # production before the first update: never gated
        (1, "promoted", "accuracy"),
    ]
    assert promotions[1].gate_reason == out["gate"]
    rep = _cli_json("report", "--task", "sentiment", "--out", str(tmp_path / "r2"))[0]
    assert [(g["ref"], g["gate_metric"]) for g in rep["gates"]] == [
        ("sentiment@1", None),
        ("sentiment@2", "accuracy"),
    ]
    assert rep["refused"] == []
    text = CliRunner().invoke(cli, ["report", "--task", "sentiment", "--out", str(tmp_path)])
    assert "- step 1: sentiment@2 (gate on accuracy: beats the current model" in text.output
    shown = _cli_json("show", "sentiment@2")["promotion"]
    assert (shown["outcome"], shown["gate_metric"], shown["step"]) == ("promoted", "accuracy", 1)
    assert "promoted      step 1 to production (gate on accuracy" in (
        CliRunner().invoke(cli, ["show", "sentiment@2"]).output
    )


def _cli_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _refusal_is_recorded_shown_and_drawn(
    reg: Registry, tmp_path: Path, new_dataset_id: int, gate: str
) -> None:
    """After the macro-F1 refusal: the candidate is a ``refused`` row with its gate metric,
    ``show`` says so, and ``report`` draws it under the matrix without counting it."""
    (refusal,) = reg.promotions(reg.get_task("sentiment").id)
    assert (refusal.outcome, refusal.step, refusal.gate_metric) == ("refused", 1, "macro_f1")
    assert (refusal.entity_id, refusal.dataset_id, refusal.gate_reason) == (
        reg.resolve("sentiment@2").id,
        new_dataset_id,
        gate,
    )
    assert continual.production_history(reg, "sentiment") == []
    shown = _cli_json("show", "sentiment@2")["promotion"]
    assert (shown["outcome"], shown["gate_metric"]) == ("refused", "macro_f1")
    assert "refused       at step 1 for production (gate on macro_f1: does not beat" in (
        CliRunner().invoke(cli, ["show", "sentiment@2"]).output
    )
    rep = _cli_json("report", "--task", "sentiment", "--out", str(tmp_path / "r1"))[0]
    assert rep["matrix"]["steps"] == ["0: sentiment@1"]  # production only
    (row,) = rep["refused"]
    assert (row["ref"], row["step"], row["gate_metric"]) == ("sentiment@2", 1, "macro_f1")
    tasks = rep["matrix"]["tasks"]
    candidate_acc = continual.recorded_scores(reg, reg.resolve("sentiment@2"))
    assert row["values"][tasks.index("pets")] == pytest.approx(candidate_acc[new_dataset_id])
    assert Path(rep["png"]).is_file()
    text = CliRunner().invoke(cli, ["report", "--task", "sentiment", "--out", str(tmp_path)])
    assert "| refused by the gate | " in text.output
    assert "| 1: sentiment@2 (macro_f1) | " in text.output


def test_no_drift_exits_0(seeded: Any) -> None:  # noqa: F811 (the imported fixture)
    _, data = seeded
    code, out = _update(data["books2"])
    assert code == 0 and out["candidate"] is None and out["gate_metric"] is None, out
