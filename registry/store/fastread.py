"""A read-only path over the embedded SQLite registry for ``list``, ``show`` and ``lineage``.

Importing SQLAlchemy costs more than everything else these commands do on a large registry, so
the CLI answers them with the standard library's :mod:`sqlite3` when it can. The reader is the
SQL only: the REF grammar (:mod:`.refs`), the row mappings (:mod:`.mappers`) and the lineage walk
(:mod:`.lineage`) are the ones :class:`registry.store.Registry` uses, so both return the same
frozen entities (it implements :class:`~.reader.RegistryReader`).

It answers only the plain cases. Anything else -- another database, a missing file, a schema
that is not :data:`SCHEMA_HEAD`, a reference that does not resolve, any sqlite3 error --
raises :class:`Fallback`, and the caller asks the full store, which owns every error message.
``ADAPTER_REGISTRY_FAST_READ=0`` turns the reader off.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..errors import InvalidInput
from ..settings import SCHEMA_HEAD, STORE_SETTING, Settings
from . import mappers
from .inputs import DELETED
from .lineage import Direction, Node, walk
from .refs import parse_ref

if TYPE_CHECKING:
    from ..artifact_store import ArtifactBackend

FAST_READ_ENV = "ADAPTER_REGISTRY_FAST_READ"
_TABLES = {"adapter": "adapter_versions", "fusion": "fusions"}
#: What a lineage node's label needs, per node kind (see :func:`mappers.node_label`).
_LABEL_SQL = {
    "adapter": "SELECT a.name, av.version, av.status FROM adapter_versions av "
    "JOIN adapters a ON a.id = av.adapter_id WHERE av.id = ?",
    "fusion": "SELECT name, version, status FROM fusions WHERE id = ?",
    "hub": "SELECT repo_id, commit_sha FROM hub_links WHERE id = ?",
    "drift": "SELECT drift FROM drift_reports WHERE id = ?",
    "dataset": "SELECT split FROM datasets WHERE id = ?",
}


class Fallback(Exception):
    """The fast reader cannot answer this; ask :class:`registry.store.Registry` instead."""


def enabled() -> bool:
    """Return False when ``ADAPTER_REGISTRY_FAST_READ`` turns the reader off."""
    return os.environ.get(FAST_READ_ENV, "1") not in ("0", "false", "no", "")


class SqliteReader:
    """Read-only access to a SQLite registry through :mod:`sqlite3` (no SQLAlchemy).

    Raises:
        Fallback: from the constructor and any method, when the full store must answer.
    """

    def __init__(self, settings: Settings) -> None:
        path = settings.sqlite_path
        if path is None or not path.is_file():
            raise Fallback("not a SQLite file")
        self.settings = settings
        try:
            self.conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=10.0)
            row = self.conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error as err:
            raise Fallback(str(err)) from err
        if row is None or row[0] != SCHEMA_HEAD:
            self.conn.close()
            raise Fallback("schema is not at head")
        try:
            sql = "SELECT value FROM registry_settings WHERE name = ?"
            store = self._one(sql, (STORE_SETTING,))
            if store is not None and store["value"] != settings.remote_store_url:
                raise Fallback("not the recorded artifact store")  # the store says so, and how
        except Fallback:
            self.conn.close()
            raise
        self._tasks: dict[int, str] | None = None

    @functools.cached_property
    def artifacts(self) -> ArtifactBackend:
        """The artifact store, opened on first use (only ``show`` needs it: ``list`` and
        ``lineage`` do not pay for importing it)."""
        from ..artifact_store import open_artifact_store

        return open_artifact_store(self.settings)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            cur = self.conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()
        except sqlite3.Error as err:
            raise Fallback(str(err)) from err

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _task_names(self) -> dict[int, str]:
        if self._tasks is None:
            self._tasks = {r["id"]: r["name"] for r in self._rows("SELECT id, name FROM tasks")}
        return self._tasks

    # ------------------------------------------------------------------ entities
    def _adapter_versions(self, rows: list[sqlite3.Row]) -> list[E.AdapterVersion]:
        if not rows:
            return []
        ids = sorted({r["adapter_id"] for r in rows})
        if len(ids) > 50:
            found = self._rows("SELECT id, name FROM adapters")
        else:
            marks = ",".join("?" * len(ids))
            found = self._rows(f"SELECT id, name FROM adapters WHERE id IN ({marks})", tuple(ids))
        names = {r["id"]: r["name"] for r in found}
        tasks = self._task_names()
        return [
            mappers.adapter_version(r, names[r["adapter_id"]], tasks[r["task_id"]]) for r in rows
        ]

    def _fusions(self, rows: list[sqlite3.Row]) -> list[E.Fusion]:
        if not rows:
            return []
        tasks = self._task_names()
        ids = [r["id"] for r in rows]
        members: dict[int, list[mappers.Member]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for m in self._rows(
            "SELECT fm.fusion_id, fm.position, av.id AS avid, a.name, av.version "
            "FROM fusion_members fm "
            "JOIN adapter_versions av ON av.id = fm.adapter_version_id "
            "JOIN adapters a ON a.id = av.adapter_id "
            f"WHERE fm.fusion_id IN ({marks})",
            tuple(ids),
        ):
            members[m["fusion_id"]].append((m["position"], m["avid"], m["name"], m["version"]))
        return [mappers.fusion(r, tasks[r["task_id"]], members[r["id"]]) for r in rows]

    def _by_id(self, kind: str, entity_id: int) -> E.Entity:
        row = self._one(f"SELECT * FROM {_TABLES[kind]} WHERE id = ?", (entity_id,))
        if row is None or row["status"] == DELETED:
            raise Fallback("no such id, or deleted")
        if kind == "adapter":
            return self._adapter_versions([row])[0]
        return self._fusions([row])[0]

    def resolve(self, ref: str) -> E.Entity:
        """Resolve a REF as :meth:`registry.store.Registry.resolve` does (plain hits only)."""
        try:
            parsed = parse_ref(ref.strip())
        except InvalidInput as err:
            raise Fallback("invalid reference") from err
        if parsed.form == "id":
            assert parsed.kind is not None and parsed.id is not None
            return self._by_id(parsed.kind, parsed.id)
        if parsed.form == "bare_id":
            hits = [
                kind
                for kind, table in _TABLES.items()
                if self._one(f"SELECT id FROM {table} WHERE id = ?", (parsed.id,)) is not None
            ]
            if len(hits) != 1:
                raise Fallback("ambiguous or missing id")
            assert parsed.id is not None
            return self._by_id(hits[0], parsed.id)
        if parsed.form == "alias":
            row = self._one(
                "SELECT al.target_kind, al.target_id FROM aliases al "
                "JOIN tasks t ON t.id = al.task_id WHERE t.name = ? AND al.alias = ?",
                (parsed.task, parsed.alias),
            )
            if row is None:
                raise Fallback("no such alias")
            return self._by_id(row["target_kind"], row["target_id"])
        for kind in ("adapter", "fusion"):
            if kind == "adapter":
                owner = self._one("SELECT id FROM adapters WHERE name = ?", (parsed.name,))
                if owner is None:
                    continue
                sql, params = "SELECT * FROM adapter_versions WHERE adapter_id = ?", [owner["id"]]
            else:
                sql, params = "SELECT * FROM fusions WHERE name = ?", [parsed.name]
            if parsed.version is not None:
                sql += " AND version = ?"
                params.append(parsed.version)
            else:
                sql += " AND status = 'active'"
            row = self._one(sql + " ORDER BY version DESC LIMIT 1", tuple(params))
            if row is None or row["status"] == DELETED:
                raise Fallback("no matching version")
            return (
                self._by_id(kind, row["id"])
                if kind == "fusion"
                else self._adapter_versions([row])[0]
            )
        raise Fallback("no match")

    def list_entities(
        self,
        task: str | None = None,
        kind: str | None = None,
        include_deprecated: bool = True,
        limit: int | None = None,
    ) -> list[E.Entity]:
        """Return adapter versions, then fusions, each oldest first (as the store does)."""
        task_id = None
        if task:
            row = self._one("SELECT id FROM tasks WHERE name = ?", (task,))
            if row is None:
                raise Fallback("no such task")
            task_id = row["id"]
        out: list[E.Entity] = []
        for what, table in _TABLES.items():
            if kind not in (None, what):
                continue
            where, params = [f"status != '{DELETED}'"], []
            if task_id is not None:
                where.append("task_id = ?")
                params.append(task_id)
            if not include_deprecated:
                where.append("status = 'active'")
            sql = f"SELECT * FROM {table} WHERE " + " AND ".join(where)
            sql += " ORDER BY id DESC"
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            rows = list(reversed(self._rows(sql, tuple(params))))
            if what == "adapter":
                out.extend(self._adapter_versions(rows))
            else:
                out.extend(self._fusions(rows))
        return out

    # ------------------------------------------------------------------ details
    def _get(self, table: str, row_id: int) -> sqlite3.Row:
        row = self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        if row is None:
            raise Fallback(f"no such row in {table}")
        return row

    def get_base_model(self, base_model_id: int) -> E.BaseModel:
        """Return a base model by id."""
        return mappers.base_model(self._get("base_models", base_model_id))

    def get_dataset(self, dataset_id: int) -> E.Dataset:
        """Return a dataset snapshot by id."""
        return mappers.dataset(self._get("datasets", dataset_id))

    def training_run(self, run_id: int) -> E.TrainingRun:
        """Return a training run by id."""
        return mappers.training_run(self._get("training_runs", run_id))

    def metrics(self, entity: E.Entity) -> list[E.Metric]:
        """Return an entity's metrics, oldest first."""
        sql = "SELECT * FROM metrics WHERE entity_kind = ? AND entity_id = ? ORDER BY id"
        return [mappers.metric(r) for r in self._rows(sql, (entity.kind, entity.id))]

    def hub_links(self, entity: E.Entity) -> list[E.HubLink]:
        """Return an entity's hub links, oldest first."""
        sql = "SELECT * FROM hub_links WHERE entity_kind = ? AND entity_id = ? ORDER BY id"
        return [mappers.hub_link(r) for r in self._rows(sql, (entity.kind, entity.id))]

    def promotion_of(self, entity: E.Entity) -> E.Promotion | None:
        """Return the promotion (or gate refusal) recorded for an entity, if any."""
        sql = "SELECT * FROM promotions WHERE entity_kind = ? AND entity_id = ?"
        row = self._one(sql, (entity.kind, entity.id))
        return None if row is None else mappers.promotion(row)

    def tags(self, entity: E.Entity) -> list[str]:
        """Return an entity's tags, sorted."""
        sql = "SELECT tag FROM tags WHERE entity_kind = ? AND entity_id = ? ORDER BY tag"
        return [r["tag"] for r in self._rows(sql, (entity.kind, entity.id))]

    def description(self, entity: E.Entity) -> str | None:
        """Return an entity's description (an adapter version's is its name's)."""
        if entity.kind == "fusion":
            row = self._one("SELECT description FROM fusions WHERE id = ?", (entity.id,))
        else:
            row = self._one(
                "SELECT a.description FROM adapters a JOIN adapter_versions av "
                "ON av.adapter_id = a.id WHERE av.id = ?",
                (entity.id,),
            )
        return None if row is None else row["description"]

    def aliases(self) -> list[E.Alias]:
        """Return every alias, ordered by task and alias name."""
        return [
            mappers.alias(r, r["task_name"], self._node_label(r["target_kind"], r["target_id"]))
            for r in self._rows(
                "SELECT al.*, t.name AS task_name FROM aliases al "
                "JOIN tasks t ON t.id = al.task_id ORDER BY t.name, al.alias"
            )
        ]

    # ------------------------------------------------------------------ lineage
    def _node_label(self, kind: str, node_id: int) -> str:
        sql = _LABEL_SQL.get(kind)
        return mappers.node_label(kind, node_id, self._one(sql, (node_id,)) if sql else None)

    def _edges_at(self, direction: Direction, node: Node) -> list[sqlite3.Row]:
        near = "child" if direction == "up" else "parent"
        sql = f"SELECT * FROM lineage WHERE {near}_kind = ? AND {near}_id = ?"
        return self._rows(sql, node)

    def lineage(self, entity: E.Entity, max_depth: int = 1000) -> dict[str, Any]:
        """Return ``{root, nodes, edges}`` exactly as the store's ``lineage`` does."""
        graph = walk((entity.kind, entity.id), self._edges_at, self._node_label, max_depth)
        return graph.to_dict()
