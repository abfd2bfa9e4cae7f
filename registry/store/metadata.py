"""The metadata workflow: tags, descriptions, alias removal and history, metric look-ups, delete.

A deleted version keeps its row (status ``deleted``) so lineage still shows where things came
from; nothing resolves to it, ``list`` hides it, and its files are no longer referenced, so
``gc`` removes them. Only a version that nothing references may be deleted: no alias points at
it, no fusion has it as a member, and nothing was built from it (lineage children).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import exc, or_, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..errors import InvalidInput, NotFound
from ..orm import (
    SqlAdapter,
    SqlAdapterVersion,
    SqlAlias,
    SqlAliasEvent,
    SqlDataset,
    SqlFusion,
    SqlFusionMember,
    SqlLineage,
    SqlMetric,
    SqlTag,
    SqlTask,
)
from .alias_events import record_alias_event
from .history import History
from .inputs import DELETED
from .lookups import _metric, _node_label, _task_row

TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Who an alias change is recorded as: this variable when set, else the login name.
ACTOR_ENV = "ADAPTER_REGISTRY_USER"
#: The longest description ``describe`` accepts (characters).
MAX_DESCRIPTION = 10_000


def check_tags(tags: Sequence[str]) -> list[str]:
    """Return the tags (deduplicated, in order) if each is a valid tag, else raise."""
    if not tags:
        raise InvalidInput("Give at least one tag.", hint="e.g. adapter-registry tag REF baseline")
    for tag in tags:
        if not TAG_RE.match(tag):
            raise InvalidInput(
                f"Invalid tag {tag!r}: use 1-100 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit.",
                hint="e.g. baseline, reviewed, q4-release",
            )
    return list(dict.fromkeys(tags))


class Metadata(History):
    """Tags, descriptions, alias deletion and history, metrics of many versions, delete."""

    # ------------------------------------------------------------------ tags
    def tag(self, ref: str, tags: Sequence[str]) -> list[str]:
        """Add tags to an adapter version or fusion (idempotent); return all its tags."""
        wanted = check_tags(tags)
        entity = self.resolve(ref)

        def fn(s: Session) -> None:
            have = set(_tags(s, entity.kind, entity.id))
            for tag in wanted:
                if tag not in have:
                    s.add(SqlTag(entity_kind=entity.kind, entity_id=entity.id, tag=tag))

        self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))
        return self.tags(entity)

    def untag(self, ref: str, tags: Sequence[str]) -> list[str]:
        """Remove tags from a version; return its remaining tags. A tag it lacks is refused."""
        wanted = check_tags(tags)
        entity = self.resolve(ref)

        def fn(s: Session) -> None:
            rows = {
                r.tag: r
                for r in s.scalars(
                    select(SqlTag).where(
                        SqlTag.entity_kind == entity.kind, SqlTag.entity_id == entity.id
                    )
                )
            }
            missing = [t for t in wanted if t not in rows]
            if missing:
                have = ", ".join(sorted(rows)) or "none"
                raise NotFound(
                    f"{entity.ref} has no tag {', '.join(missing)} (its tags: {have}); nothing "
                    "was removed.",
                    hint=f"Run: adapter-registry show {entity.ref}",
                )
            for tag in wanted:
                s.delete(rows[tag])

        self._write(fn)
        return self.tags(entity)

    def tags(self, entity: E.Entity) -> list[str]:
        """Return an entity's tags, sorted."""
        return self._read(lambda s: _tags(s, entity.kind, entity.id))

    def tags_of(self, entities: Iterable[E.Entity]) -> dict[tuple[str, int], list[str]]:
        """Return the tags of many entities in one query: ``(kind, id)`` → sorted tags."""
        keys = {(e.kind, e.id) for e in entities}

        def fn(s: Session) -> dict[tuple[str, int], list[str]]:
            out: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
            for kind, ids in _by_kind(keys).items():
                q = select(SqlTag.entity_id, SqlTag.tag).where(
                    SqlTag.entity_kind == kind, SqlTag.entity_id.in_(ids)
                )
                for eid, tag in s.execute(q.order_by(SqlTag.tag)):
                    out[(kind, eid)].append(tag)
            return out

        return self._read(fn) if keys else {}

    # ------------------------------------------------------------------ descriptions
    def describe(self, ref: str, text: str) -> E.Entity:
        """Set the description: of the adapter's name (all its versions), or of a fusion version.

        An empty ``text`` clears it.
        """
        text = text.strip()
        if len(text) > MAX_DESCRIPTION:
            raise InvalidInput(
                f"The description has {len(text)} characters; at most {MAX_DESCRIPTION}.",
                hint="Shorten it; put long documents in the data or model repository.",
            )
        entity = self.resolve(ref)

        def fn(s: Session) -> None:
            row: SqlAdapter | SqlFusion | None
            if entity.kind == "adapter":
                version = s.get(SqlAdapterVersion, entity.id)
                assert version is not None
                row = s.get(SqlAdapter, version.adapter_id)
            else:
                row = s.get(SqlFusion, entity.id)
            assert row is not None
            row.description = text or None

        self._write(fn)
        return entity

    def description(self, entity: E.Entity) -> str | None:
        """Return an entity's description (an adapter version's is its name's)."""

        def fn(s: Session) -> str | None:
            if entity.kind == "fusion":
                return s.scalar(select(SqlFusion.description).where(SqlFusion.id == entity.id))
            return s.scalar(
                select(SqlAdapter.description)
                .join(SqlAdapterVersion, SqlAdapterVersion.adapter_id == SqlAdapter.id)
                .where(SqlAdapterVersion.id == entity.id)
            )

        return self._read(fn)

    # ------------------------------------------------------------------ aliases
    def delete_alias(self, task: str, alias: str) -> E.Alias:
        """Remove ``task:alias`` (recorded in its history); return what it pointed at."""
        found = [a for a in self.aliases(task) if a.alias == alias]
        if not found:
            raise NotFound(
                f"Task {task!r} has no alias {alias!r}; nothing was removed.",
                hint=f"Run: adapter-registry alias --list {task}",
            )

        def fn(s: Session) -> None:
            task_row = _task_row(s, task)
            row = s.scalar(
                select(SqlAlias).where(SqlAlias.task_id == task_row.id, SqlAlias.alias == alias)
            )
            if row is None:  # removed meanwhile by someone else: the outcome stands
                return
            old = (row.target_kind, row.target_id)
            s.delete(row)
            record_alias_event(s, task_row.id, alias, old, None)

        self._write(fn)
        return found[0]

    def alias_history(
        self, task: str | None = None, alias: str | None = None
    ) -> list[E.AliasEvent]:
        """Return alias changes, oldest first, optionally of one task (and one alias)."""

        def fn(s: Session) -> list[E.AliasEvent]:
            q = select(SqlAliasEvent, SqlTask.name).join(
                SqlTask, SqlTask.id == SqlAliasEvent.task_id
            )
            if task is not None:
                q = q.where(SqlAliasEvent.task_id == _task_row(s, task).id)
            if alias is not None:
                q = q.where(SqlAliasEvent.alias == alias)
            out = []
            for row, task_name in s.execute(q.order_by(SqlAliasEvent.id)):
                old = _label_or_none(s, row.old_kind, row.old_id)
                new = _label_or_none(s, row.new_kind, row.new_id)
                out.append(
                    E.AliasEvent(
                        id=row.id,
                        task=task_name,
                        alias=row.alias,
                        old_ref=old,
                        new_ref=new,
                        actor=row.actor,
                        created_at=row.created_at,
                    )
                )
            return out

        return self._read(fn)

    # ------------------------------------------------------------------ metrics of many
    def metrics_of(
        self, entities: Iterable[E.Entity]
    ) -> dict[tuple[str, int], list[tuple[E.Metric, str | None]]]:
        """Return every metric of many entities in one query, with each row's data source.

        ``(kind, id)`` → ``[(metric, dataset source or None)]``, oldest first.
        """
        keys = {(e.kind, e.id) for e in entities}

        def fn(s: Session) -> dict[tuple[str, int], list[tuple[E.Metric, str | None]]]:
            out: dict[tuple[str, int], list[tuple[E.Metric, str | None]]] = {k: [] for k in keys}
            conds = [
                (SqlMetric.entity_kind == kind) & SqlMetric.entity_id.in_(ids)
                for kind, ids in _by_kind(keys).items()
            ]
            q = (
                select(SqlMetric, SqlDataset.source)
                .outerjoin(SqlDataset, SqlDataset.id == SqlMetric.dataset_id)
                .where(or_(*conds))
                .order_by(SqlMetric.id)
            )
            for row, source in s.execute(q):
                out[(row.entity_kind, row.entity_id)].append((_metric(row), source))
            return out

        return self._read(fn) if keys else {}

    # ------------------------------------------------------------------ delete
    def references_to(self, entity: E.Entity) -> list[str]:
        """Return what refers to an entity (aliases, fusions using it, versions built from it)."""
        return self._read(lambda s: _references(s, entity))

    def delete(self, ref: str) -> E.Entity:
        """Delete a version nothing references: its row stays as a tombstone for lineage.

        Its files are left to ``gc``. Refused (nothing changed) while an alias points at it, a
        fusion has it as a member, or anything was built from it.
        """
        entity = self.resolve(ref)

        def fn(s: Session) -> None:
            refs = _references(s, entity)
            if refs:
                raise InvalidInput(
                    f"{entity.ref} cannot be deleted: " + "; ".join(refs) + ". Nothing was "
                    "deleted.",
                    hint=f"Remove those first, or keep it and run: adapter-registry deprecate "
                    f"{entity.ref}",
                )
            row: Any = (
                s.get(SqlAdapterVersion, entity.id)
                if entity.kind == "adapter"
                else s.get(SqlFusion, entity.id)
            )
            row.status = DELETED

        self._write(fn)
        return self.get_entity(entity.kind, entity.id)


