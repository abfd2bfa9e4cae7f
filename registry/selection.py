"""Choosing and comparing versions by their recorded metrics: ``list --where/--sort``, ``compare``.

Metric keys (``list --where``, ``--sort``) name one recorded evaluation of a version:

- ``METRIC`` (``accuracy``, ``macro_f1``, ``f1/positive``): the latest evaluation of that metric
  on any recorded data split;
- ``SPLIT:METRIC`` (``test:accuracy``): the latest on that split;
- ``DATA:SPLIT:METRIC`` (``mds_books:validation:macro_f1``): on one data set, named as ``report``
  names its columns (the data folder's or file's name), or ``d<ID>`` for a snapshot id.

Only evaluations count (rows tied to a data snapshot: train's final scores, ``eval``,
``update``'s scoring); the per-epoch curves of training do not. Everything but :func:`compare`
is pure (the callers fetch the rows).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import EXTENSIONS, SPLIT_NAMES
from .errors import InvalidInput

if TYPE_CHECKING:
    from .store import Registry

#: A metric row with the source of the data it was measured on (None: no snapshot).
MetricRow = tuple[E.Metric, str | None]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_WHERE_RE = re.compile(r"^\s*(?P<key>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|=|>|<)\s*(?P<value>\S+)\s*$")
KEY_HELP = (
    "METRIC (latest evaluation on any split), SPLIT:METRIC, or DATA:SPLIT:METRIC where DATA "
    "is the data folder/file name or dID"
)


def data_name(source: str | None, dataset_id: int | None) -> str:
    """Return the short name of a data source (``.../mds_books`` → ``mds_books``)."""
    if not source:
        return f"d{dataset_id}" if dataset_id is not None else ""
    path = Path(source)
    if path.suffix.lower() in EXTENSIONS:
        return path.parent.name if path.stem.lower() in SPLIT_NAMES else path.stem
    return path.name or source


@dataclass(frozen=True)
class MetricKey:
    """A parsed metric key: which metric, optionally on which split and data."""

    metric: str
    split: str | None = None
    data: str | None = None

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        """Parse ``METRIC``, ``SPLIT:METRIC`` or ``DATA:SPLIT:METRIC``."""
        parts = text.strip().split(":")
        if not all(parts) or len(parts) > 3:
            raise InvalidInput(
                f"Invalid metric key {text!r}: use {KEY_HELP}.",
                hint="e.g. --where 'accuracy>0.8' or --sort validation:macro_f1",
            )
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 2:
            return cls(parts[1], split=parts[0])
        return cls(parts[2], split=parts[1], data=parts[0])

    def matches(self, metric: E.Metric, source: str | None) -> bool:
        """Return True if ``metric`` (measured on ``source``) is a value of this key."""
        if metric.dataset_id is None or metric.name != self.metric:
            return False
        if self.split is not None and metric.split != self.split:
            return False
        if self.data is None:
            return True
        return self.data in (f"d{metric.dataset_id}", data_name(source, metric.dataset_id))

    def value(self, rows: Sequence[MetricRow]) -> float | None:
        """Return the latest recorded value of this key among ``rows`` (None: never measured)."""
        found = [m for m, src in rows if self.matches(m, src)]
        return max(found, key=lambda m: (m.created_at, m.id)).value if found else None


@dataclass(frozen=True)
class Condition:
    """One ``--where`` condition: ``KEY OP NUMBER``."""

    key: MetricKey
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parse ``accuracy>0.8``, ``test:macro_f1 >= 0.7`` ..."""
        m = _WHERE_RE.match(text)
        value = None
        if m:
            try:
                value = float(m["value"])
            except ValueError:
                value = None
        if m is None or value is None or value != value:
            raise InvalidInput(
                f"Invalid condition {text!r}: write KEY OP NUMBER with OP one of "
                f">, >=, <, <=, ==, != and KEY {KEY_HELP}.",
                hint="e.g. --where 'accuracy>0.8' --where 'test:macro_f1>=0.7'",
            )
        return cls(MetricKey.parse(m["key"]), m["op"], value)

    def holds(self, rows: Sequence[MetricRow]) -> bool:
        """Return True if the key was measured and its value satisfies the condition."""
        value = self.key.value(rows)
        return value is not None and _OPS[self.op](value, self.threshold)


