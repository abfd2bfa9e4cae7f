"""The model card's text (README.md of a pushed repo): metrics, members, lineage, usage and data
sections, written from the ``registry.json`` metadata."""

from __future__ import annotations

from typing import Any

from .cards import _MAIN_METRICS, _card_data, final_metrics


def _node_text(node: dict[str, Any]) -> str:
    return f"`{node['label']}`"


def _hub_url(endpoint: str, repo_id: str, commit: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo_id}/tree/{commit}"


def model_card(
    meta: dict[str, Any],
    repo_id: str,
    *,
    license_id: str | None = None,
    endpoint: str = "https://huggingface.co",
) -> str:
    """Return a README.md model card (YAML front matter + prose) for a ``registry.json`` document.

    The front matter is made by ``huggingface_hub.ModelCardData``: ``library_name: adapters``,
    ``pipeline_tag``, ``license``, ``base_model`` with ``base_model_relation: adapter`` when the
    base's Hub id is known, ``datasets`` (Hub ids only) and a ``model-index`` with one entry per
    dataset and split. The body shows metrics, lineage and, for a fusion, each member's repo
    and commit, linked under ``endpoint``.
    """
    task = meta["task"]
    base = meta["base_model"]
    is_fusion = meta["kind"] == "fusion"
    method = "adapter-fusion" if is_fusion else str(meta.get("method") or "adapter")
    front: str = _card_data(meta, license_id).to_yaml()
    hub_id = base.get("hub_id")
    base_text = f"[`{hub_id}`]({endpoint.rstrip('/')}/{hub_id})" if hub_id else f"`{base['name']}`"
    if hub_id and hub_id != base["name"]:
        base_text += f" (a local copy, folder `{base['name']}`)"
    what = "An AdapterFusion layer" if is_fusion else f"A `{method}` adapter"
    body = [
        "",
        f"# {meta['ref']}",
        "",
        f"{what} with a classification head for the task **{task['name']}** "
        f"(labels: {', '.join(task['label_names'])}), trained with adapter-registry on the "
        f"frozen base model {base_text}: {base['num_layers']} layers, hidden size "
        f"{base['hidden_size']}, revision `{str(base['revision'])[:12]}`"
        + (" (sha256 of its weight files)." if not hub_id or hub_id != base["name"] else "."),
        "",
    ]
    body += _metrics_section(meta)
    body += _members_section(meta, endpoint) if is_fusion else []
    body += _lineage_section(meta)
    body += _usage_section(meta, repo_id, hub_id)
    body += _data_section(meta)
    body += [
        f"Artifact sha256 `{meta['artifact']['sha256']}`; the full record (training run, "
        "lineage graph, dataset fingerprints) is in `registry.json`.",
        "",
    ]
    return "---\n" + front + "\n---\n" + "\n".join(body)


def _metrics_section(meta: dict[str, Any]) -> list[str]:
    table = final_metrics(meta)
    if not table:
        return ["## Metrics", "", "No evaluation recorded.", ""]
    names = sorted({n for v in table.values() for n in v})
    names = [n for n in _MAIN_METRICS if n in names] + [n for n in names if n not in _MAIN_METRICS]
    order = {"train": 0, "validation": 1, "test": 2}
    lines = ["## Metrics", "", "| dataset | split | " + " | ".join(names) + " |"]
    lines.append("|---|---|" + "---|" * len(names))
    for (ds, split), values in sorted(
        table.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9), kv[0][1])
    ):
        cells = [f"{values[n]:.4f}" if n in values else "" for n in names]
        lines.append(f"| {ds} | {split} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _members_section(meta: dict[str, Any], endpoint: str) -> list[str]:
    lines = ["## Members", ""]
    for m in meta.get("members") or []:
        links = m.get("hub") or []
        if links:
            last = links[-1]
            url = _hub_url(endpoint, last["repo_id"], last["commit_sha"])
            lines.append(
                f"- `{m['ref']}` (module `{m.get('module_name', '')}`): "
                f"[{last['repo_id']}@{last['commit_sha'][:12]}]({url}), commit "
                f"`{last['commit_sha']}`"
            )
        else:
            lines.append(
                f"- `{m['ref']}` (module `{m.get('module_name', '')}`): not on the Hub; push it, "
                "then push this fusion again"
            )
    return [*lines, ""]


def _lineage_section(meta: dict[str, Any]) -> list[str]:
    graph = meta.get("lineage") or {}
    nodes = {n["key"]: n for n in graph.get("nodes") or []}
    edges = graph.get("edges") or []
    lines = ["## Lineage", ""]
    if not edges:
        return [*lines, f"`{meta['ref']}` has no recorded parents or children.", ""]
    words = {
        "fused_from": "is fused into",
        "warm_started_from": "warm-started",
        "trained_after_drift": "triggered the training of",
        "pulled_from_hub": "was pulled as",
    }
    for e in edges:
        parent, child = nodes.get(e["parent"]), nodes.get(e["child"])
        if parent is None or child is None:
            continue
        verb = words.get(e["relation"], e["relation"])
        lines.append(f"- {_node_text(parent)} {verb} {_node_text(child)}")
    return [*lines, ""]


def _usage_section(meta: dict[str, Any], repo_id: str, hub_id: str | None) -> list[str]:
    base = meta["base_model"]
    lines = ["## Usage", ""]
    if meta["kind"] == "fusion":
        members = ", ".join(f"`{m['ref']}`" for m in meta.get("members", []))
        lines += [
            f"This fusion combines {members}; load those adapters (under the module names "
            "above) before the fusion. adapter-registry pulls the members with it:",
            "",
        ]
    else:
        where = repr(hub_id) if hub_id else repr(f"path/to/{base['name']}")
        lines += [
            "```python",
            "from adapters import AutoAdapterModel",
            "",
            f"model = AutoAdapterModel.from_pretrained({where})",
            f'name = model.load_adapter("{repo_id}", source="hf", use_safetensors=True)',
            "model.set_active_adapters(name)",
            "```",
            "",
        ]
        if not hub_id:
            lines += [
                f"The base model is a local folder (`{base['name']}`, weights sha256 "
                f"`{str(base['revision'])[:12]}`…); use your copy of it.",
                "",
            ]
        lines += ["With adapter-registry (pinned by commit):", ""]
    base_opt = "" if hub_id == base["name"] else " --base FOLDER_OF_THE_BASE_MODEL"
    lines += ["```", f"adapter-registry pull {repo_id}@<commit>{base_opt}", "```", ""]
    return lines


def _data_section(meta: dict[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    if not meta["datasets"]:
        return [*lines, "- not recorded", ""]
    for d in meta["datasets"]:
        hub = f" (Hub dataset `{d['hub_id']}`)" if d.get("hub_id") else ""
        lines.append(
            f"- `{d['source']}`{hub}: {d['split']}, {d['row_count']} rows, fingerprint "
            f"`{str(d['fingerprint'])[:16]}`"
        )
    return [*lines, ""]