def _label_or_none(s: Session, kind: str | None, node_id: int | None) -> str | None:
    return _node_label(s, kind, node_id) if kind and node_id is not None else None


def _by_kind(keys: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for kind, eid in keys:
        out.setdefault(kind, []).append(eid)
    return out


def _tags(s: Session, kind: str, entity_id: int) -> list[str]:
    q = select(SqlTag.tag).where(SqlTag.entity_kind == kind, SqlTag.entity_id == entity_id)
    return list(s.scalars(q.order_by(SqlTag.tag)))


def _references(s: Session, entity: E.Entity) -> list[str]:
    """Return why ``entity`` may not be deleted (empty: nothing refers to it)."""
    out: list[str] = []
    for row, task_name in s.execute(
        select(SqlAlias, SqlTask.name)
        .join(SqlTask, SqlTask.id == SqlAlias.task_id)
        .where(SqlAlias.target_kind == entity.kind, SqlAlias.target_id == entity.id)
    ):
        out.append(f"alias {task_name}:{row.alias} points at it")
    named: set[str] = set()  # fusions already listed as using it as a member
    if entity.kind == "adapter":
        q = (
            select(SqlFusion.id)
            .join(SqlFusionMember, SqlFusionMember.fusion_id == SqlFusion.id)
            .where(SqlFusionMember.adapter_version_id == entity.id, SqlFusion.status != DELETED)
        )
        named = {_node_label(s, "fusion", fid) for fid in s.scalars(q)}
        if named:
            out.append("member of " + ", ".join(sorted(named)))
    children: dict[str, None] = {}
    for edge in s.scalars(
        select(SqlLineage)
        .where(SqlLineage.parent_kind == entity.kind, SqlLineage.parent_id == entity.id)
        .order_by(SqlLineage.id)
    ):
        label = _node_label(s, edge.child_kind, edge.child_id)
        if label not in named and not label.endswith("(deleted)"):
            children[f"{label} ({edge.relation})"] = None
    if children:
        out.append("built from it: " + ", ".join(children))
    return out
