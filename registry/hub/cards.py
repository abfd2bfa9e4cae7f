"""``registry.json`` (what the registry knows about a pushed entity) and the model card.

Nothing pushed names a path of the pushing machine: a local base model is named by its folder's
name (plus its Hub id when known, see :func:`base_hub_id`), a local data split by its folder or
file name, and any other absolute path in the training run is cut to its last part.
:func:`local_paths` lists the paths a push must not contain, for the final check in
:func:`registry.hub.push.push`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..artifacts import MANIFEST
from ..errors import InvalidInput, NotFound
from .common import _HUB_LIKE, _REPO_ID, _SHA, FORMAT

if TYPE_CHECKING:
    from ..store import Registry

#: The Hub's pipeline tag: every entity here is a sequence classifier.
PIPELINE_TAG = "text-classification"
#: Run-config key holding the Hub id (``OWNER/NAME`` or ``OWNER/NAME@COMMIT``) of a local base.
BASE_HUB_ID = "base_hub_id"
_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv", ".txt")
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
_HF_CACHE = re.compile(
    r"models--([A-Za-z0-9][\w.-]*)--([A-Za-z0-9][\w.-]*)/snapshots/([0-9a-f]{40})"
)
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
#: Metric names shown first in the card's metrics table.
_MAIN_METRICS = ("accuracy", "macro_f1")


# ---------------------------------------------------------------------- names without paths
def is_local_path(name: str) -> bool:
    """True when ``name`` names a file or folder on this machine rather than a Hub repo."""
    if _ABSOLUTE.match(name) or name.startswith(("./", "../", ".\\", "..\\")):
        return True
    return not _HUB_LIKE.match(name) or Path(name).expanduser().exists()


def portable(name: str) -> str:
    """Return ``name`` as it may be published: a Hub id as is, a local path by its last part.

    A data file (``books/train.jsonl``) keeps its folder's name: ``books/train.jsonl``.
    """
    if not is_local_path(name):
        return name
    text = name.strip("<>")  # "<DatasetDict>": an in-memory datasets object
    if not is_local_path(text):
        return text
    path = Path(text.replace("\\", "/"))
    if path.suffix.lower() in _DATA_SUFFIXES and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or "local"


def _scrub(value: Any) -> Any:
    """Return ``value`` with every absolute-path string cut to its last part (JSON-like data)."""
    if isinstance(value, str):
        return portable(value) if _ABSOLUTE.match(value) and "\n" not in value else value
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def parse_hub_id(value: str, what: str = "--base-hub-id") -> tuple[str, str | None]:
    """Split ``OWNER/NAME[@COMMIT]`` into the repo id and the commit; refuse anything else."""
    repo_id, sep, commit = value.strip().partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or (sep and not _SHA.match(commit)):
        raise InvalidInput(
            f"{what} {value!r} is not a Hub model id: expected OWNER/NAME, optionally "
            "@ and the full 40-character commit sha.",
            hint=f"e.g. {what} sentence-transformers/all-MiniLM-L6-v2",
        )
    return repo_id, commit or None


def hub_dataset(source: str) -> tuple[str, str | None] | None:
    """Return (Hub dataset id, config) for a data source loaded from the Hub, else None.

    Sources follow :func:`registry.data.load_spec`: ``owner/name/config`` or ``owner/name``
    (which the loader may also read as ``name/config``, as in ``super_glue/cb``).
    """
    if is_local_path(source) or not re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w.-]+)?", source):
        return None
    parts = source.split("/")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}", parts[2]
    return source, None


# ---------------------------------------------------------------------- base model's Hub id
def _runs_hub_id(registry: Registry, entities: list[E.Entity]) -> str | None:
    for e in entities:
        if e.training_run_id is None:
            continue
        value = registry.training_run(e.training_run_id).hyperparams.get(BASE_HUB_ID)
        if isinstance(value, str) and value:
            return value
    return None


def base_hub_id(
    registry: Registry, entity: E.Entity, base: E.BaseModel
) -> tuple[str | None, str | None]:
    """Return (Hub id, Hub commit) of an entity's base model, each None when unknown.

    Known when the base was loaded by Hub id, when its folder is a Hugging Face cache snapshot
    (``models--OWNER--NAME/snapshots/SHA``), or when a training run on it recorded
    ``--base-hub-id``: the entity's own, its fusion members', then the latest on that base.
    """
    if base.hub_id is not None:
        return base.hub_id, base.hub_commit
    if not is_local_path(base.name):
        return base.name, base.revision
    cached = _HF_CACHE.search(base.name.replace("\\", "/"))
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}", cached.group(3)
    related: list[E.Entity] = [entity]
    if isinstance(entity, E.Fusion):
        related += [registry.get_adapter_version(m) for m in entity.member_ids]
    on_base = [e for e in registry.list_entities() if e.base_model_id == base.id]
    related += sorted(on_base, key=lambda e: e.created_at, reverse=True)
    recorded = _runs_hub_id(registry, related)
    if recorded is None:
        return None, None
    try:
        return parse_hub_id(recorded)
    except InvalidInput:
        return None, None


def local_paths(registry: Registry, entity: E.Entity) -> list[str]:
    """Paths of this machine that a push of ``entity`` must not contain (longest first)."""
    base = registry.get_base_model(entity.base_model_id)
    found = {str(registry.settings.home), str(Path(registry.settings.home).resolve())}
    found.add(str(Path(tempfile.gettempdir()).resolve()) + "/")
    home = str(Path.home())
    if len(home) >= 4:
        found.add(home + "/")
    names = [base.name] + [d.source for d in _datasets_of(registry, entity).values()]
    for name in names:
        if is_local_path(name) and not name.startswith("<"):
            folder = str(Path(name).expanduser().resolve())
            found.update(p for p in (name, folder) if _ABSOLUTE.match(p) and len(p) >= 4)
    return sorted(found, key=len, reverse=True)


def _datasets_of(registry: Registry, entity: E.Entity) -> dict[int, E.Dataset]:
    ids = sorted({m.dataset_id for m in registry.metrics(entity) if m.dataset_id is not None})
    return {i: registry.get_dataset(i) for i in ids}


# ---------------------------------------------------------------------- registry.json
def _lineage(registry: Registry, entity: E.Entity) -> dict[str, Any]:
    """The lineage graph, its adapter and fusion nodes marked with their artifact sha256."""
    graph = registry.lineage(entity)
    for node in graph["nodes"]:
        if node["kind"] in ("adapter", "fusion"):
            try:
                node["artifact_sha256"] = registry.get_entity(
                    node["kind"], node["id"]
                ).artifact_sha256
            except NotFound:
                continue
    return graph


# long: one flat document (registry.json) built field by field, read top to bottom
def build_metadata(registry: Registry, entity: E.Entity, folder: Path) -> dict[str, Any]:
    """Return the ``registry.json`` document for an entity whose verified artifact is ``folder``."""
    from .. import __version__
    from ..loader import module_name

    task = registry.get_task_by_id(entity.task_id)
    base = registry.get_base_model(entity.base_model_id)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    metrics = registry.metrics(entity)
    datasets = _datasets_of(registry, entity)
    run = (
        registry.training_run(entity.training_run_id).to_dict()
        if entity.training_run_id is not None
        else None
    )
    if run is not None:
        run.pop("id", None)
    hub_id, hub_revision = base_hub_id(registry, entity, base)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "registry_version": __version__,
        "kind": entity.kind,
        "name": entity.name,
        "version": entity.version,
        "ref": entity.ref,
        "module_name": module_name(entity),
        "created_at": entity.to_dict()["created_at"],
        "trainable_params": entity.trainable_params,
        "task": {
            "name": task.name,
            "kind": task.kind,
            "label_names": task.label_names,
            "text_fields": task.text_fields,
        },
        "base_model": {
            "name": portable(base.name),
            "revision": base.revision,
            "architecture": base.architecture,
            "hidden_size": base.hidden_size,
            "num_layers": base.num_layers,
            "hub_id": hub_id,
            "hub_revision": hub_revision,
        },
        "artifact": {
            "sha256": entity.artifact_sha256,
            "size": entity.artifact_size,
            "files": manifest["files"],
        },
        "metrics": [
            {
                "name": m.name,
                "value": m.value,
                "split": m.split,
                "step": m.step,
                "dataset_fingerprint": datasets[m.dataset_id].fingerprint
                if m.dataset_id is not None
                else None,
            }
            for m in metrics
        ],
        "datasets": [
            {
                "source": portable(d.source),
                "hub_id": (hub_dataset(d.source) or (None, None))[0],
                "split": d.split,
                "row_count": d.row_count,
                "fingerprint": d.fingerprint,
                "label_distribution": d.label_distribution,
            }
            for d in datasets.values()
        ],
        "training_run": _scrub(run),
        "lineage": _lineage(registry, entity),
    }
    if isinstance(entity, E.AdapterVersion):
        meta["method"] = entity.method
        meta["config"] = _scrub(entity.config)
        meta["config_hash"] = entity.config_hash
    else:
        meta["fusion"] = {"config": _scrub(entity.config), "head": _scrub(entity.head)}
        members = []
        for mid in entity.member_ids:
            member = registry.get_adapter_version(mid)
            links = [
                {"repo_id": h.repo_id, "commit_sha": h.commit_sha, "revision": h.revision}
                for h in registry.hub_links(member)
                if h.artifact_sha256 == member.artifact_sha256
            ]
            members.append(
                {
                    "ref": member.ref,
                    "module_name": module_name(member),
                    "artifact_sha256": member.artifact_sha256,
                    "hub": links,
                }
            )
        meta["members"] = members
    return meta


# ---------------------------------------------------------------------- the model card
def check_license(license_id: str) -> str:
    """Return a Hub licence identifier (``apache-2.0``, ``mit``, ``other``); refuse others."""
    if not _LICENSE.match(license_id):
        raise InvalidInput(
            f"Licence {license_id!r} is not a Hub licence identifier (lower-case letters, digits, "
            "'.', '+' or '-').",
            hint="e.g. --license apache-2.0, --license mit or --license other",
        )
    return license_id


def _dataset_names(meta: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(fingerprint, split) -> {name, type, config} for the model-index and the tables."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in meta["datasets"]:
        hub_id = d.get("hub_id")
        source = str(d["source"])
        if hub_id:
            parsed = hub_dataset(source)
            config = parsed[1] if parsed else None
            entry = {"name": source, "type": hub_id, "config": config}
        else:
            name = portable(source)
            entry = {"name": name, "type": name, "config": None}
        out[(str(d["fingerprint"]), str(d["split"]))] = entry
    return out


def final_metrics(meta: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(dataset name, split) -> {metric: value}: final (not per-epoch) numbers, latest wins.

    A re-``eval`` on the same data records the metric again; only its latest value is kept.
    """
    names = _dataset_names(meta)
    table: dict[tuple[str, str], dict[str, float]] = {}
    for m in meta["metrics"]:
        value = m["value"]
        if m["step"] is not None or m["split"] is None or not isinstance(value, int | float):
            continue
        if "/" in str(m["name"]):  # per-class numbers (f1/positive) stay in registry.json
            continue
        fp = m.get("dataset_fingerprint")
        ds = names.get((str(fp), str(m["split"]))) if fp else None
        key = (ds["name"] if ds else "(unrecorded)", str(m["split"]))
        table.setdefault(key, {})[str(m["name"])] = float(value)
    return table


