"""One continual step, in order: drift → plan → train → fuse → evaluate → gate → promote.

Resumable by design, not one transaction: each step commits its own finished, complete
record (the drift report; the adapter version, registered all-or-nothing with its files; the
fusion, likewise; the scores, as metric rows), and every step looks for its own finished result
before doing work, so an ``update`` that failed or was interrupted, re-run with the same data,
reuses the drift report, the adapter version, the fusion and the scores it made instead of
training again. Only the promotion is what the command changes: its rows and the alias move
commit as one transaction (:func:`.promote.promote`), so a failure never leaves a
half-promotion, and the alias moves only at the end. Nothing a failed run left is an orphan:
every kept record is a registered, verifiable version or measurement (#16 finding 9).
The data spec is loaded once, here, and handed down to every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import entities as E
from ..configs import FuseConfig, TrainConfig
from ..data import (
    DataBundle,
    check_labels,
    fingerprint,
    label_distribution,
    load_spec,
    split_validation,
)
from ..errors import InvalidInput
from ..runtime import pick_device
from ..store import Registry
from .common import (
    MATRIX_SPLIT,
    PRODUCTION,
    SELECT_ON,
    absolute_spec,
    current_reference,
    data_source,
    find_dataset,
    pct,
    production_entity,
)
from .drift_check import DriftCheck, check_drift, existing_report, new_split, reused_check
from .evaluate import Score, compare, task_columns
from .fuse_step import fuse_step, replay_step
from .gate import check_gate_metric, choose_gate_metric, gate
from .plan import check_policy, plan_lines, plan_members
from .promote import production_history, promote, record_refusal
from .train_step import train_step


@dataclass
class UpdateOptions:
    """How ``update`` runs: its drift test, training settings, fusion policy and gate.

    Attributes:
        dry_run: compute the drift decision and the plan; write nothing at all.
        train_config: hyper-parameters of the new adapter version (default: ``seed`` only).
        fuse_config: hyper-parameters of the re-fused model (default: ``seed`` only).
        tolerance: the largest drop (absolute, in the gate metric) allowed on any earlier
            validation split.
        gate_noise: an earlier split may also drop by this many standard errors of the current
            model's score on its validation rows, when that is more than ``tolerance`` (small
            splits are noisy; see :mod:`.gate`). 0: ``tolerance`` alone.
        gate_metric: what the gate compares: ``accuracy``, ``macro_f1``, or ``auto`` (macro-F1
            when the new data's validation classes are imbalanced; see :mod:`.gate`).
        members: ``replace`` the task's old version in the fusion, or ``append`` the new one.
        adapter_name: name of the new adapter (default: a new version of the reference's name).
        replay: train the new adapter version (and any re-fused model) on the new data plus a
            sample of the data the task learned earlier (its recorded train snapshots, about as
            many rows as the new data), so it keeps what the task knew instead of drifting
            towards the newest domain only. On by default (benchmarks/RESULTS.md, streams).
        replay_ratio: with replay, how many earlier rows are replayed per new row, in all
            (split evenly over the earlier sources; each gives at most all it has).
        select_on: what the new adapter's (and fusion's) best epoch is chosen on, with replay:
            ``new``, the new data's validation rows; or ``task``, those plus as many rows of
            each earlier validation split of the task (the splits the gate checks), so the
            epoch kept is the one that keeps what the task knew. Without replay: ``new``.
        warm_start: start the new adapter version from the reference version's weights (and
            head) instead of from scratch; it is still a new version (``warm_started_from``
            edge) and the reference is never changed. On by default (measured, like replay).
        alias: the alias to promote (``production``).
        force: promote even when the gate refuses (its verdict is still reported).
    """

    dry_run: bool = False
    alpha: float = 0.05
    seed: int = 0
    n_permutations: int = 500
    train_config: TrainConfig | None = None
    fuse_config: FuseConfig | None = None
    tolerance: float = 0.01
    gate_noise: float = 1.0
    gate_metric: str = "auto"
    members: str = "replace"
    adapter_name: str | None = None
    replay: bool = True
    replay_ratio: float = 1.0
    select_on: str = "new"
    warm_start: bool = True
    alias: str = PRODUCTION
    force: bool = False
    progress: bool = True
    text_fields: tuple[str, ...] | None = None
    label_field: str = "label"

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise InvalidInput(
                f"tolerance must be ≥ 0, got {self.tolerance}.", hint="e.g. --tolerance 0.01"
            )
        if not self.gate_noise >= 0:
            raise InvalidInput(
                f"gate noise must be ≥ 0 standard errors, got {self.gate_noise}.",
                hint="e.g. --gate-noise 1 (or 0 for --tolerance alone)",
            )
        check_policy(self.members)
        if not self.replay_ratio > 0:
            raise InvalidInput(
                f"the replay ratio must be > 0, got {self.replay_ratio}.",
                hint="e.g. --replay-ratio 1 (or --no-replay to replay nothing)",
            )
        if self.select_on not in SELECT_ON:
            raise InvalidInput(
                f"Unknown select_on {self.select_on!r}; valid: {', '.join(SELECT_ON)}.",
                hint="e.g. --select-on task",
            )
        check_gate_metric(self.gate_metric)

    def train(self) -> TrainConfig:
        """Return the new adapter's settings."""
        return self.train_config or TrainConfig(seed=self.seed)

    def fuse(self) -> FuseConfig:
        """Return the fusion's settings."""
        return self.fuse_config or FuseConfig(seed=self.seed)


