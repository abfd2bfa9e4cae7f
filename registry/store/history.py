"""What happens to versions after they exist: aliases, promotions, metrics, lineage, drift, Hub."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..errors import (
    InvalidInput,
    NotFound,
)
from ..orm import (
    SqlAlias,
    SqlDriftReport,
    SqlHubLink,
    SqlLineage,
    SqlMetric,
    SqlPromotion,
    SqlTask,
    utcnow,
)
from . import mappers
from .alias_events import record_alias_event
from .catalog import Catalog, _drift, _edge, _hub, _metric, _node_label, _promotion, _task_row
from .inputs import (
    ALIAS_RE,
    MetricIn,
    validate_name,
)
from .lineage import LineageGraph, walk
from .writes import _add_edge, _add_metrics, _check_edge, _require_node

T = TypeVar("T")


class History(Catalog):
    """Aliases, promotions, metrics, lineage edges, drift reports and Hub links."""

    # ------------------------------------------------------------------ aliases
    def set_alias(self, task: str, alias: str, ref: str) -> E.Alias:
        """Point ``task:alias`` at an adapter version or fusion of that task."""
        validate_name(task, "task name")
        if not ALIAS_RE.match(alias):
            raise InvalidInput(
                f"Invalid alias {alias!r}: use letters, digits, '_' or '-', "
                "starting with a letter.",
                hint="e.g. production, staging",
            )
        target = self.resolve(ref)

        def fn(s: Session) -> int:
            task_row = _task_row(s, task)
            if target.task_id != task_row.id:
                raise InvalidInput(
                    f"{target.ref} belongs to task {target.task!r}, not {task!r}: an alias "
                    "points only at its own task's adapters and fusions.",
                    hint=f"Run: adapter-registry list --task {task}",
                )
            if target.status != "active":
                raise InvalidInput(
                    f"{target.ref} is {target.status}; an alias cannot point at it.",
                    hint=f"Pick an active version: adapter-registry list --task {task}",
                )
            row = s.scalar(
                select(SqlAlias).where(SqlAlias.task_id == task_row.id, SqlAlias.alias == alias)
            )
            old = None if row is None else (row.target_kind, row.target_id)
            if row is None:
                row = SqlAlias(task_id=task_row.id, alias=alias, target_kind="", target_id=0)
                s.add(row)
            record_alias_event(s, task_row.id, alias, old, (target.kind, target.id))
            row.target_kind = target.kind
            row.target_id = target.id
            row.updated_at = utcnow()
            s.flush()
            return row.id

        alias_id = self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))
        return next(a for a in self.aliases(task) if a.id == alias_id)

    def aliases(self, task: str | None = None) -> list[E.Alias]:
        """Return aliases, optionally of one task."""

        def fn(s: Session) -> list[E.Alias]:
            q = select(SqlAlias, SqlTask.name).join(SqlTask, SqlTask.id == SqlAlias.task_id)
            if task is not None:
                q = q.where(SqlTask.name == task)
            out = []
            for row, task_name in s.execute(q.order_by(SqlTask.name, SqlAlias.alias)):
                target = _node_label(s, row.target_kind, row.target_id)
                out.append(mappers.alias(mappers.columns(row), task_name, target))
            return out

        return self._read(fn)

    # ------------------------------------------------------------------ promotions
    def record_promotion(
        self,
        entity: E.Entity,
        step: int,
        dataset_id: int | None,
        alias: str,
        *,
        gate_metric: str | None = None,
        gate_reason: str | None = None,
        outcome: str = "promoted",
    ) -> E.Promotion:
        """Record that ``update`` promoted ``entity`` at ``step`` (once per entity), with the
        gate's metric and reason; ``outcome="refused"`` records a candidate the gate kept out.

        A promotion is never rewritten; a refused row becomes the promotion when the same
        entity (a reused fusion) is promoted later, and is refreshed when it is refused again.
        """

        def fn(s: Session) -> int:
            row = s.scalar(
                select(SqlPromotion).where(
                    SqlPromotion.entity_kind == entity.kind, SqlPromotion.entity_id == entity.id
                )
            )
            if row is None:
                row = SqlPromotion(
                    task_id=entity.task_id, entity_kind=entity.kind, entity_id=entity.id
                )
                s.add(row)
            elif row.outcome == "promoted":
                return row.id
            row.step, row.dataset_id, row.alias, row.outcome = step, dataset_id, alias, outcome
            row.gate_metric, row.gate_reason = gate_metric, gate_reason
            s.flush()
            return row.id

        promo_id = self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))
        return next(p for p in self.promotions(entity.task_id) if p.id == promo_id)

    def promotions(self, task_id: int) -> list[E.Promotion]:
        """Return a task's promotions and gate refusals in step order (see ``outcome``)."""

        def fn(s: Session) -> list[E.Promotion]:
            q = (
                select(SqlPromotion)
                .where(SqlPromotion.task_id == task_id)
                .order_by(SqlPromotion.step, SqlPromotion.created_at, SqlPromotion.id)
            )
            return [_promotion(r) for r in s.scalars(q)]

        return self._read(fn)

    def promotion_of(self, entity: E.Entity) -> E.Promotion | None:
        """Return the promotion (or gate refusal) recorded for an entity, if any."""

        def fn(s: Session) -> E.Promotion | None:
            row = s.scalar(
                select(SqlPromotion).where(
                    SqlPromotion.entity_kind == entity.kind, SqlPromotion.entity_id == entity.id
                )
            )
            return None if row is None else _promotion(row)

        return self._read(fn)

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, entity: E.Entity, metrics: Iterable[MetricIn]) -> None:
        """Record metrics of an adapter version or fusion."""
        items = list(metrics)
        self._write(lambda s: _add_metrics(s, entity.kind, entity.id, items))

    def metrics(self, entity: E.Entity) -> list[E.Metric]:
        """Return an entity's metrics, oldest first."""

        def fn(s: Session) -> list[E.Metric]:
            q = (
                select(SqlMetric)
                .where(SqlMetric.entity_kind == entity.kind, SqlMetric.entity_id == entity.id)
                .order_by(SqlMetric.id)
            )
            return [_metric(r) for r in s.scalars(q)]

        return self._read(fn)

    # ------------------------------------------------------------------ lineage
    def add_edge(
        self, parent_kind: str, parent_id: int, child_kind: str, child_id: int, relation: str
    ) -> None:
        """Add a lineage edge (idempotent)."""
        _check_edge(parent_kind, relation)

        def fn(s: Session) -> None:
            _require_node(s, parent_kind, parent_id)
            _require_node(s, child_kind, child_id)
            _add_edge(s, parent_kind, parent_id, child_kind, child_id, relation)

        self._write(fn)

    def lineage(self, entity: E.Entity, max_depth: int = 1000) -> dict[str, Any]:
        """Return the ancestors and descendants of an entity as ``{root, nodes, edges}``.

        Node keys are ``kind:id``; each node has a human label (``name@version`` etc.).
        """

        return self.lineage_graph(entity, max_depth).to_dict()

    def lineage_graph(self, entity: E.Entity, max_depth: int = 1000) -> LineageGraph:
        """Return the ancestors and descendants of an entity as a :class:`LineageGraph`."""

        def fn(s: Session) -> LineageGraph:
            def edges_at(direction: str, node: tuple[str, int]) -> list[dict[str, Any]]:
                near_kind, near_id = (
                    (SqlLineage.child_kind, SqlLineage.child_id)
                    if direction == "up"
                    else (SqlLineage.parent_kind, SqlLineage.parent_id)
                )
                q = select(SqlLineage).where(near_kind == node[0], near_id == node[1])
                return [mappers.columns(e) for e in s.scalars(q)]

            return walk(
                (entity.kind, entity.id),
                edges_at,
                lambda kind, nid: _node_label(s, kind, nid),
                max_depth,
            )

        return self._read(fn)

    def edges_of(self, kind: str, entity_id: int) -> list[E.LineageEdge]:
        """Return the edges whose child is this node."""

        def fn(s: Session) -> list[E.LineageEdge]:
            q = select(SqlLineage).where(
                SqlLineage.child_kind == kind, SqlLineage.child_id == entity_id
            )
            return [_edge(e) for e in s.scalars(q.order_by(SqlLineage.id))]

        return self._read(fn)

    # ------------------------------------------------------------------ drift & hub
    def record_drift_report(
        self,
        *,
        task: str,
        reference_adapter_version_id: int | None,
        new_dataset_id: int | None,
        alpha: float,
        tests: list[dict[str, Any]],
        drift: bool,
    ) -> E.DriftReport:
        """Record the outcome of a drift check."""

        def fn(s: Session) -> E.DriftReport:
            row = SqlDriftReport(
                task_id=_task_row(s, task).id,
                reference_adapter_version_id=reference_adapter_version_id,
                new_dataset_id=new_dataset_id,
                alpha=alpha,
                tests=tests,
                drift=drift,
            )
            s.add(row)
            s.flush()
            return _drift(row)

        return self._write(fn)

    def get_drift_report(self, report_id: int) -> E.DriftReport:
        """Return a drift report by id."""

        def fn(s: Session) -> E.DriftReport:
            row = s.get(SqlDriftReport, report_id)
            if row is None:
                raise NotFound(
                    f"No drift report with id {report_id}.",
                    hint="Run: adapter-registry drift TASK --data SPEC",
                )
            return _drift(row)

        return self._read(fn)

    def drift_reports(self, task: str | None = None) -> list[E.DriftReport]:
        """Return drift reports, oldest first."""

        def fn(s: Session) -> list[E.DriftReport]:
            q = select(SqlDriftReport).order_by(SqlDriftReport.id)
            if task is not None:
                q = q.where(SqlDriftReport.task_id == _task_row(s, task).id)
            return [_drift(r) for r in s.scalars(q)]

        return self._read(fn)

    def record_hub_link(
        self,
        entity: E.Entity,
        *,
        repo_id: str,
        commit_sha: str,
        revision: str | None,
        direction: str,
    ) -> E.HubLink:
        """Record a push or pull of an entity at a Hub commit."""
        if direction not in ("push", "pull"):
            raise InvalidInput(
                f"direction must be push or pull, not {direction!r}", hint="Use push or pull."
            )

        def fn(s: Session) -> E.HubLink:
            row = SqlHubLink(
                entity_kind=entity.kind,
                entity_id=entity.id,
                repo_id=repo_id,
                commit_sha=commit_sha,
                revision=revision,
                direction=direction,
                artifact_sha256=entity.artifact_sha256,
            )
            s.add(row)
            s.flush()
            return _hub(row)

        return self._write(fn)

    def hub_links(
        self, entity: E.Entity | None = None, *, repo_id: str | None = None
    ) -> list[E.HubLink]:
        """Return hub links of an entity or of a repo, oldest first."""

        def fn(s: Session) -> list[E.HubLink]:
            q = select(SqlHubLink).order_by(SqlHubLink.id)
            if entity is not None:
                q = q.where(
                    SqlHubLink.entity_kind == entity.kind, SqlHubLink.entity_id == entity.id
                )
            if repo_id is not None:
                q = q.where(SqlHubLink.repo_id == repo_id)
            return [_hub(r) for r in s.scalars(q)]

        return self._read(fn)