def _card_data(meta: dict[str, Any], license_id: str | None) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    task = meta["task"]
    base = meta["base_model"]
    is_fusion = meta["kind"] == "fusion"
    method = "adapter-fusion" if is_fusion else str(meta.get("method") or "adapter")
    tags = list(dict.fromkeys(["adapters", "adapter-registry", task["name"], method]))
    hub_datasets = list(dict.fromkeys(d["hub_id"] for d in meta["datasets"] if d.get("hub_id")))
    by_name = {v["name"]: v for v in _dataset_names(meta).values()}
    results = []
    for (ds_name, split), values in final_metrics(meta).items():
        ds = by_name.get(ds_name)
        if ds is None or split not in ("validation", "test"):
            continue
        for metric, value in values.items():
            results.append(
                EvalResult(
                    task_type=PIPELINE_TAG,
                    task_name=task["name"],
                    dataset_type=ds["type"],
                    dataset_name=ds["name"],
                    dataset_config=ds["config"],
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=round(value, 6),
                    metric_name=f"{split} {metric}",
                )
            )
    extra: dict[str, Any] = {}
    if base.get("hub_id"):
        extra = {"base_model": base["hub_id"], "base_model_relation": "adapter"}
    return ModelCardData(
        library_name="adapters",
        pipeline_tag=PIPELINE_TAG,
        license=license_id,
        tags=tags,
        datasets=hub_datasets or None,
        model_name=meta["ref"] if results else None,
        eval_results=results or None,
        **extra,
    )
