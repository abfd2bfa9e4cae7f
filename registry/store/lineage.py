"""Lineage: the walk over edges and the graph it returns, shared by every reader. Pure.

A node is ``(kind, id)``: an adapter version, fusion, drift report, Hub link or dataset. The
walk goes up (parents) and down (children) from a root, breadth first, to ``max_depth`` steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .mappers import Row

Node = tuple[str, int]
Direction = Literal["up", "down"]


@dataclass(frozen=True)
class LineageNode:
    """One node of a lineage graph, with its human label (``name@version`` etc.)."""

    kind: str
    id: int
    label: str

    @property
    def key(self) -> str:
        """Return ``kind:id``."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class LineageLink:
    """One edge: ``parent`` → ``child`` (node keys) and why."""

    parent: str
    child: str
    relation: str


@dataclass(frozen=True)
class LineageGraph:
    """The ancestors and descendants of a root node."""

    root: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageLink, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return ``{root, nodes, edges}`` as the CLI, views and serve render it."""
        return {
            "root": self.root,
            "nodes": [
                {"key": n.key, "kind": n.kind, "id": n.id, "label": n.label} for n in self.nodes
            ],
            "edges": [
                {"parent": e.parent, "child": e.child, "relation": e.relation} for e in self.edges
            ],
        }


def walk(
    root: Node,
    edges_at: Callable[[Direction, Node], Iterable[Row]],
    label: Callable[[str, int], str],
    max_depth: int = 1000,
) -> LineageGraph:
    """Walk up and down from ``root``; return the graph.

    ``edges_at("up", node)`` returns the edge rows whose child is ``node``, ``("down", node)``
    those whose parent is; rows carry ``id``, ``parent_kind``/``parent_id``,
    ``child_kind``/``child_id`` and ``relation``. ``label(kind, id)`` names a node.
    """
    edges: dict[int, Row] = {}
    for direction, far in (("up", "parent"), ("down", "child")):
        seen = {root}
        queue: deque[tuple[Node, int]] = deque([(root, 0)])
        while queue:
            node, depth = queue.popleft()
            if depth >= max_depth:
                continue
            for edge in edges_at(direction, node):  # type: ignore[arg-type]
                edges[edge["id"]] = edge
                nxt = (edge[f"{far}_kind"], edge[f"{far}_id"])
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, depth + 1))
    keys = {root}
    for e in edges.values():
        keys.add((e["parent_kind"], e["parent_id"]))
        keys.add((e["child_kind"], e["child_id"]))
    return LineageGraph(
        root=f"{root[0]}:{root[1]}",
        nodes=tuple(LineageNode(k, i, label(k, i)) for k, i in sorted(keys)),
        edges=tuple(
            LineageLink(
                f"{e['parent_kind']}:{e['parent_id']}",
                f"{e['child_kind']}:{e['child_id']}",
                e["relation"],
            )
            for e in sorted(edges.values(), key=lambda e: e["id"])
        ),
    )
