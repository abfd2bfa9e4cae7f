"""Stage a repo published with the ``adapters`` library (AdapterHub): configs and weights, perhaps
as pickles, converted to safetensors only after ``torch.load(weights_only=True)``; the task and
labels come from the head's config or an existing task."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, NotFound, RegistryError
from ..store import validate_name
from .common import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FUSION_CONFIG,
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    PICKLE_TO_SAFETENSORS,
    REGISTRY_FILE,
)
from .safety import (
    ADAPTER_CONFIG_SCHEMA,
    HEAD_CONFIG_SCHEMA,
    Budget,
    _check_safetensors,
    _convert_pickle,
    check_labels,
    check_schema,
    read_json,
)
from .stage import Fetch, _check_adapter_config, _Staged

if TYPE_CHECKING:
    from ..store import Registry


# long: one linear sequence of checks on an untrusted repo, each with its own refusal
def _stage_adapterhub_repo(
    registry: Registry,
    repo_id: str,
    files: list[str],
    fetch: Fetch,
    art: Path,
    name: str | None,
    task: str | None,
    base: str | None,
    budget: Budget,
) -> _Staged:
    from ..backbone import resolve_base

    if ADAPTER_CONFIG not in files:
        what = "a fusion without registry.json" if FUSION_CONFIG in files else "not an adapter"
        raise InvalidInput(
            f"Repository {repo_id} is {what}: it has no {ADAPTER_CONFIG}"
            f"{' and no ' + REGISTRY_FILE if FUSION_CONFIG not in files else ''}.",
            hint="Pull a repo pushed by adapter-registry push or the adapters library "
            "(fusions need registry.json to name their members).",
        )
    adapter_config = read_json(fetch(ADAPTER_CONFIG).path, f"{ADAPTER_CONFIG} of {repo_id}")
    check_schema(adapter_config, ADAPTER_CONFIG_SCHEMA, f"{ADAPTER_CONFIG} of {repo_id}")
    _check_adapter_config(repo_id, adapter_config)
    shutil.copyfile(fetch(ADAPTER_CONFIG).path, art / ADAPTER_CONFIG)
    params = _fetch_weights(repo_id, files, fetch, art, ADAPTER_WEIGHTS, budget, required=True)
    labels: list[str] | None = None
    if HEAD_CONFIG in files:
        head_config = read_json(fetch(HEAD_CONFIG).path, f"{HEAD_CONFIG} of {repo_id}")
        shutil.copyfile(fetch(HEAD_CONFIG).path, art / HEAD_CONFIG)
        params += _fetch_weights(repo_id, files, fetch, art, HEAD_WEIGHTS, budget, required=True)
        labels = _head_labels(head_config, f"{HEAD_CONFIG} of {repo_id}")
        if labels is None:
            raise InvalidInput(
                f"The head in {repo_id} has no label names (label2id).",
                hint="Only classification heads can be pulled.",
            )
        check_labels(f"The head in {repo_id}", labels)
    repo_name = repo_id.split("/")[1]
    task_name = task or _safe_name(repo_name)
    try:
        existing = registry.get_task(task_name)
    except NotFound:
        existing = None
    if labels is None:
        if existing is None:
            raise InvalidInput(
                f"The adapter in {repo_id} has no head, so its labels are unknown, and there is "
                f"no task {task_name!r} to take them from.",
                hint=f"Give an existing task: adapter-registry pull {repo_id} --task TASK",
            )
        labels = list(existing.label_names)
    base_name = base or str(adapter_config.get("model_name") or "")
    if not base_name:
        raise InvalidInput(
            f"{ADAPTER_CONFIG} of {repo_id} names no base model.",
            hint=f"Give one: adapter-registry pull {repo_id} --base MODEL",
        )
    try:
        info = resolve_base(base_name)
    except RegistryError as err:
        raise type(err)(
            f"Cannot resolve the base model {base_name!r} of {repo_id}: {err.message}",
            hint=f"Give a local folder or Hub id: adapter-registry pull {repo_id} --base MODEL",
        ) from err
    hidden = adapter_config.get("hidden_size")
    if isinstance(hidden, int) and hidden != info.hidden_size:
        raise InvalidInput(
            f"The adapter in {repo_id} is for hidden size {hidden}, but {base_name} has "
            f"{info.hidden_size}.",
            hint="Give the base model it was trained on with --base.",
        )
    config = dict(adapter_config.get("config") or {})
    return _Staged(
        folder=art,
        kind="adapter",
        source="adapterhub",
        name=name or _safe_name(repo_name),
        task=task_name,
        task_kind=existing.kind if existing else "single",
        label_names=labels,
        text_fields=list(existing.text_fields) if existing else ["text"],
        base={
            "name": info.name,
            "revision": info.revision,
            "architecture": info.architecture,
            "hidden_size": info.hidden_size,
            "num_layers": info.num_layers,
        },
        method=_method_of(config),
        config=config,
        trainable_params=params,
        training_run={
            "hyperparams": {"hub_origin": {"adapter_config": adapter_config}},
            "library_versions": {"adapters": str(adapter_config.get("version", "unknown"))},
        },
        metrics=[],
        datasets=[],
        members=[],
        head={},
    )


def _method_of(config: dict[str, Any]) -> str:
    """Name a bottleneck config the way the trainer does (seq_bn, double_seq_bn)."""
    arch = config.get("architecture")
    if arch not in (None, "bottleneck"):
        return str(arch)
    mh, out = bool(config.get("mh_adapter")), bool(config.get("output_adapter"))
    if mh and out:
        return "double_seq_bn"
    if out:
        return "seq_bn"
    return "bottleneck"


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip(".-_") or "pulled"
    return validate_name(cleaned[:128].replace("..", "."))


def _fetch_weights(
    repo_id: str,
    files: list[str],
    fetch: Fetch,
    art: Path,
    safe_name: str,
    budget: Budget,
    *,
    required: bool,
) -> int:
    """Download ``safe_name`` (or convert its pickle twin); return its number of parameters."""
    label = f"{safe_name} in {repo_id}"
    if safe_name in files:
        shutil.copyfile(fetch(safe_name).path, art / safe_name)
        return _check_safetensors(art / safe_name, label)
    pickle_name = next(p for p, s in PICKLE_TO_SAFETENSORS.items() if s == safe_name)
    if pickle_name in files:
        _convert_pickle(
            fetch(pickle_name).path, art / safe_name, f"{pickle_name} in {repo_id}", budget
        )
        return _check_safetensors(art / safe_name, label)
    if required:
        raise InvalidInput(
            f"Repository {repo_id} has neither {safe_name} nor {pickle_name}.",
            hint="It is not a complete adapter; pull another revision.",
        )
    return 0


def _head_labels(head_config: dict[str, Any], label: str) -> list[str] | None:
    """Return the label names of a classification head config, in class order (None: none)."""
    check_schema(head_config, HEAD_CONFIG_SCHEMA, label)
    config = head_config.get("config") or {}
    label2id = config.get("label2id")
    id2label = config.get("id2label") or head_config.get("id2label")
    if isinstance(label2id, dict) and label2id:
        ids = sorted(label2id.values())
        if ids != list(range(len(ids))):
            raise InvalidInput(
                f"{label}: label2id does not number its labels 0..n-1.",
                hint="Fix the repository's head_config.json, or pull another adapter.",
            )
        return [k for k, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    if isinstance(id2label, dict) and id2label:
        if sorted(id2label) != sorted(str(i) for i in range(len(id2label))):
            raise InvalidInput(
                f"{label}: id2label does not number its labels 0..n-1.",
                hint="Fix the repository's head_config.json, or pull another adapter.",
            )
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    return None
