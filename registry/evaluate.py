"""Classification metrics, the continual-learning accuracy matrix, forgetting and transfer.

Pure computation: no database, no models. The PNG plots live in :mod:`registry.plots` and are
re-exported here.

Accuracy-matrix definitions follow Lopez-Paz & Ranzato (2017, GEM) and Chaudhry et al. (2018), as
implemented in Avalanche: ``R[i][j]`` is the accuracy on task ``j`` after training step ``i``
(step ``i`` learns task ``i``), NaN where not evaluated, and ``T`` is the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from registry.errors import InvalidInput
from registry.plots import plot_attention_png, plot_matrix_png

__all__ = [
    "AccuracyMatrix",
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "macro_f1",
    "plot_attention_png",
    "plot_matrix_png",
]


# --------------------------------------------------------------------------------------------
# Classification metrics
# --------------------------------------------------------------------------------------------


def _pair(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> tuple[list[Any], list[Any]]:
    """Return both label sequences as lists of plain Python values, checking their lengths."""
    t = [_plain(v) for v in y_true]
    p = [_plain(v) for v in y_pred]
    if len(t) != len(p):
        raise InvalidInput(
            f"y_true has {len(t)} labels but y_pred has {len(p)}",
            hint="Pass one prediction per true label.",
        )
    if not t:
        raise InvalidInput("cannot score an empty prediction set", hint="Score at least one row.")
    return t, p


def _plain(v: Any) -> Any:
    """Return numpy scalars as Python scalars so that 1 and np.int64(1) are the same label."""
    return v.item() if isinstance(v, np.generic) else v


def _sorted_labels(values: Iterable[Any]) -> list[Any]:
    """Return the distinct labels, sorted when they are comparable, else in first-seen order."""
    distinct = list(dict.fromkeys(values))
    try:
        return sorted(distinct)
    except TypeError:
        return distinct


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Return the share of predictions equal to the true label."""
    t, p = _pair(y_true, y_pred)
    return float(sum(a == b for a, b in zip(t, p, strict=True)) / len(t))


def _per_class_f1(t: list[Any], p: list[Any], labels: Sequence[Any]) -> dict[Any, float | None]:
    """Return F1 per label; None for a label neither present in ``t`` nor predicted in ``p``."""
    out: dict[Any, float | None] = {}
    for lab in labels:
        tp = sum(1 for a, b in zip(t, p, strict=True) if a == lab and b == lab)
        fp = sum(1 for a, b in zip(t, p, strict=True) if a != lab and b == lab)
        fn = sum(1 for a, b in zip(t, p, strict=True) if a == lab and b != lab)
        denom = 2 * tp + fp + fn
        out[lab] = None if denom == 0 else 2 * tp / denom
    return out


def macro_f1(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
) -> float:
    """Return the unweighted mean of per-class F1.

    A class never present and never predicted is skipped; a class present but never predicted
    (or predicted but never present) scores 0.

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        labels: classes to average over; default is every label in either sequence.
    """
    t, p = _pair(y_true, y_pred)
    labs = [_plain(v) for v in labels] if labels is not None else _sorted_labels(t + p)
    scores = [f for f in _per_class_f1(t, p, labs).values() if f is not None]
    if not scores:
        raise InvalidInput(
            "none of the given labels occur in y_true or y_pred",
            hint="Pass the label names that adapter-registry show REF lists.",
        )
    return float(sum(scores) / len(scores))


def confusion_matrix(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
) -> npt.NDArray[np.int64]:
    """Return counts ``C[i][k]`` of rows with true label ``labels[i]`` predicted as ``labels[k]``.

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        labels: row/column order; default is the sorted union. Unknown labels are an error.
    """
    t, p = _pair(y_true, y_pred)
    labs = [_plain(v) for v in labels] if labels is not None else _sorted_labels(t + p)
    index = {lab: i for i, lab in enumerate(labs)}
    out = np.zeros((len(labs), len(labs)), dtype=np.int64)
    for a, b in zip(t, p, strict=True):
        if a not in index or b not in index:
            missing = a if a not in index else b
            raise InvalidInput(
                f"label {missing!r} is not one of {labs}",
                hint="Pass every label that occurs; adapter-registry show REF lists them.",
            )
        out[index[a], index[b]] += 1
    return out


