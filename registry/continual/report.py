"""Step 8 (any time): each task's accuracy matrix, its steps and its lineage graph.

Each step carries the metric its gate compared. A candidate the gate refused since the last
promotion is a row of its own (``refused``), drawn under the matrix and never part of the
average accuracy, BWT or forgetting, which are the production models'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import entities as E
from ..evaluate import AccuracyMatrix
from ..store import Registry
from ..views import lineage_mermaid
from .common import domain_name, matrix_datasets, production_entity
from .evaluate import recorded_scores
from .promote import Step, production_history, refused_candidates


@dataclass
class TaskReport:
    """The continual history of one task: accuracy matrix, its steps and the lineage graph."""

    task: str
    matrix: AccuracyMatrix | None
    steps: list[str]
    production: str | None
    mermaid: str
    notes: list[str] = field(default_factory=list)
    #: One per matrix row: step, ref, the gate's metric and reason (None: not gated).
    gates: list[dict[str, Any]] = field(default_factory=list)
    #: Candidates the gate refused since the last promotion: step, ref, gate, and their
    #: recorded accuracy per matrix column (``values``, None where not measured).
    refused: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "task": self.task,
            "production": self.production,
            "steps": self.steps,
            "gates": self.gates,
            "matrix": self.matrix.to_dict() if self.matrix else None,
            "refused": self.refused,
            "lineage_mermaid": self.mermaid,
            "notes": self.notes,
        }

    def refused_markdown(self) -> str:
        """Return the refused candidates as a Markdown table over the matrix's columns."""
        if not self.refused or self.matrix is None:
            return ""
        lines = [
            "| refused by the gate | " + " | ".join(self.matrix.task_names) + " |",
            "|---|" + "---:|" * len(self.matrix.task_names),
        ]
        for r in self.refused:
            cells = ["n/a" if v is None else f"{v:.3f}" for v in r["values"]]
            lines.append(f"| {r['step']}: {r['ref']} ({r['gate_metric']}) | " + " | ".join(cells))
            lines[-1] += " |"
        return "\n".join(lines) + "\n"


def _gate(s: Step) -> dict[str, Any]:
    return {
        "step": s.step,
        "ref": s.entity.ref,
        "gate_metric": s.gate_metric,
        "gate": s.gate_reason,
    }


def _matrix_rows(
    history: list[Step], datasets: dict[int, E.Dataset], notes: list[str]
) -> tuple[list[Step], list[int]]:
    """Return the rows (steps) and column ids: the split each step learned, in step order,
    then the splits no step learned."""
    col_ids: list[int] = []
    rows: list[Step] = []
    for s in history:
        if s.dataset_id is None or s.dataset_id in col_ids:
            notes.append(f"step {s.step} ({s.entity.ref}) re-learned a known split: left out")
            continue
        col_ids.append(s.dataset_id)
        rows.append(s)
    col_ids += [i for i in datasets if i not in col_ids]
    return rows, col_ids


def _row(registry: Registry, s: Step, col_ids: list[int]) -> list[float | None]:
    """Return the recorded accuracy of a step's model on each column (None: not measured)."""
    scores = recorded_scores(registry, s.entity)
    return [scores.get(ds_id) for ds_id in col_ids]


def _matrix(
    registry: Registry, rows: list[Step], col_ids: list[int], datasets: dict[int, E.Dataset]
) -> AccuracyMatrix:
    import numpy as np

    names: list[str] = []
    for i in col_ids:
        n = domain_name(datasets[i].source) if i in datasets else f"dataset#{i}"
        names.append(f"{n}#{i}" if n in names else n)
    values = [[np.nan if v is None else v for v in _row(registry, s, col_ids)] for s in rows]
    return AccuracyMatrix(
        np.array(values, dtype=np.float64).reshape(len(rows), len(col_ids)),
        names,
        [f"{s.step}: {s.entity.ref}" for s in rows],
    )


def _refused(
    registry: Registry, task: str, col_ids: list[int], drawn: bool, notes: list[str]
) -> list[dict[str, Any]]:
    """Return the candidates refused since the last promotion as rows over ``col_ids`` (with a
    note); without a matrix to draw them under (``drawn`` False), only notes."""
    refused = [
        {**_gate(c), "values": _row(registry, c, col_ids)}
        for c in refused_candidates(registry, task)
    ]
    if not drawn:
        notes += [f"step {r['step']}: {r['ref']} refused by the gate: {r['gate']}" for r in refused]
        return []
    if refused:
        notes.append(
            f"{len(refused)} candidate(s) refused by the gate since the last promotion: "
            "drawn under the matrix, not counted in its averages"
        )
    return refused


def build_report(registry: Registry, task: str | None = None) -> dict[str, TaskReport]:
    """Build each task's accuracy matrix (rows: production models, columns: validation splits).

    ``R[i][j]`` is the recorded accuracy of the i-th production model on the j-th split; a cell
    nobody measured is NaN (``report`` never trains or evaluates).
    """
    tasks = [registry.get_task(task)] if task else registry.list_tasks()
    out: dict[str, TaskReport] = {}
    for t in tasks:
        notes: list[str] = []
        prod = production_entity(registry, t.name)
        latest = registry.list_entities(task=t.name)
        root = prod or (latest[-1] if latest else None)
        mermaid = lineage_mermaid(registry.lineage(root)) if root else ""
        datasets = {d.id: d for d in matrix_datasets(registry, t.id)}
        rows, col_ids = _matrix_rows(production_history(registry, t.name), datasets, notes)
        matrix = None
        if not rows and prod is not None:
            # Nothing promoted by `update` yet: show what is known of the current production.
            rows = [Step(0, prod, None)]
            notes.append("no update has promoted a model yet: one row, the current production")
        if rows:
            matrix = _matrix(registry, rows, col_ids, datasets)
        elif latest:
            refs = ", ".join(e.ref for e in latest[-3:])
            notes.append(
                f"{len(latest)} version(s) registered (latest: {refs}) but none is production: "
                f"set one with: adapter-registry alias {t.name} production REF"
            )
        else:
            notes.append("nothing registered for this task yet")
        refused = _refused(registry, t.name, col_ids, matrix is not None, notes)
        out[t.name] = TaskReport(
            t.name,
            matrix,
            [f"{s.step}: {s.entity.ref}" for s in rows],
            prod.ref if prod else None,
            mermaid,
            notes,
            [_gate(s) for s in rows],
            refused,
        )
    return out


def routed_matrix(matrix: AccuracyMatrix) -> AccuracyMatrix:
    """Return the matrix of routing each split to the model that was production when it was learned.

    ``R'[i][j] = R[j][j]`` for ``j ≤ i`` (that model never changes) and ``R[i][j]`` otherwise.
    """
    values = matrix.values.copy()
    for i in range(values.shape[0]):
        for j in range(min(i + 1, values.shape[1])):
            values[i, j] = matrix.values[j, j]
    return type(matrix)(values, matrix.task_names, matrix.step_names)