@dataclass
class UpdateResult:
    """What one ``update`` did (or, with ``dry_run``, would do)."""

    task: str
    dry_run: bool
    drift: DriftCheck
    plan: list[str] = field(default_factory=list)
    adapter: E.AdapterVersion | None = None
    fusion: E.Fusion | None = None
    incumbent: E.Entity | None = None
    scores: list[Score] = field(default_factory=list)
    skipped_columns: list[str] = field(default_factory=list)
    promoted: bool = False
    gate_passed: bool = False
    gate: str = ""
    gate_metric: str | None = None
    gate_metric_reason: str = ""
    step: int | None = None
    reused: list[str] = field(default_factory=list)

    @property
    def candidate(self) -> E.Entity | None:
        """Return the model the gate judged: the new fusion, else the new adapter version."""
        return self.fusion or self.adapter

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "task": self.task,
            "dry_run": self.dry_run,
            "drift": self.drift.to_dict(),
            "plan": self.plan,
            "adapter": self.adapter.ref if self.adapter else None,
            "fusion": self.fusion.ref if self.fusion else None,
            "candidate": self.candidate.ref if self.candidate else None,
            "incumbent": self.incumbent.ref if self.incumbent else None,
            "scores": [s.to_dict() for s in self.scores],
            "skipped_columns": self.skipped_columns,
            "promoted": self.promoted,
            "gate_passed": self.gate_passed,
            "gate": self.gate,
            "gate_metric": self.gate_metric,
            "gate_metric_reason": self.gate_metric_reason,
            "step": self.step,
            "reused": self.reused,
        }


@dataclass
class _Run:
    """What the steps of one update share: the request, loaded once, and the models in play."""

    registry: Registry
    task: E.Task
    spec: Any
    source: str
    bundle: DataBundle
    options: UpdateOptions
    reference: E.AdapterVersion
    production: E.Entity | None
    say: Callable[[str], None]

    @property
    def incumbent(self) -> E.Entity:
        return self.production or self.reference