def _to_names(values: Sequence[Hashable], label_names: Sequence[str], what: str) -> list[str]:
    """Map class ids (ints) or names (strings) to names in ``label_names``."""
    names = list(label_names)
    known = set(names)
    out: list[str] = []
    for raw in values:
        v = _plain(raw)
        if isinstance(v, str):
            if v not in known:
                raise InvalidInput(
                    f"{what} has label {v!r}, not one of {names}",
                    hint="Use the label names or class ids that adapter-registry show REF lists.",
                )
            out.append(v)
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names):
            out.append(names[v])
        else:
            raise InvalidInput(
                f"{what} has label {v!r}: expected a class id 0..{len(names) - 1}",
                hint="Use the label names or class ids that adapter-registry show REF lists.",
            )
    return out


def classification_metrics(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], label_names: Sequence[str]
) -> dict[str, float]:
    """Return ``accuracy``, ``macro_f1`` and ``f1/<label>`` for each label that occurs.

    Labels may be class ids (index into ``label_names``) or the names themselves. A label never
    present and never predicted gets no ``f1/`` key and is left out of the macro average.
    """
    if not label_names:
        raise InvalidInput(
            "label_names is empty",
            hint="Pass the label names that adapter-registry show REF lists.",
        )
    t = _to_names(y_true, label_names, "y_true")
    p = _to_names(y_pred, label_names, "y_pred")
    t, p = _pair(t, p)
    per_class = _per_class_f1(t, p, list(label_names))
    out: dict[str, float] = {
        "accuracy": accuracy(t, p),
        "macro_f1": macro_f1(t, p, labels=list(label_names)),
    }
    for name, f1 in per_class.items():
        if f1 is not None:
            out[f"f1/{name}"] = float(f1)
    return out


# --------------------------------------------------------------------------------------------
# Accuracy matrix
# --------------------------------------------------------------------------------------------


def _json(v: float) -> float | None:
    """Return ``v``, or None for NaN/inf (strict JSON)."""
    return float(v) if math.isfinite(v) else None


def _fmt(v: float, signed: bool = False) -> str:
    """Format a metric for a table; ``n/a`` for NaN."""
    if not math.isfinite(v):
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


