"""Importing what :func:`registry.hub.pull` staged: the checks before any write (names, labels,
the adapter loads on its base), then one transaction that registers the version (and a fusion's
pulled members), its Hub link and the imported lineage, with the "already pulled" check inside."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..backbone_base import hub_weights_digest
from ..errors import InvalidInput, NotFound, RegistryError
from ..store import EdgeIn, MetricIn, validate_name
from .common import (
    printable,
    printable_list,
)
from .stage import (
    _Staged,
    rename_fusion_members,
    upstream_names,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..backbone import Backbone
    from ..store import Registry


def _already_pulled(registry: Registry, repo_id: str, sha: str) -> E.Entity | None:
    for link in registry.hub_links(repo_id=repo_id):
        if link.direction == "pull" and link.commit_sha == sha:
            return registry.get_entity(link.entity_kind, link.entity_id)
    return None


def _precheck(registry: Registry, staged: _Staged) -> None:
    """Refuse, before any write, what registering would refuse half-way."""
    validate_name(staged.name, f"{staged.kind} name")
    validate_name(staged.task, "task name")
    labels = staged.label_names
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidInput(
            f"The pulled task needs at least two distinct labels, got {labels}.",
            hint="Pull an adapter with a classification head of two or more labels.",
        )
    try:
        existing = registry.get_task(staged.task)
    except NotFound:
        existing = None
    if existing is not None:
        if list(existing.label_names) != labels or existing.kind != staged.task_kind:
            raise InvalidInput(
                f"Task {staged.task!r} here has labels {existing.label_names} "
                f"({existing.kind}-text); the pulled one has {labels} ({staged.task_kind}-text).",
                hint="Pull it into another task: --task NEW_TASK",
            )
        if existing.base_model_id is not None:
            here = registry.get_base_model(existing.base_model_id)
            if here.revision != staged.base["revision"]:
                raise InvalidInput(
                    f"Task {staged.task!r} here is on base model {here.name} (revision "
                    f"{here.revision[:12]}); the pulled {staged.kind} is on "
                    f"{staged.base['name']} (revision {str(staged.base['revision'])[:12]}).",
                    hint="Pull it into another task: --task NEW_TASK",
                )
    try:
        clash = registry.resolve(f"{staged.name}@1")
    except NotFound:
        clash = None
    if clash is not None and (clash.kind != staged.kind or clash.task != staged.task):
        raise InvalidInput(
            f"{staged.name!r} is already the name of a {clash.kind} of task {clash.task!r}.",
            hint="Register it under another name: --as NAME",
        )
    bases = {m.base_model_id for m in staged.members if isinstance(m, E.AdapterVersion)}
    if len(bases) > 1:
        raise InvalidInput(
            "The fusion's members here are on different base models.",
            hint="Pull fusions whose members share one base model.",
        )


def _check_loads(registry: Registry, repo_id: str, staged: _Staged) -> None:
    """Load the staged adapter (or fusion, over its members) on its base; compare head labels.

    Junk weights, configs the library cannot build, heads whose labels contradict the task and
    weights that compute NaN are refused here, before anything is written. A fusion loads over
    its members under the module names it was saved with (renamed when it is registered).
    """
    from ..backbone import Backbone
    from ..loader import HEAD_PREFIX

    what = f"The {staged.kind} in {repo_id}"
    base = staged.base
    local = Path(str(base["name"])).expanduser().exists()
    backbone: Backbone = Backbone.load(str(base["name"]), None if local else str(base["revision"]))
    if backbone.info.revision != base["revision"]:
        raise InvalidInput(
            f"The base model {printable(base['name'])} here is at revision "
            f"{backbone.info.revision[:12]}, but {what} records "
            f"{printable(str(base['revision'])[:12])}.",
            hint="Give the base model it was trained on with --base.",
        )
    if staged.members:
        names = upstream_names(staged.folder, len(staged.members))
        with _refused_unless_loads(what):
            for member, module in zip(staged.members, names, strict=True):
                if isinstance(member, _Staged):
                    backbone.load_adapter(member.folder, module)
                else:
                    backbone.load_adapter(registry.artifact_path(member), module)
        for member, module in zip(staged.members, names, strict=True):
            if isinstance(member, _Staged) and module in backbone.head_names:
                _same_labels(backbone.head_labels(module), member, f"A member of {what}")
        with _refused_unless_loads(what):
            head = HEAD_PREFIX + "pulled"
            backbone.load_fusion(staged.folder, names, head)
            backbone.activate(names, head)
    else:
        with _refused_unless_loads(what):
            head = backbone.load_adapter(staged.folder, "pulled")
            if head not in backbone.head_names:
                return  # a headless adapter: loading it is the check
            backbone.activate(head, head)
    _same_labels(backbone.head_labels(head), staged, what)
    import torch

    with _refused_unless_loads(what):
        batch = backbone.tokenizer(["a short test sentence"], return_tensors="pt")
        with torch.no_grad():
            logits = backbone.logits(dict(batch))
    if not bool(torch.isfinite(logits).all()):
        raise InvalidInput(f"{what} computes NaN or infinite scores.", hint="Refused.")


def _same_labels(labels: list[str], staged: _Staged, what: str) -> None:
    if labels != staged.label_names:
        raise InvalidInput(
            f"{what} has a head with labels {printable_list(labels)}, but its task "
            f"{staged.task!r} has {printable_list(staged.label_names)}.",
            hint="The repo contradicts itself; pull another revision.",
        )


@contextlib.contextmanager
def _refused_unless_loads(what: str) -> Iterator[None]:
    """Turn any failure to build or run the pulled weights into one clear InvalidInput."""
    hint = "The repo is damaged or not for this base model; pull another one."
    try:
        yield
    except RegistryError as err:
        raise InvalidInput(
            f"{what} does not load on its base model: {printable(err.message)}",
            hint=err.hint or hint,
        ) from err
    except Exception as err:  # the adapters library fails in many ways on junk configs
        first = str(err).splitlines()[0] if str(err) else ""
        raise InvalidInput(
            f"{what} does not load on its base model: {type(err).__name__}: {printable(first)}",
            hint=hint,
        ) from err


def _register_once(
    registry: Registry, staged: _Staged, repo_id: str, sha: str, rev: str, workdir: Path
) -> tuple[E.Entity, bool, list[E.Entity]]:
    """Register ``staged`` (with any members pulled with it) and hub links in one transaction.

    Returns (entity, False, the members registered with it). When another pull registered this
    commit first, nothing is written: (its entity, True, []). Artifacts are published before
    the rows that use them and removed again if the transaction fails and no row uses them.
    """
    from ..artifacts import file_listing_digest

    published: list[str] = []
    attempts = itertools.count()

    def publish(folder: Path) -> None:
        digest = file_listing_digest(folder)
        if not registry.artifacts.exists(digest):
            published.append(digest)
        registry.artifacts.put(folder)

    for member in staged.members:
        if isinstance(member, _Staged):
            publish(member.folder)
    if not staged.members:
        publish(staged.folder)

    def unit(session: Session) -> tuple[E.Entity, bool, list[E.Entity]]:
        if session.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(f"{repo_id}@{sha}".encode()).digest()[:8], "big")
            session.execute(_advisory_lock(), {"key": key - (1 << 63)})
        done = _already_pulled(registry, repo_id, sha)
        if done is not None:
            return done, True, []
        pulled: list[tuple[_Staged, E.Entity]] = []
        members: list[E.AdapterVersion] = []
        for member in staged.members:
            if not isinstance(member, _Staged):
                members.append(member)
                continue
            assert member.origin is not None
            m_repo, m_sha, m_rev = member.origin
            earlier = _already_pulled(registry, m_repo, m_sha)
            if isinstance(earlier, E.AdapterVersion):
                members.append(earlier)
                continue
            version = _register(registry, member)
            assert isinstance(version, E.AdapterVersion)
            _link(registry, version, m_repo, m_sha, m_rev)
            pulled.append((member, version))
            members.append(version)
        folder = staged.folder
        if staged.members:
            folder = workdir / f"fusion-{next(attempts)}"
            shutil.copytree(staged.folder, folder)
            rename_fusion_members(folder, members)
            publish(folder)
        entity = _register(registry, staged, members, folder)
        _link(registry, entity, repo_id, sha, rev)
        _import_lineage(registry, [*pulled, (staged, entity)])
        return entity, False, [e for _, e in pulled]

    try:
        return registry.transaction(unit, is_conflict=_is_race)
    except BaseException:
        referenced = registry.referenced_artifacts()
        for digest in dict.fromkeys(published):
            if digest not in referenced:
                with contextlib.suppress(OSError, RegistryError):
                    registry.artifacts.remove(digest)
        raise


def _link(registry: Registry, entity: E.Entity, repo_id: str, sha: str, rev: str) -> None:
    link = registry.record_hub_link(
        entity, repo_id=repo_id, commit_sha=sha, revision=rev, direction="pull"
    )
    registry.add_edge("hub", link.id, entity.kind, entity.id, "pulled_from_hub")


#: Upstream lineage relations imported on pull, with the node kinds they join.
_IMPORTED = {"warm_started_from": ("adapter", "adapter"), "fused_from": ("adapter", "fusion")}


def _import_lineage(registry: Registry, pulled: list[tuple[_Staged, E.Entity]]) -> None:
    """Add the pushing registry's lineage edges that join versions present here.

    An upstream adapter or fusion node is matched here by its artifact sha256 (a fusion pulled
    over renamed members by the sha it had upstream). Only edges into a version this pull
    registered are added, so a pull never rewrites the history of versions already here.
    """
    by_sha: dict[tuple[str, str], E.Entity] = {}
    for e in registry.list_entities():
        by_sha.setdefault((e.kind, e.artifact_sha256), e)
    for s, e in pulled:
        by_sha[(e.kind, s.upstream_sha)] = e
    new = {(e.kind, e.id) for _, e in pulled}
    for s, _ in pulled:
        graph = s.lineage
        raw_nodes = graph.get("nodes")
        raw_edges = graph.get("edges")
        if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
            continue
        nodes = {str(n.get("key")): n for n in raw_nodes if isinstance(n, dict)}
        for edge in raw_edges:
            if not isinstance(edge, dict) or edge.get("relation") not in _IMPORTED:
                continue
            relation = str(edge["relation"])
            ends: list[E.Entity] = []
            for key, kind in zip(
                (edge.get("parent"), edge.get("child")), _IMPORTED[relation], strict=True
            ):
                node = nodes.get(str(key))
                if node is None or node.get("kind") != kind:
                    break
                sha = node.get("artifact_sha256") or s.ref_shas.get(str(node.get("label")))
                if key == graph.get("root"):
                    sha = s.upstream_sha
                local = by_sha.get((kind, str(sha)))
                if local is None:
                    break
                ends.append(local)
            if len(ends) != 2:
                continue
            parent, child = ends
            if (child.kind, child.id) in new and (parent.kind, parent.id) != (child.kind, child.id):
                registry.add_edge(parent.kind, parent.id, child.kind, child.id, relation)


def _is_race(err: BaseException) -> bool:
    """A lost race to create the same row (task, base model, name): the retry re-reads it."""
    from sqlalchemy import exc

    text_ = str(err.orig).lower() if isinstance(err, exc.IntegrityError) else ""
    return "unique" in text_ or "duplicate key" in text_


def _advisory_lock() -> Any:
    from sqlalchemy import text

    return text("SELECT pg_advisory_xact_lock(:key)")


# long: base, task, snapshots and the version of one pulled repo, written in pull's one transaction
def _register(
    registry: Registry,
    staged: _Staged,
    members: list[E.AdapterVersion] | None = None,
    folder: Path | None = None,
) -> E.Entity:
    if members:
        base_id = members[0].base_model_id
        base_row = registry.get_base_model(base_id)
        if base_row.revision != staged.base["revision"]:
            raise InvalidInput(
                f"The fusion's members here are on base revision {base_row.revision[:12]}, the "
                f"fusion on {str(staged.base['revision'])[:12]}.",
                hint="Pull the members trained on the fusion's base model revision.",
            )
    else:
        b = staged.base
        rev = str(b["revision"])
        hub = b.get("hub_id")
        base_id = registry.ensure_base_model(
            str(b["name"]),
            rev,
            str(b.get("architecture", "unknown")),
            int(b.get("hidden_size", 0)),
            int(b.get("num_layers", 0)),
            # a local folder's revision is its weights' sha256; a Hub model's, its commit (its
            # weights' sha256 is taken of the snapshot _check_loads downloaded)
            weights_sha256=rev if len(rev) == 64 else hub_weights_digest(str(b["name"]), rev),
            hub_id=str(hub) if hub else None,
            hub_commit=(str(b.get("hub_revision") or "") or None) if hub else None,
        ).id
    task_row = registry.ensure_task(
        staged.task, staged.task_kind, staged.label_names, staged.text_fields, base_id
    )
    dataset_ids: dict[tuple[str, str], int] = {}
    for d in staged.datasets:
        ds = registry.record_dataset(
            task_row.id,
            str(d["source"]),
            str(d["split"]),
            int(d["row_count"]),
            str(d["fingerprint"]),
            dict(d.get("label_distribution") or {}),
        )
        dataset_ids[(ds.fingerprint, ds.split)] = ds.id
    metrics = [
        MetricIn(
            name=str(m["name"]),
            value=float(m["value"]),
            split=m.get("split"),
            dataset_id=dataset_ids.get((str(m.get("dataset_fingerprint")), str(m.get("split")))),
            step=m.get("step"),
        )
        for m in staged.metrics
    ]
    lineage: list[EdgeIn] = []
    if staged.kind == "fusion":
        return registry.register_fusion(
            name=staged.name,
            task=staged.task,
            base_model_id=base_id,
            member_ids=[m.id for m in members or []],
            config=staged.config,
            head=staged.head,
            artifact_dir=folder or staged.folder,
            trainable_params=staged.trainable_params,
            training_run=staged.training_run,
            metrics=metrics,
            lineage=lineage,
        )
    return registry.register_adapter_version(
        name=staged.name,
        task=staged.task,
        base_model_id=base_id,
        method=staged.method,
        config=staged.config,
        artifact_dir=staged.folder,
        trainable_params=staged.trainable_params,
        training_run=staged.training_run,
        metrics=metrics,
        lineage=lineage,
    )
