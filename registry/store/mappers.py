"""Rows → frozen entities, once for every reader.

Each mapper takes a row as a mapping of column name to value: a :class:`sqlite3.Row` from the
fast reader, or :func:`columns` of an ORM object from the store. Values are normalised on the
way: JSON columns arrive as text from sqlite3 and as objects from SQLAlchemy, timestamps as ISO
text or ``datetime``. Pure: no SQLAlchemy, no sqlite3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from .. import entities as E


class Row(Protocol):
    """A row as a reader hands it over: values by column name (sqlite3.Row, a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


def columns(obj: Any) -> dict[str, Any]:
    """Return an ORM object's column values by column name."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def when(value: Any) -> datetime:
    """Return a stored timestamp as a ``datetime``."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def base_model(r: Row) -> E.BaseModel:
    return E.BaseModel(
        id=r["id"],
        name=r["name"],
        revision=r["revision"],
        architecture=r["architecture"],
        hidden_size=r["hidden_size"],
        num_layers=r["num_layers"],
        created_at=when(r["created_at"]),
        weights_sha256=r["weights_sha256"],
        hub_id=r["hub_id"],
        hub_commit=r["hub_commit"],
    )


def task(r: Row) -> E.Task:
    return E.Task(
        id=r["id"],
        name=r["name"],
        kind=r["kind"],
        label_names=tuple(_json(r["label_names"])),
        text_fields=tuple(_json(r["text_fields"])),
        base_model_id=r["base_model_id"],
        created_at=when(r["created_at"]),
    )


def dataset(r: Row) -> E.Dataset:
    return E.Dataset(
        id=r["id"],
        task_id=r["task_id"],
        source=r["source"],
        split=r["split"],
        row_count=r["row_count"],
        fingerprint=r["fingerprint"],
        label_distribution=dict(_json(r["label_distribution"])),
        created_at=when(r["created_at"]),
    )


def promotion(r: Row) -> E.Promotion:
    return E.Promotion(
        id=r["id"],
        task_id=r["task_id"],
        entity_kind=r["entity_kind"],
        entity_id=r["entity_id"],
        step=r["step"],
        dataset_id=r["dataset_id"],
        alias=r["alias"],
        created_at=when(r["created_at"]),
        gate_metric=r["gate_metric"],
        gate_reason=r["gate_reason"],
        outcome=r["outcome"],
    )


def metric(r: Row) -> E.Metric:
    return E.Metric(
        id=r["id"],
        entity_kind=r["entity_kind"],
        entity_id=r["entity_id"],
        dataset_id=r["dataset_id"],
        split=r["split"],
        name=r["name"],
        value=r["value"],
        step=r["step"],
        created_at=when(r["created_at"]),
    )


def edge(r: Row) -> E.LineageEdge:
    return E.LineageEdge(
        id=r["id"],
        parent_kind=r["parent_kind"],
        parent_id=r["parent_id"],
        child_kind=r["child_kind"],
        child_id=r["child_id"],
        relation=r["relation"],
        created_at=when(r["created_at"]),
    )


def drift_report(r: Row) -> E.DriftReport:
    return E.DriftReport(
        id=r["id"],
        task_id=r["task_id"],
        reference_adapter_version_id=r["reference_adapter_version_id"],
        new_dataset_id=r["new_dataset_id"],
        alpha=r["alpha"],
        tests=tuple(_json(r["tests"])),
        drift=bool(r["drift"]),
        created_at=when(r["created_at"]),
    )


def hub_link(r: Row) -> E.HubLink:
    return E.HubLink(
        id=r["id"],
        entity_kind=r["entity_kind"],
        entity_id=r["entity_id"],
        repo_id=r["repo_id"],
        commit_sha=r["commit_sha"],
        revision=r["revision"],
        direction=r["direction"],
        artifact_sha256=r["artifact_sha256"],
        created_at=when(r["created_at"]),
    )


def training_run(r: Row) -> E.TrainingRun:
    return E.TrainingRun(
        id=r["id"],
        kind=r["kind"],
        hyperparams=dict(_json(r["hyperparams"])),
        seed=r["seed"],
        library_versions=dict(_json(r["library_versions"])),
        wall_time_s=r["wall_time_s"],
        tokens_per_s=r["tokens_per_s"],
        device=r["device"],
        created_at=when(r["created_at"]),
    )


def alias(r: Row, task_name: str, target_ref: str) -> E.Alias:
    return E.Alias(
        id=r["id"],
        task=task_name,
        alias=r["alias"],
        target_kind=r["target_kind"],
        target_id=r["target_id"],
        target_ref=target_ref,
        updated_at=when(r["updated_at"]),
    )


def adapter_version(r: Row, name: str, task_name: str) -> E.AdapterVersion:
    return E.AdapterVersion(
        id=r["id"],
        name=name,
        version=r["version"],
        task=task_name,
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
        created_at=when(r["created_at"]),
    )


#: One member of a fusion as the readers fetch it: (position, version id, name, version).
Member = tuple[int, int, str, int]


def fusion(r: Row, task_name: str, members: Iterable[Member]) -> E.Fusion:
    ms = sorted(members)
    return E.Fusion(
        id=r["id"],
        name=r["name"],
        version=r["version"],
        task=task_name,
        task_id=r["task_id"],
        base_model_id=r["base_model_id"],
        config=dict(_json(r["config"])),
        head=dict(_json(r["head"])),
        members=tuple(f"{n}@{v}" for _, _, n, v in ms),
        member_ids=tuple(avid for _, avid, _, _ in ms),
        artifact_sha256=r["artifact_sha256"],
        artifact_size=r["artifact_size"],
        trainable_params=r["trainable_params"],
        training_run_id=r["training_run_id"],
        status=r["status"],
        created_at=when(r["created_at"]),
    )


def node_label(kind: str, node_id: int, found: Row | None) -> str:
    """Return a lineage node's label from the columns a reader fetched for it (None: gone).

    ``found`` holds ``name``/``version``/``status`` (adapter, fusion), ``repo_id``/
    ``commit_sha`` (hub),
    ``drift`` (drift report) or ``split`` (dataset).
    """
    if kind in ("adapter", "fusion"):
        if found is None:
            return f"{kind[0]}{node_id} (missing)"
        gone = " (deleted)" if found["status"] == "deleted" else ""
        return f"{found['name']}@{found['version']}{gone}"
    if kind == "hub":
        if found is None:
            return f"hub{node_id} (missing)"
        return f"hub:{found['repo_id']}@{found['commit_sha'][:10]}"
    if kind == "drift":
        if found is None:
            return f"drift#{node_id} (missing)"
        return f"drift#{node_id} ({'drift' if found['drift'] else 'no drift'})"
    if kind == "dataset":
        return f"dataset#{node_id} ({found['split']})" if found else f"dataset#{node_id} (missing)"
    return f"{kind}:{node_id}"
