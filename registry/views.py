"""Pure renderers for people: lineage trees, Mermaid graphs, tables of entities."""

from __future__ import annotations

from typing import Any

from . import entities as E


def lineage_tree(graph: dict[str, Any]) -> str:
    """Render a lineage graph as an indented tree: ancestors above the root, descendants below."""
    labels = {n["key"]: f"{n['label']} [{n['kind']}]" for n in graph["nodes"]}
    parents: dict[str, list[tuple[str, str]]] = {}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in graph["edges"]:
        parents.setdefault(e["child"], []).append((e["parent"], e["relation"]))
        children.setdefault(e["parent"], []).append((e["child"], e["relation"]))
    root = graph["root"]
    lines = [labels[root]]

    def walk(
        key: str, links: dict[str, list[tuple[str, str]]], arrow: str, prefix: str, seen: set[str]
    ) -> None:
        items = links.get(key, [])
        for i, (other, relation) in enumerate(items):
            last = i == len(items) - 1
            branch = "└── " if last else "├── "
            lines.append(f"{prefix}{branch}{arrow} {relation}: {labels.get(other, other)}")
            if other not in seen:
                walk(other, links, arrow, prefix + ("    " if last else "│   "), seen | {other})

    if parents.get(root):
        lines.append("ancestors:")
        walk(root, parents, "⟵", "", {root})
    if children.get(root):
        lines.append("descendants:")
        walk(root, children, "⟶", "", {root})
    if len(lines) == 1:
        lines.append("(no lineage edges)")
    return "\n".join(lines)


def lineage_mermaid(graph: dict[str, Any]) -> str:
    """Render a lineage graph as a Mermaid flowchart (parents point at children)."""
    ids = {n["key"]: f"n{i}" for i, n in enumerate(graph["nodes"])}
    shapes = {"adapter": ("[", "]"), "fusion": ("{{", "}}"), "drift": ("([", "])")}
    lines = ["graph TD"]
    for n in graph["nodes"]:
        left, right = shapes.get(n["kind"], ("(", ")"))
        label = n["label"].replace('"', "'")
        lines.append(f'    {ids[n["key"]]}{left}"{label}"{right}')
    for e in graph["edges"]:
        lines.append(f"    {ids[e['parent']]} -->|{e['relation']}| {ids[e['child']]}")
    root = ids[graph["root"]]
    lines.append(f"    style {root} stroke-width:3px")
    return "\n".join(lines)


def entity_summary(entity: E.Entity) -> dict[str, Any]:
    """Return the one-line facts of an adapter version or fusion, for tables and JSON."""
    data: dict[str, Any] = {
        "id": entity.uid,
        "ref": entity.ref,
        "name": entity.name,
        "version": entity.version,
        "kind": entity.kind,
        "task": entity.task,
        "status": entity.status,
        "trainable_params": entity.trainable_params,
        "artifact_sha256": entity.artifact_sha256,
        "created_at": E.jsonable(entity.created_at),
    }
    if isinstance(entity, E.AdapterVersion):
        data["method"] = entity.method
    else:
        data["members"] = list(entity.members)
    return data


def human_count(n: int) -> str:
    """Format a parameter count (12345 → 12.3k)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