def select_entities(
    entities: Sequence[E.Entity],
    metrics: Mapping[tuple[str, int], Sequence[MetricRow]],
    tags: Mapping[tuple[str, int], Sequence[str]],
    *,
    tag: Sequence[str] = (),
    where: Sequence[str] = (),
    sort: str | None = None,
) -> list[E.Entity]:
    """Keep the entities with every tag in ``tag`` and every ``where`` condition true.

    ``sort``: a metric key; highest value first, versions never measured last.
    """
    conditions = [Condition.parse(w) for w in where]
    key = MetricKey.parse(sort) if sort else None
    out = [
        e
        for e in entities
        if all(t in tags.get((e.kind, e.id), ()) for t in tag)
        and all(c.holds(metrics.get((e.kind, e.id), ())) for c in conditions)
    ]
    if key is not None:
        values = {(e.kind, e.id): key.value(metrics.get((e.kind, e.id), ())) for e in out}
        out.sort(key=lambda e: -(v) if (v := values[(e.kind, e.id)]) is not None else float("inf"))
    return out


# ---------------------------------------------------------------------- compare
def latest_evaluations(rows: Sequence[MetricRow]) -> dict[tuple[str, str, str], float]:
    """Return ``(data, split, metric)`` → latest value, over the evaluation rows only."""
    out: dict[tuple[str, str, str], tuple[Any, float]] = {}
    for m, source in rows:
        if m.dataset_id is None:
            continue
        k = (data_name(source, m.dataset_id), m.split or "", m.name)
        stamp = (m.created_at, m.id)
        if k not in out or stamp >= out[k][0]:
            out[k] = (stamp, m.value)
    return {k: v for k, (_, v) in out.items()}


def metric_table(a: Sequence[MetricRow], b: Sequence[MetricRow]) -> list[dict[str, Any]]:
    """Return the latest evaluations of two versions side by side, per data, split and metric."""
    va, vb = latest_evaluations(a), latest_evaluations(b)
    rows = []
    for data, split, metric in sorted(set(va) | set(vb)):
        x, y = va.get((data, split, metric)), vb.get((data, split, metric))
        rows.append(
            {
                "data": data,
                "split": split,
                "metric": metric,
                "a": x,
                "b": y,
                "diff": None if x is None or y is None else y - x,
            }
        )
    return rows


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested dicts into dotted keys (lists stay values)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the keys whose values differ: ``[{key, a, b}]`` (a missing key is None)."""
    fa, fb = flatten("", dict(a), {}), flatten("", dict(b), {})
    return [
        {"key": k, "a": fa.get(k), "b": fb.get(k)}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


def ancestors(graph: Mapping[str, Any]) -> dict[str, str]:
    """Return the ancestors of a lineage graph's root: node key → label."""
    labels = {n["key"]: n["label"] for n in graph["nodes"]}
    parents: dict[str, list[str]] = {}
    for e in graph["edges"]:
        parents.setdefault(e["child"], []).append(e["parent"])
    seen: dict[str, str] = {}
    todo = list(parents.get(graph["root"], []))
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen[key] = labels.get(key, key)
        todo.extend(parents.get(key, []))
    return seen


def lineage_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return the ancestors both versions share, and those of only one of them (labels)."""
    xa, xb = ancestors(a), ancestors(b)
    return {
        "shared": sorted(xa[k] for k in set(xa) & set(xb)),
        "only_a": sorted(xa[k] for k in set(xa) - set(xb)),
        "only_b": sorted(xb[k] for k in set(xb) - set(xa)),
    }


def recipe(registry: Registry, entity: E.Entity) -> dict[str, Any]:
    """Return what made a version, for :func:`config_diff`: base, method, config, training."""
    base = registry.get_base_model(entity.base_model_id)
    out: dict[str, Any] = {"base_model": f"{base.name}@{base.revision[:12]}"}
    if isinstance(entity, E.AdapterVersion):
        out["method"] = entity.method
    else:
        out["members"] = list(entity.members)
        out["head"] = entity.head
    out["config"] = entity.config
    if entity.training_run_id is not None:
        run = registry.training_run(entity.training_run_id)
        out["training"] = {**run.hyperparams, "seed": run.seed}
    return out


def compare(registry: Registry, ref_a: str, ref_b: str) -> dict[str, Any]:
    """Return two versions side by side: metrics per data and split, recipe diff, lineage diff."""
    a, b = registry.resolve(ref_a), registry.resolve(ref_b)
    rows = registry.metrics_of([a, b])
    tags = registry.tags_of([a, b])
    return {
        "a": {"ref": a.ref, "id": a.uid, "task": a.task, "tags": tags[(a.kind, a.id)]},
        "b": {"ref": b.ref, "id": b.uid, "task": b.task, "tags": tags[(b.kind, b.id)]},
        "metrics": metric_table(rows[(a.kind, a.id)], rows[(b.kind, b.id)]),
        "config": config_diff(recipe(registry, a), recipe(registry, b)),
        "lineage": lineage_diff(registry.lineage(a), registry.lineage(b)),
    }
