"""A read-only path over the embedded SQLite registry for ``list``, ``show`` and ``lineage``.

Importing SQLAlchemy costs more than everything else these commands do on a large registry, so
the CLI answers them with the standard library's :mod:`sqlite3` when it can. The reader mirrors
the read methods of :class:`registry.store.Registry` that those commands use and returns the
same frozen entities, so the CLI renders both the same way (tests compare the two outputs).

It answers only the plain cases. Anything else -- another database, a missing file, a schema
that is not :data:`SCHEMA_HEAD`, a reference that does not resolve, any sqlite3 error --
raises :class:`Fallback`, and the caller asks the full store, which owns every error message.
``ADAPTER_REGISTRY_FAST_READ=0`` turns the reader off.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import deque
from datetime import datetime
from typing import Any

from . import entities as E
from .artifact_store import open_artifact_store
from .settings import SCHEMA_HEAD, Settings

FAST_READ_ENV = "ADAPTER_REGISTRY_FAST_READ"


class Fallback(Exception):
    """The fast reader cannot answer this; ask :class:`registry.store.Registry` instead."""


def enabled() -> bool:
    """Return False when ``ADAPTER_REGISTRY_FAST_READ`` turns the reader off."""
    return os.environ.get(FAST_READ_ENV, "1") not in ("0", "false", "no", "")


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


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
        self.artifacts = open_artifact_store(settings)
        try:
            self.conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=10.0)
            row = self.conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error as err:
            raise Fallback(str(err)) from err
        if row is None or row[0] != SCHEMA_HEAD:
            self.conn.close()
            raise Fallback("schema is not at head")
        self._tasks: dict[int, str] | None = None

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
            E.AdapterVersion(
                id=r["id"],
                name=names[r["adapter_id"]],
                version=r["version"],
                task=tasks[r["task_id"]],
                task_id=r["task_id"],
                base_model_id=r["base_model_id"],
                method=r["method"],
                config=dict(_json(r["config"])),
                config_hash=r["config_hash"],
                artifact_sha256=r["artifact_sha256"],
                artifact_size=r["artifact_size"],
                trainable_params=r["trainable_params"],
                training_run_id=r["training_run_id"],
                profile_sha256=r["profile_sha256"],
                status=r["status"],
                created_at=_when(r["created_at"]),
            )
            for r in rows
        ]

    def _fusions(self, rows: list[sqlite3.Row]) -> list[E.Fusion]:
        if not rows:
            return []
        tasks = self._task_names()
        ids = [r["id"] for r in rows]
        members: dict[int, list[tuple[int, int, str, int]]] = {i: [] for i in ids}
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
        out = []
        for r in rows:
            ms = sorted(members[r["id"]])
            out.append(
                E.Fusion(
                    id=r["id"],
                    name=r["name"],
                    version=r["version"],
                    task=tasks[r["task_id"]],
                    task_id=r["task_id"],
                    base_model_id=r["base_model_id"],
                    config=dict(_json(r["config"])),
                    head=dict(_json(r["head"])),
                    members=[f"{n}@{v}" for _, _, n, v in ms],
                    member_ids=[avid for _, avid, _, _ in ms],
                    artifact_sha256=r["artifact_sha256"],
                    artifact_size=r["artifact_size"],
                    trainable_params=r["trainable_params"],
                    training_run_id=r["training_run_id"],
                    status=r["status"],
                    created_at=_when(r["created_at"]),
                )
            )
        return out

    def _by_id(self, kind: str, entity_id: int) -> E.Entity:
        table = "adapter_versions" if kind == "adapter" else "fusions"
        row = self._one(f"SELECT * FROM {table} WHERE id = ?", (entity_id,))
        if row is None:
            raise Fallback("no such id")
        if kind == "adapter":
            return self._adapter_versions([row])[0]
        return self._fusions([row])[0]

    def resolve(self, ref: str) -> E.Entity:
        """Resolve a REF as :meth:`registry.store.Registry.resolve` does (plain hits only)."""
        ref = ref.strip()
        if re.fullmatch(r"[af]\d+", ref):
            return self._by_id("adapter" if ref[0] == "a" else "fusion", int(ref[1:]))
        if ref.isdigit():
            n = int(ref)
            hits = [
                kind
                for kind, table in (("adapter", "adapter_versions"), ("fusion", "fusions"))
                if self._one(f"SELECT id FROM {table} WHERE id = ?", (n,)) is not None
            ]
            if len(hits) != 1:
                raise Fallback("ambiguous or missing id")
            return self._by_id(hits[0], n)
        if ":" in ref:
            task_name, _, alias = ref.partition(":")
            row = self._one(
                "SELECT al.target_kind, al.target_id FROM aliases al "
                "JOIN tasks t ON t.id = al.task_id WHERE t.name = ? AND al.alias = ?",
                (task_name, alias),
            )
            if row is None:
                raise Fallback("no such alias")
            return self._by_id(row["target_kind"], row["target_id"])
        name, sep, version_text = ref.partition("@")
        if sep and not version_text.isdigit():
            raise Fallback("invalid reference")
        adapter = self._one("SELECT id FROM adapters WHERE name = ?", (name,))
        if adapter is not None:
            sql = "SELECT * FROM adapter_versions WHERE adapter_id = ?"
            params: tuple[Any, ...] = (adapter["id"],)
            if sep:
                sql, params = sql + " AND version = ?", (*params, int(version_text))
            else:
                sql += " AND status = 'active'"
            row = self._one(sql + " ORDER BY version DESC LIMIT 1", params)
            if row is None:
                raise Fallback("no matching version")
            return self._adapter_versions([row])[0]
        sql, params = "SELECT * FROM fusions WHERE name = ?", (name,)
        if sep:
            sql, params = sql + " AND version = ?", (*params, int(version_text))
        else:
            sql += " AND status = 'active'"
        row = self._one(sql + " ORDER BY version DESC LIMIT 1", params)
        if row is None:
            raise Fallback("no match")
        return self._fusions([row])[0]

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
        for what, table in (("adapter", "adapter_versions"), ("fusion", "fusions")):
            if kind not in (None, what):
                continue
            where, params = [], []
            if task_id is not None:
                where.append("task_id = ?")
                params.append(task_id)
            if not include_deprecated:
                where.append("status = 'active'")
            sql = f"SELECT * FROM {table}"
            if where:
                sql += " WHERE " + " AND ".join(where)
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
    def get_base_model(self, base_model_id: int) -> E.BaseModel:
        """Return a base model by id."""
        r = self._one("SELECT * FROM base_models WHERE id = ?", (base_model_id,))
        if r is None:
            raise Fallback("no such base model")
        return E.BaseModel(
            id=r["id"],
            name=r["name"],
            revision=r["revision"],
            architecture=r["architecture"],
            hidden_size=r["hidden_size"],
            num_layers=r["num_layers"],
            created_at=_when(r["created_at"]),
        )

    def training_run(self, run_id: int) -> E.TrainingRun:
        """Return a training run by id."""
        r = self._one("SELECT * FROM training_runs WHERE id = ?", (run_id,))
        if r is None:
            raise Fallback("no such run")
        return E.TrainingRun(
            id=r["id"],
            kind=r["kind"],
            hyperparams=dict(_json(r["hyperparams"])),
            seed=r["seed"],
            library_versions=dict(_json(r["library_versions"])),
            wall_time_s=r["wall_time_s"],
            tokens_per_s=r["tokens_per_s"],
            device=r["device"],
            created_at=_when(r["created_at"]),
        )

    def metrics(self, entity: E.Entity) -> list[E.Metric]:
        """Return an entity's metrics, oldest first."""
        return [
            E.Metric(
                id=r["id"],
                entity_kind=r["entity_kind"],
                entity_id=r["entity_id"],
                dataset_id=r["dataset_id"],
                split=r["split"],
                name=r["name"],
                value=r["value"],
                step=r["step"],
                created_at=_when(r["created_at"]),
            )
            for r in self._rows(
                "SELECT * FROM metrics WHERE entity_kind = ? AND entity_id = ? ORDER BY id",
                (entity.kind, entity.id),
            )
        ]

    def hub_links(self, entity: E.Entity) -> list[E.HubLink]:
        """Return an entity's hub links, oldest first."""
        return [
            E.HubLink(
                id=r["id"],
                entity_kind=r["entity_kind"],
                entity_id=r["entity_id"],
                repo_id=r["repo_id"],
                commit_sha=r["commit_sha"],
                revision=r["revision"],
                direction=r["direction"],
                artifact_sha256=r["artifact_sha256"],
                created_at=_when(r["created_at"]),
            )
            for r in self._rows(
                "SELECT * FROM hub_links WHERE entity_kind = ? AND entity_id = ? ORDER BY id",
                (entity.kind, entity.id),
            )
        ]

    def aliases(self) -> list[E.Alias]:
        """Return every alias, ordered by task and alias name."""
        return [
            E.Alias(
                id=r["id"],
                task=r["task_name"],
                alias=r["alias"],
                target_kind=r["target_kind"],
                target_id=r["target_id"],
                target_ref=self._node_label(r["target_kind"], r["target_id"]),
                updated_at=_when(r["updated_at"]),
            )
            for r in self._rows(
                "SELECT al.*, t.name AS task_name FROM aliases al "
                "JOIN tasks t ON t.id = al.task_id ORDER BY t.name, al.alias"
            )
        ]

    # ------------------------------------------------------------------ lineage
    def _node_label(self, kind: str, node_id: int) -> str:
        if kind == "adapter":
            r = self._one(
                "SELECT a.name, av.version FROM adapter_versions av "
                "JOIN adapters a ON a.id = av.adapter_id WHERE av.id = ?",
                (node_id,),
            )
            return f"{r[0]}@{r[1]}" if r else f"a{node_id} (missing)"
        if kind == "fusion":
            r = self._one("SELECT name, version FROM fusions WHERE id = ?", (node_id,))
            return f"{r[0]}@{r[1]}" if r else f"f{node_id} (missing)"
        if kind == "hub":
            r = self._one("SELECT repo_id, commit_sha FROM hub_links WHERE id = ?", (node_id,))
            return f"hub:{r[0]}@{r[1][:10]}" if r else f"hub{node_id} (missing)"
        if kind == "drift":
            r = self._one("SELECT drift FROM drift_reports WHERE id = ?", (node_id,))
            if r is None:
                return f"drift#{node_id} (missing)"
            return f"drift#{node_id} ({'drift' if r[0] else 'no drift'})"
        if kind == "dataset":
            r = self._one("SELECT split FROM datasets WHERE id = ?", (node_id,))
            return f"dataset#{node_id} ({r[0]})" if r else f"dataset#{node_id} (missing)"
        return f"{kind}:{node_id}"

    def lineage(self, entity: E.Entity, max_depth: int = 1000) -> dict[str, Any]:
        """Return ``{root, nodes, edges}`` exactly as the store's ``lineage`` does."""
        root = (entity.kind, entity.id)
        edges: dict[int, sqlite3.Row] = {}
        for near, far in (("child", "parent"), ("parent", "child")):
            seen = {root}
            queue: deque[tuple[tuple[str, int], int]] = deque([(root, 0)])
            sql = f"SELECT * FROM lineage WHERE {near}_kind = ? AND {near}_id = ?"
            while queue:
                (kind, nid), depth = queue.popleft()
                if depth >= max_depth:
                    continue
                for edge in self._rows(sql, (kind, nid)):
                    edges[edge["id"]] = edge
                    nxt = (edge[f"{far}_kind"], edge[f"{far}_id"])
                    if nxt not in seen:
                        seen.add(nxt)
                        queue.append((nxt, depth + 1))
        keys = {root}
        for e in edges.values():
            keys.add((e["parent_kind"], e["parent_id"]))
            keys.add((e["child_kind"], e["child_id"]))
        return {
            "root": f"{root[0]}:{root[1]}",
            "nodes": [
                {"key": f"{k}:{i}", "kind": k, "id": i, "label": self._node_label(k, i)}
                for k, i in sorted(keys)
            ],
            "edges": [
                {
                    "parent": f"{e['parent_kind']}:{e['parent_id']}",
                    "child": f"{e['child_kind']}:{e['child_id']}",
                    "relation": e["relation"],
                }
                for e in sorted(edges.values(), key=lambda e: e["id"])
            ],
        }