def update(
    registry: Registry,
    task: str,
    data: Any,
    options: UpdateOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> UpdateResult:
    """Run one continual step for ``task`` on new ``data`` (see :mod:`registry.continual`).

    ``options`` (or keyword ``overrides`` of its fields) say how; ``log`` is called with one
    line per step (the CLI prints them).

    Raises:
        NotFound: the task has no adapter yet (train one first).
        InvalidInput: the data does not fit the task, or an option is out of range.
    """
    opts = dataclasses.replace(options or UpdateOptions(), **overrides)
    task_row = registry.get_task(task)
    spec = absolute_spec(data)
    bundle = load_spec(spec, text_fields=opts.text_fields, label_field=opts.label_field)
    check_labels(bundle, list(task_row.label_names))
    run = _Run(
        registry,
        task_row,
        spec,
        data_source(data),
        bundle,
        opts,
        current_reference(registry, task),
        production_entity(registry, task, opts.alias),
        log or (lambda _msg: None),
    )
    check = _drift(run)
    out = UpdateResult(task, opts.dry_run, check, incumbent=run.incumbent)
    out.reused = [f"drift report #{check.report.id}"] if check.reused and check.report else []
    if not check.drift:
        out.gate = "no drift: nothing to do"
        out.plan.append("no drift: nothing to train")
        return out
    tcfg = opts.train()
    train_rows, val_rows, val_how = split_validation(bundle, tcfg.seed)
    out.plan = plan_lines(
        registry, task, reference=run.reference, production=run.production,
        incumbent=run.incumbent, source=run.source, train_rows=len(bundle.split("train")),
        epochs=tcfg.epochs, validation_how=val_how, warm_start=opts.warm_start,
        replay=opts.replay, select_on=opts.select_on, replay_ratio=opts.replay_ratio,
        policy=opts.members, alias=opts.alias,
        tolerance=opts.tolerance, gate_noise=opts.gate_noise, adapter_name=opts.adapter_name,
    )  # fmt: skip
    if opts.dry_run:
        out.gate = "dry run: nothing written"
        return out
    assert check.report is not None
    mix = _replay(run, train_rows, val_rows)
    out.adapter = train_step(
        registry, task, spec if mix is None else mix, bundle if mix is None else None,
        reference=run.reference, report=check.report, config=tcfg, name=opts.adapter_name,
        warm_start=opts.warm_start, progress=opts.progress, reused=out.reused, say=run.say,
    )  # fmt: skip
    planned = plan_members(
        registry, task, run.production, run.reference, out.adapter.id, opts.members
    )
    if planned is not None:
        out.fusion = fuse_step(
            registry, task_row, spec, bundle, member_ids=planned[0], name=planned[1],
            config=opts.fuse(), mix=mix, progress=opts.progress, reused=out.reused, say=run.say,
        )  # fmt: skip
    _evaluate_gate_promote(run, out, tcfg, val_rows)
    return out


def _replay(run: _Run, train_rows: list[Any], val_rows: list[Any]) -> str | None:
    """Record the new validation rows under the new data's name (the gate's "new data"
    column), then build the replay mix the new adapter trains on (None: no replay)."""
    if val_rows:
        run.registry.record_dataset(
            run.task.id, run.source, MATRIX_SPLIT, len(val_rows), fingerprint(val_rows),
            label_distribution(val_rows),
        )  # fmt: skip
    if not run.options.replay:
        return None
    return replay_step(
        run.registry, run.task, run.bundle, run.source, seed=run.options.seed,
        split=(train_rows, val_rows), select_on=run.options.select_on,
        ratio=run.options.replay_ratio, say=run.say,
    )  # fmt: skip


def _drift(run: _Run) -> DriftCheck:
    """Step 1: reuse the drift report of an interrupted run on the same data, or test now."""
    opts = run.options
    split, rows = new_split(run.bundle)
    ds = find_dataset(run.registry, run.task.id, split, fingerprint(rows))
    report = (
        None
        if opts.dry_run
        else existing_report(run.registry, run.task.name, run.reference, ds, opts.alpha)
    )
    if report is not None:
        run.say(f"drift: reusing report #{report.id} (drift) from an earlier run on this data")
        return reused_check(run.task.name, run.reference, split, rows, ds, report)
    check = check_drift(
        run.registry,
        run.task.name,
        run.spec,
        alpha=opts.alpha,
        seed=opts.seed,
        n_permutations=opts.n_permutations,
        record=not opts.dry_run,
        bundle=run.bundle,
        device=opts.train().device,
    )
    run.say(
        f"drift: {'DRIFT' if check.drift else 'no drift'} against {run.reference.ref}"
        + (f" (report #{check.report.id})" if check.report else "")
    )
    return check


def _evaluate_gate_promote(
    run: _Run, out: UpdateResult, tcfg: TrainConfig, val_rows: list[Any]
) -> None:
    """Steps 5-7: score candidate and incumbent everywhere, apply the gate, promote."""
    registry, opts, task = run.registry, run.options, run.task
    candidate = out.candidate
    assert candidate is not None
    new_val = find_dataset(registry, task.id, MATRIX_SPLIT, fingerprint(val_rows))
    history = production_history(registry, task.name)
    step = (max(s.step for s in history) + 1) if history else 1
    columns = task_columns(registry, task, [tcfg.seed, opts.seed, 0], {run.source: run.bundle})
    out.skipped_columns = [f"{c.name}: {c.note}" for c in columns if not c.examples]
    metric, out.gate_metric_reason = choose_gate_metric(
        opts.gate_metric, (r.label for r in val_rows), task.label_names
    )
    out.gate_metric = metric
    out.scores = compare(
        registry, candidate, run.incumbent, columns, new_val, step=step,
        max_length=tcfg.max_length, device=pick_device(tcfg.device), metric=metric,
    )  # fmt: skip
    run.say(
        f"evaluate ({metric}; {out.gate_metric_reason}): "
        + ", ".join(f"{s.column} {pct(s.candidate)} vs {pct(s.incumbent)}" for s in out.scores)
    )
    out.gate_passed, out.gate = gate(out.scores, opts.tolerance, metric, opts.gate_noise)
    out.promoted = out.gate_passed or opts.force
    if opts.force and not out.gate_passed:
        out.gate = f"forced past the gate, which said: {out.gate}"
    new_id = new_val.id if new_val else None
    if not out.promoted:
        record_refusal(
            registry, opts.alias, candidate, step, new_id, gate_metric=metric, gate_reason=out.gate
        )
        run.say(f"gate: kept {task.name}:{opts.alias} at {run.incumbent.ref}: {out.gate}")
        return
    promote(
        registry, task.name, opts.alias, candidate, run.incumbent, step, new_id,
        first=not history, gate_metric=metric, gate_reason=out.gate,
    )  # fmt: skip
    out.step = step
    run.say(f"promote: {task.name}:{opts.alias} → {candidate.ref}")