class AccuracyMatrix:
    """``R[i][j]``: accuracy on task ``j`` after training step ``i`` (NaN where not evaluated).

    Step ``i`` learns task ``i``, so there are at least as many tasks (columns) as steps (rows);
    extra columns are tasks not trained yet (useful for forward transfer).

    Args:
        values: steps × tasks accuracies; None or NaN where not evaluated.
        task_names: column names (default ``task0``, ``task1``, …).
        step_names: row names (default: the name of the task each step learned).
    """

    def __init__(
        self,
        values: npt.ArrayLike,
        task_names: Sequence[str] | None = None,
        step_names: Sequence[str] | None = None,
    ) -> None:
        arr = np.array(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise InvalidInput(
                f"accuracy matrix must be 2-D with >= 1 step, got {arr.shape}",
                hint="Give one row per step and one column per task, accuracies in [0, 1].",
            )
        n_steps, n_tasks = arr.shape
        if n_tasks < n_steps:
            raise InvalidInput(
                f"{n_steps} steps but only {n_tasks} tasks: step i must learn task i",
                hint="Give one row per step and one column per task, accuracies in [0, 1].",
            )
        finite = arr[np.isfinite(arr)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            raise InvalidInput(
                "accuracies must lie in [0, 1]",
                hint="Give one row per step and one column per task, accuracies in [0, 1].",
            )
        self.values: npt.NDArray[np.float64] = arr
        self.task_names = (
            list(task_names) if task_names is not None else [f"task{j}" for j in range(n_tasks)]
        )
        if len(self.task_names) != n_tasks:
            raise InvalidInput(
                f"{len(self.task_names)} task names for {n_tasks} columns",
                hint="Give one row per step and one column per task, accuracies in [0, 1].",
            )
        self.step_names = list(step_names) if step_names is not None else self.task_names[:n_steps]
        if len(self.step_names) != n_steps:
            raise InvalidInput(
                f"{len(self.step_names)} step names for {n_steps} rows",
                hint="Give one row per step and one column per task, accuracies in [0, 1].",
            )

    @classmethod
    def from_entries(
        cls,
        task_names: Sequence[str],
        entries: Iterable[tuple[int, int, float]],
        n_steps: int | None = None,
    ) -> AccuracyMatrix:
        """Build a matrix from ``(step, task, accuracy)`` triples; missing cells are NaN."""
        items = list(entries)
        steps = n_steps if n_steps is not None else max((s for s, _, _ in items), default=-1) + 1
        arr = np.full((steps, len(task_names)), np.nan)
        for step, task, acc in items:
            if not (0 <= step < steps and 0 <= task < len(task_names)):
                raise InvalidInput(
                    f"entry ({step}, {task}) is outside {steps} × {len(task_names)}",
                    hint="Give (step, task, accuracy) entries inside the matrix.",
                )
            arr[step, task] = acc
        return cls(arr, task_names)

    @property
    def n_steps(self) -> int:
        """Return T, the number of training steps (rows)."""
        return int(self.values.shape[0])

    def average_accuracy(self) -> float:
        """Return the mean of the last row over the tasks learned so far (NaN cells skipped)."""
        t = self.n_steps
        last = self.values[t - 1, :t]
        last = last[np.isfinite(last)]
        return float(last.mean()) if last.size else math.nan

    def bwt(self) -> float:
        """Return backward transfer, ``1/(T-1) Σ_{j<T-1} (R[T-1][j] - R[j][j])``; NaN if T < 2.

        Pairs with a NaN cell are left out of the mean. Negative values mean forgetting.
        """
        t = self.n_steps
        diffs = [
            self.values[t - 1, j] - self.values[j, j]
            for j in range(t - 1)
            if np.isfinite(self.values[t - 1, j]) and np.isfinite(self.values[j, j])
        ]
        return float(np.mean(diffs)) if diffs else math.nan

    def forgetting(self) -> dict[str, float]:
        """Return, per task ``j < T-1``, ``max_{j <= l < T-1} R[l][j] - R[T-1][j]``.

        Chaudhry et al. (2018); can be negative when the task improved later. NaN where the
        final or every earlier cell is missing.
        """
        t = self.n_steps
        out: dict[str, float] = {}
        for j in range(t - 1):
            earlier = self.values[j : t - 1, j]
            earlier = earlier[np.isfinite(earlier)]
            final = self.values[t - 1, j]
            if earlier.size and np.isfinite(final):
                out[self.task_names[j]] = float(earlier.max() - final)
            else:
                out[self.task_names[j]] = math.nan
        return out

    def mean_forgetting(self) -> float:
        """Return the mean of :meth:`forgetting` over tasks where it is defined; NaN if none."""
        vals = [v for v in self.forgetting().values() if math.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    def fwt(self, baseline: Sequence[float]) -> float:
        """Return forward transfer, ``1/(T-1) Σ_{0<j<T} (R[j-1][j] - b[j])``; NaN if undefined.

        Args:
            baseline: ``b[j]``, accuracy on task ``j`` of the model before any training (e.g. the
                base model with a fresh head), one per task.
        """
        t = self.n_steps
        if len(baseline) < self.values.shape[1]:
            raise InvalidInput(
                f"baseline has {len(baseline)} values for {self.values.shape[1]} tasks",
                hint="Give one baseline accuracy per task.",
            )
        diffs = [
            self.values[j - 1, j] - baseline[j]
            for j in range(1, t)
            if np.isfinite(self.values[j - 1, j]) and math.isfinite(baseline[j])
        ]
        return float(np.mean(diffs)) if diffs else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (NaN as None)."""
        return {
            "tasks": list(self.task_names),
            "steps": list(self.step_names),
            "values": [[_json(float(v)) for v in row] for row in self.values],
            "average_accuracy": _json(self.average_accuracy()),
            "bwt": _json(self.bwt()),
            "forgetting": {k: _json(v) for k, v in self.forgetting().items()},
            "mean_forgetting": _json(self.mean_forgetting()),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccuracyMatrix:
        """Build a matrix from :meth:`to_dict` output."""
        try:
            values = [[math.nan if v is None else float(v) for v in row] for row in d["values"]]
            return cls(values, d.get("tasks"), d.get("steps"))
        except (KeyError, TypeError) as exc:
            raise InvalidInput(
                f"not an accuracy matrix: {exc!r}",
                hint="Rewrite it from its run: python -m benchmarks.run",
            ) from exc

    def to_markdown(self) -> str:
        """Return a Markdown table (rows: after step, columns: tasks) and the summary lines."""
        header = "| after step | " + " | ".join(self.task_names) + " |"
        sep = "|---|" + "---:|" * len(self.task_names)
        rows = [
            f"| {step} | " + " | ".join(_fmt(float(v)) for v in row) + " |"
            for step, row in zip(self.step_names, self.values, strict=True)
        ]
        forgetting = self.forgetting()
        per_task = ", ".join(f"{k} {_fmt(v)}" for k, v in forgetting.items()) or "n/a"
        lines = [
            header,
            sep,
            *rows,
            "",
            f"- Average accuracy: {_fmt(self.average_accuracy())}",
            f"- BWT: {_fmt(self.bwt(), signed=True)}",
            f"- Forgetting (mean): {_fmt(self.mean_forgetting())} (per task: {per_task})",
        ]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"AccuracyMatrix(steps={self.n_steps}, tasks={self.task_names})"
