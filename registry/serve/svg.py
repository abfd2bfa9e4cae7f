"""Inline SVG drawings for the UI: the lineage graph, the accuracy matrix, forgetting bars.

Drawn on the server, so the pages need no JavaScript and no network. Pure functions over
plain data; every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y = 170, 34, 30, 70
COLORS = {"adapter": "#dbeafe", "fusion": "#fde68a", "drift": "#fecaca", "hub": "#d1fae5"}


def _layers(graph: dict[str, Any]) -> dict[str, int]:
    """Return each node's depth: 0 for nodes without parents, else 1 + the deepest parent."""
    parents: dict[str, list[str]] = {n["key"]: [] for n in graph["nodes"]}
    for e in graph["edges"]:
        parents.setdefault(e["child"], []).append(e["parent"])
    depth: dict[str, int] = {}

    def visit(key: str, seen: frozenset[str]) -> int:
        if key in depth:
            return depth[key]
        ps = [p for p in parents.get(key, []) if p not in seen]  # a cycle never loops here
        d = 0 if not ps else 1 + max(visit(p, seen | {key}) for p in ps)
        depth[key] = d
        return d

    for key in parents:
        visit(key, frozenset())
    return depth


def lineage_svg(graph: dict[str, Any], link: Callable[[dict[str, Any]], str | None]) -> str:
    """Draw a lineage graph top-down (parents above children), each node a link when known."""
    depth = _layers(graph)
    rows: dict[int, list[dict[str, Any]]] = {}
    for node in sorted(graph["nodes"], key=lambda n: (n["kind"], n["id"])):
        rows.setdefault(depth[node["key"]], []).append(node)
    widest = max((len(r) for r in rows.values()), default=1)
    width = widest * (NODE_W + GAP_X) + GAP_X
    height = (max(rows, default=0) + 1) * (NODE_H + GAP_Y) + GAP_Y // 2
    pos: dict[str, tuple[float, float]] = {}
    for d, nodes in rows.items():
        offset = (width - len(nodes) * (NODE_W + GAP_X) + GAP_X) / 2
        for i, node in enumerate(nodes):
            pos[node["key"]] = (offset + i * (NODE_W + GAP_X), GAP_Y / 2 + d * (NODE_H + GAP_Y))
    out = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        'aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for e in graph["edges"]:
        if e["parent"] not in pos or e["child"] not in pos:
            continue
        (px, py), (cx, cy) = pos[e["parent"]], pos[e["child"]]
        x1, y1, x2, y2 = px + NODE_W / 2, py + NODE_H, cx + NODE_W / 2, cy
        out.append(
            f'<line class="edge" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
            'stroke="#555" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text class="relation" x="{(x1 + x2) / 2:.0f}" y="{(y1 + y2) / 2:.0f}" '
            f'font-size="10" fill="#555" text-anchor="middle">{escape(e["relation"])}</text>'
        )
    for node in graph["nodes"]:
        x, y = pos[node["key"]]
        is_root = node["key"] == graph.get("root")
        fill = COLORS.get(node["kind"], "#eee")
        stroke = 'stroke="#111" stroke-width="3"' if is_root else 'stroke="#666"'
        body = (
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{fill}" {stroke}/>'
            f'<text class="node" x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 4:.0f}" '
            f'font-size="12" text-anchor="middle">{escape(node["label"][:26])}</text>'
        )
        href = link(node)
        if href:
            body = f'<a href="{escape(href)}">{body}</a>'
        out.append(f'<g class="node {escape(node["kind"])}">{body}</g>')
    out.append("</svg>")
    return "".join(out)


def _cell_color(v: float) -> str:
    if not math.isfinite(v):
        return "#f3f4f6"
    # white (0) → green (1)
    g = int(255 - 120 * v)
    r = int(255 - 200 * v)
    return f"rgb({r},{g + 0},{int(255 - 180 * v)})"


def heatmap_svg(values: Sequence[Sequence[float]], rows: list[str], cols: list[str]) -> str:
    """Draw a matrix of values in [0, 1] as labelled, coloured cells with their numbers."""
    cell_w, cell_h, left, top = 90, 30, 190, 60
    width = left + cell_w * len(cols) + 10
    height = top + cell_h * len(rows) + 10
    out = [
        f'<svg class="matrix" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="accuracy matrix">'
    ]
    for j, name in enumerate(cols):
        x = left + j * cell_w + cell_w / 2
        out.append(
            f'<text x="{x:.0f}" y="{top - 10}" font-size="11" text-anchor="middle">'
            f"{escape(name[:14])}</text>"
        )
    for i, name in enumerate(rows):
        y = top + i * cell_h
        out.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.0f}" font-size="11" '
            f'text-anchor="end">{escape(name[:28])}</text>'
        )
        for j in range(len(cols)):
            v = float(values[i][j])
            x = left + j * cell_w
            label = f"{v:.3f}" if math.isfinite(v) else "–"
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" '
                f'fill="{_cell_color(v)}" stroke="#fff"/>'
                f'<text class="cell" x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" '
                f'font-size="12" text-anchor="middle">{label}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def bars_svg(values: dict[str, float], title: str) -> str:
    """Draw one horizontal bar per name (forgetting: higher is worse), with the number."""
    bar_h, left, scale = 24, 190, 300
    items = [(k, v) for k, v in values.items() if v is not None and math.isfinite(v)]
    height = 30 + bar_h * max(len(items), 1)
    top = max([abs(v) for _, v in items] + [0.01])
    out = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{left + scale + 80}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    if not items:
        out.append('<text x="4" y="44" font-size="12">(needs two or more steps)</text>')
    for i, (name, v) in enumerate(items):
        y = 26 + i * bar_h
        w = abs(v) / top * scale
        color = "#ef4444" if v > 0 else "#22c55e"
        out.append(
            f'<text x="{left - 8}" y="{y + 15}" font-size="11" text-anchor="end">'
            f"{escape(name[:28])}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 8}" fill="{color}"/>'
            f'<text class="value" x="{left + w + 6:.1f}" y="{y + 15}" font-size="11">'
            f"{v:+.3f}</text>"
        )
    out.append("</svg>")
    return "".join(out)
