"""``registry.json`` (what the registry knows about a pushed entity) and the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..artifacts import MANIFEST
from .common import _HUB_LIKE, FORMAT

if TYPE_CHECKING:
    from ..store import Registry


def build_metadata(registry: Registry, entity: E.Entity, folder: Path) -> dict[str, Any]:
    """Return the ``registry.json`` document for an entity whose verified artifact is ``folder``."""
    from .. import __version__
    from ..loader import module_name

    task = registry.get_task_by_id(entity.task_id)
    base = registry.get_base_model(entity.base_model_id)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    metrics = registry.metrics(entity)
    dataset_ids = sorted({m.dataset_id for m in metrics if m.dataset_id is not None})
    datasets = {i: registry.get_dataset(i) for i in dataset_ids}
    run = (
        registry.training_run(entity.training_run_id).to_dict()
        if entity.training_run_id is not None
        else None
    )
    if run is not None:
        run.pop("id", None)
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
            "name": base.name,
            "revision": base.revision,
            "architecture": base.architecture,
            "hidden_size": base.hidden_size,
            "num_layers": base.num_layers,
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
                "source": d.source,
                "split": d.split,
                "row_count": d.row_count,
                "fingerprint": d.fingerprint,
                "label_distribution": d.label_distribution,
            }
            for d in datasets.values()
        ],
        "training_run": run,
        "lineage": registry.lineage(entity),
    }
    if isinstance(entity, E.AdapterVersion):
        meta["method"] = entity.method
        meta["config"] = entity.config
        meta["config_hash"] = entity.config_hash
    else:
        meta["fusion"] = {"config": entity.config, "head": entity.head}
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


def _yaml(value: Any) -> str:
    # JSON scalars are valid YAML and quote anything odd, so the front matter needs no yaml lib.
    return json.dumps(value, ensure_ascii=False)


def _is_hub_name(name: str) -> bool:
    return bool(_HUB_LIKE.match(name)) and not Path(name).expanduser().exists()


def model_card(meta: dict[str, Any], repo_id: str) -> str:
    """Return a README.md model card with YAML front matter for a ``registry.json`` document.

    ``base_model`` and ``datasets`` name Hub ids only (the Hub validates them); local paths are
    described in the body instead, by folder name and fingerprint.
    """
    task = meta["task"]
    base = meta["base_model"]
    is_fusion = meta["kind"] == "fusion"
    method = "adapter-fusion" if is_fusion else str(meta.get("method") or "adapter")
    tags = list(dict.fromkeys(["adapters", "adapter-registry", task["name"], method]))
    sources = list(dict.fromkeys(d["source"] for d in meta["datasets"]))
    hub_sources = [s for s in sources if _is_hub_name(s) and "/" in s]
    lines = ["---", "library_name: adapters", "tags:"]
    lines += [f"- {_yaml(t)}" for t in tags]
    if _is_hub_name(base["name"]):
        lines += [f"base_model: {_yaml(base['name'])}", "base_model_relation: adapter"]
    if hub_sources:
        lines += ["datasets:"] + [f"- {_yaml(s)}" for s in hub_sources]
    final = [
        m
        for m in meta["metrics"]
        if m["split"] in ("validation", "test")
        and m["step"] is None
        and isinstance(m["value"], int | float)
    ]
    if final:
        by_fp = {(d["fingerprint"], d["split"]): d for d in meta["datasets"]}
        lines += ["model-index:", f"- name: {_yaml(meta['ref'])}", "  results:"]
        groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        for m in final:
            groups.setdefault((m["split"], m["dataset_fingerprint"]), []).append(m)
        for (split, fp), ms in groups.items():
            ds = by_fp.get((fp, split))
            source = ds["source"] if ds else task["name"]
            ds_name = source if _is_hub_name(source) else Path(source).name or task["name"]
            lines += [
                "  - task:",
                "      type: text-classification",
                f"      name: {_yaml(task['name'])}",
                "    dataset:",
                f"      name: {_yaml(ds_name)}",
                f"      type: {_yaml(source if _is_hub_name(source) else task['name'])}",
                f"      split: {_yaml(split)}",
                "    metrics:",
            ]
            for m in ms:
                label = f"{split} {m['name']}"
                lines += [
                    f"    - type: {_yaml(m['name'])}",
                    f"      value: {_yaml(round(float(m['value']), 6))}",
                    f"      name: {_yaml(label)}",
                ]
    lines.append("---")
    what = "AdapterFusion layer" if is_fusion else f"`{method}` adapter"
    body = [
        "",
        f"# {meta['ref']}",
        "",
        f"A {what} with a classification head for the task **{task['name']}** "
        f"(labels: {', '.join(task['label_names'])}), trained with "
        "adapter-registry on a frozen "
        f"`{base['name'] if _is_hub_name(base['name']) else Path(base['name']).name}` "
        f"(revision `{base['revision'][:12]}`, {base['num_layers']} layers, "
        f"hidden size {base['hidden_size']}).",
        "",
        "## Usage",
        "",
    ]
    if is_fusion:
        members = ", ".join(f"`{m['ref']}`" for m in meta.get("members", []))
        body += [
            f"This fusion combines {members}; load those adapters (under the module names in "
            "`registry.json`) before the fusion. With adapter-registry, pull the members first:",
            "",
        ]
    else:
        body += [
            "```python",
            "from adapters import AutoAdapterModel",
            "",
            f"model = AutoAdapterModel.from_pretrained({base['name']!r})",
            f'name = model.load_adapter("{repo_id}", source="hf", use_safetensors=True)',
            "model.set_active_adapters(name)",
            "```",
            "",
            "With adapter-registry (pinned by commit):",
            "",
        ]
    body += ["```", f"adapter-registry pull {repo_id}@<commit>", "```", ""]
    body += ["## Data", ""]
    if meta["datasets"]:
        for d in meta["datasets"]:
            src = d["source"] if _is_hub_name(d["source"]) else Path(d["source"]).name
            body.append(
                f"- `{src}` ({d['split']}, {d['row_count']} rows, "
                f"fingerprint `{d['fingerprint'][:16]}`)"
            )
    else:
        body.append("- not recorded")
    body += [
        "",
        f"Artifact sha256 `{meta['artifact']['sha256']}`; lineage, metrics and the training "
        "run are in `registry.json`.",
        "",
    ]
    return "\n".join(lines + body)
