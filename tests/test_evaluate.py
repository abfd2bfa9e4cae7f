"""Tests for registry.evaluate: metrics, the accuracy matrix, forgetting/BWT and the PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from registry.errors import InvalidInput
from registry.evaluate import (
    AccuracyMatrix,
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_f1,
    plot_attention_png,
    plot_matrix_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Rows: after step i; columns: task j. Step i learns task i.
R = [
    [0.90, 0.20, 0.10],
    [0.80, 0.85, 0.30],
    [0.70, 0.75, 0.95],
]


# --------------------------------------------------------------------------------- metrics


def test_accuracy() -> None:
    assert accuracy([0, 1, 1, 2], [0, 1, 0, 2]) == pytest.approx(0.75)
    with pytest.raises(InvalidInput):
        accuracy([0, 1], [0])
    with pytest.raises(InvalidInput):
        accuracy([], [])


def test_macro_f1_hand_worked() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    # a: tp 2, fp 0, fn 1 -> 4/5 = 0.8
    # b: tp 1, fp 1, fn 1 -> 2/4 = 0.5
    # c: tp 1, fp 1, fn 0 -> 2/3
    expected = (0.8 + 0.5 + 2 / 3) / 3
    assert macro_f1(y_true, y_pred) == pytest.approx(expected)


def test_macro_f1_absent_and_unpredicted_classes() -> None:
    y_true = [0, 0, 1, 1]
    y_pred = [0, 0, 0, 0]
    # class 0: tp 2, fp 2, fn 0 -> 4/6; class 1 present but never predicted -> 0;
    # class 2 never present and never predicted -> skipped.
    assert macro_f1(y_true, y_pred, labels=[0, 1, 2]) == pytest.approx((4 / 6 + 0.0) / 2)
    with pytest.raises(InvalidInput):
        macro_f1(y_true, y_pred, labels=[5])


def test_confusion_matrix() -> None:
    cm = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], labels=[0, 1, 2])
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(InvalidInput):
        confusion_matrix([0, 3], [0, 0], labels=[0, 1])


def test_classification_metrics_ids_and_names() -> None:
    names = ["neg", "neu", "pos"]
    out = classification_metrics([0, 0, 2, 2], [0, 2, 2, 2], names)
    # neg: tp 1, fn 1 -> 2/3; pos: tp 2, fp 1 -> 4/5; neu skipped.
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["f1/neg"] == pytest.approx(2 / 3)
    assert out["f1/pos"] == pytest.approx(0.8)
    assert "f1/neu" not in out
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert (
        classification_metrics(["neg", "neg", "pos", "pos"], ["neg", "pos", "pos", "pos"], names)
        == out
    )
    with pytest.raises(InvalidInput):
        classification_metrics([3], [0], names)


# ---------------------------------------------------------------------------- the matrix


def test_accuracy_matrix_hand_computed() -> None:
    m = AccuracyMatrix(R, ["A", "B", "C"])
    # Average accuracy: mean of the last row = (0.70 + 0.75 + 0.95) / 3 = 0.80.
    assert m.average_accuracy() == pytest.approx(0.80)
    # BWT: ((0.70 - 0.90) + (0.75 - 0.85)) / 2 = (-0.20 - 0.10) / 2 = -0.15.
    assert m.bwt() == pytest.approx(-0.15)
    # Forgetting A: max(0.90, 0.80) - 0.70 = 0.20; B: max(0.85) - 0.75 = 0.10; mean 0.15.
    f = m.forgetting()
    assert f == pytest.approx({"A": 0.20, "B": 0.10})
    assert m.mean_forgetting() == pytest.approx(0.15)
    # FWT with baseline b = [0.1, 0.1, 0.1]: ((0.20 - 0.1) + (0.30 - 0.1)) / 2 = 0.15.
    assert m.fwt([0.1, 0.1, 0.1]) == pytest.approx(0.15)


def test_accuracy_matrix_forgetting_uses_max_not_diagonal() -> None:
    # Task A improves after step 1 (0.6 -> 0.9), then drops to 0.5 at the end.
    m = AccuracyMatrix([[0.6, np.nan, np.nan], [0.9, 0.8, np.nan], [0.5, 0.8, 0.7]])
    # Forgetting A = 0.9 - 0.5 = 0.4; B = 0.8 - 0.8 = 0.0.
    assert m.forgetting() == pytest.approx({"task0": 0.4, "task1": 0.0})
    # BWT = ((0.5 - 0.6) + (0.8 - 0.8)) / 2 = -0.05.
    assert m.bwt() == pytest.approx(-0.05)
    # Upper triangle is NaN (not evaluated); the average only uses the last row.
    assert m.average_accuracy() == pytest.approx((0.5 + 0.8 + 0.7) / 3)
    assert math.isnan(m.fwt([0.0, 0.0, 0.0]))


def test_accuracy_matrix_partial_and_single_step() -> None:
    # Two steps over three tasks: averages use only the tasks learned so far.
    m = AccuracyMatrix([[0.9, np.nan, np.nan], [0.7, 0.8, np.nan]], ["A", "B", "C"])
    assert m.average_accuracy() == pytest.approx(0.75)
    assert m.bwt() == pytest.approx(-0.2)
    one = AccuracyMatrix([[0.9]])
    assert one.average_accuracy() == pytest.approx(0.9)
    assert math.isnan(one.bwt()) and one.forgetting() == {} and math.isnan(one.mean_forgetting())
    with pytest.raises(InvalidInput):
        AccuracyMatrix([[0.9], [0.8]])  # more steps than tasks
    with pytest.raises(InvalidInput):
        AccuracyMatrix([[1.5]])


def test_accuracy_matrix_from_entries_and_dict_round_trip() -> None:
    entries = [(i, j, R[i][j]) for i in range(3) for j in range(3) if j <= i]
    m = AccuracyMatrix.from_entries(["A", "B", "C"], entries)
    assert math.isnan(m.values[0, 1]) and m.values[2, 1] == pytest.approx(0.75)
    d = m.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["values"][0][1] is None
    assert d["bwt"] == pytest.approx(-0.15)
    back = AccuracyMatrix.from_dict(json.loads(text))
    assert np.array_equal(back.values, m.values, equal_nan=True)
    assert back.task_names == ["A", "B", "C"]


def test_accuracy_matrix_markdown() -> None:
    md = AccuracyMatrix(R, ["A", "B", "C"]).to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| after step | A | B | C |"
    assert lines[2] == "| A | 0.900 | 0.200 | 0.100 |"
    assert "Average accuracy: 0.800" in md
    assert "BWT: -0.150" in md
    assert "Forgetting (mean): 0.150" in md
    nan_md = AccuracyMatrix([[0.5, np.nan]], ["A", "B"]).to_markdown()
    assert "| A | 0.500 | n/a |" in nan_md and "BWT: n/a" in nan_md


# ----------------------------------------------------------------------------------- plots


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > 100
    assert data[:8] == PNG_MAGIC


def test_plot_matrix_png(tmp_path: Path) -> None:
    m = AccuracyMatrix(
        [[0.9, np.nan, np.nan], [0.8, 0.85, np.nan], [0.7, 0.75, 0.95]], ["A", "B", "C"]
    )
    out = plot_matrix_png(m, tmp_path / "plots" / "matrix.png", "Accuracy matrix")
    _assert_png(out)


def test_plot_attention_png(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).dirichlet(np.ones(3), size=6)
    out = plot_attention_png(weights, ["sst2@1", "mnli@2", "cb@1"], tmp_path / "att.png", "Fusion")
    _assert_png(out)
    with pytest.raises(InvalidInput):
        plot_attention_png(weights, ["only-one"], tmp_path / "bad.png", "Fusion")


def _red_pixels(path: Path) -> int:
    from matplotlib.image import imread

    img = imread(path)
    return int(((img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)).sum())


def test_plot_matrix_png_draws_refused_candidates_under_a_red_line(tmp_path: Path) -> None:
    m = AccuracyMatrix([[0.9, np.nan], [0.8, 0.85]], ["A", "B"])
    plain = plot_matrix_png(m, tmp_path / "plain.png", "Accuracy matrix")
    refused = plot_matrix_png(
        m, tmp_path / "refused.png", "Accuracy matrix", [("2: cand@1", [0.7, None])]
    )
    _assert_png(refused)
    assert _red_pixels(plain) == 0
    assert _red_pixels(refused) > 100  # the line between production rows and the candidate
    with pytest.raises(ValueError):  # a candidate row has one value per column
        plot_matrix_png(m, tmp_path / "bad.png", "t", [("x", [0.5])])
