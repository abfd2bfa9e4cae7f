"""The continual step: drift check → new adapter → re-fuse → evaluate → gate → promote.

Nothing here changes a registered adapter. New data that drifted from the task's current adapter
gets a NEW adapter version (``trained_after_drift``); the task's fusion is re-trained over the
members with that version swapped in (or appended); the candidate and the current production model
are scored on every validation split the task has seen; and ``TASK:production`` moves only when
the candidate wins on the new data and no earlier split loses more than ``tolerance``.

How the history is kept (no extra tables, so ``report`` can rebuild the accuracy matrix):

- ``accuracy`` metric rows with ``split="validation"`` and a ``dataset_id`` are the score of an
  entity on that validation snapshot. Entities are immutable, so one row per (entity, dataset) is
  the value for ever; ``step`` is the update number that measured it.
- A ``promoted_step`` metric row (value = step number, ``dataset_id`` = the validation snapshot of
  the data learned at that step) marks each production model in order. Step 0 is the production
  model before the first update.

Every step looks for its own finished result before doing work, so an interrupted ``update`` re-run
with the same data reuses the drift report, the adapter version and the fusion it already made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import EXTENSIONS, SPLIT_NAMES, DataBundle, Example, fingerprint, label_distribution
from .errors import InvalidInput, NotFound, RegistryError
from .store import MetricIn, Registry

if TYPE_CHECKING:
    from .configs import TrainConfig
    from .drift import DriftResult
    from .evaluate import AccuracyMatrix

PRODUCTION = "production"
MATRIX_METRIC = "accuracy"
MATRIX_SPLIT = "validation"
STEP_METRIC = "promoted_step"
MEMBER_POLICIES = ("replace", "append")


# ---------------------------------------------------------------------- which model is current
def production_entity(registry: Registry, task: str, alias: str = PRODUCTION) -> E.Entity | None:
    """Return what ``TASK:alias`` points at, or None when the alias is not set."""
    registry.get_task(task)
    try:
        return registry.resolve(f"{task}:{alias}")
    except NotFound:
        return None


def current_reference(
    registry: Registry, task: str, reference: str | None = None
) -> E.AdapterVersion:
    """Return the adapter version whose reference profile new data of ``task`` is compared with.

    ``TASK:production`` if it is an adapter; the task's own member if it is a fusion; else the
    latest active adapter version of the task. ``reference`` (a REF) overrides the choice.
    """
    task_row = registry.get_task(task)
    entity = registry.resolve(reference) if reference else production_entity(registry, task)
    if isinstance(entity, E.AdapterVersion):
        if entity.task_id != task_row.id:
            raise InvalidInput(
                f"{entity.ref} belongs to task {entity.task!r}, not {task!r}.",
                hint=f"Run: adapter-registry list --task {task}",
            )
        return entity
    if isinstance(entity, E.Fusion):
        own = [registry.get_adapter_version(i) for i in entity.member_ids]
        own = [v for v in own if v.task_id == task_row.id]
        if own:
            return max(own, key=lambda v: v.id)
        if reference:
            raise InvalidInput(
                f"{entity.ref} has no member adapter of task {task!r} to compare with.",
                hint="Name an adapter version of the task: --reference NAME@VERSION",
            )
    versions = [
        e
        for e in registry.list_entities(task=task, kind="adapter", include_deprecated=False)
        if isinstance(e, E.AdapterVersion)
    ]
    if not versions:
        raise NotFound(
            f"Task {task!r} has no active adapter to compare new data with.",
            hint=f"Train one first: adapter-registry train {task} --data SPEC --base MODEL",
        )
    return versions[-1]


# ---------------------------------------------------------------------- drift
@dataclass
class DriftCheck:
    """The outcome of a drift check: what was compared, the tests, and the recorded report."""

    task: str
    reference: E.AdapterVersion
    split: str
    rows: int
    fingerprint: str
    result: DriftResult
    dataset: E.Dataset | None = None
    report: E.DriftReport | None = None
    reused: bool = False

    @property
    def drift(self) -> bool:
        """Return the overall decision."""
        return self.result.drift

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "task": self.task,
            "drift": self.drift,
            "reference": self.reference.ref,
            "split": self.split,
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "report_id": self.report.id if self.report else None,
            "dataset_id": self.dataset.id if self.dataset else None,
            "reused": self.reused,
            **{k: v for k, v in self.result.to_dict().items() if k != "drift"},
        }


def data_source(data: Any) -> str:
    """Return how a data spec is recorded: an absolute path for local files, else the spec."""
    from .data import spec_label

    return spec_label(data)


def _spec(data: Any) -> Any:
    # Pass local paths on as absolute paths, so recorded sources reload from any folder.
    if isinstance(data, str | Path) and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())
    return data


def _new_split(bundle: DataBundle) -> tuple[str, list[Example]]:
    if "train" in bundle.splits:
        return "train", bundle.splits["train"]
    if len(bundle.splits) == 1:
        name, rows = next(iter(bundle.splits.items()))
        return name, rows
    raise InvalidInput(
        f"{bundle.source} has no train split (splits: {', '.join(bundle.splits)}).",
        hint="Give a file, or a folder with train.jsonl.",
    )


def _max_length(registry: Registry, version: E.AdapterVersion) -> int:
    if version.training_run_id is None:
        return 256
    run = registry.training_run(version.training_run_id)
    return int(run.hyperparams.get("max_length", 256))


def _find_dataset(registry: Registry, task_id: int, split: str, fp: str) -> E.Dataset | None:
    for ds in registry.list_datasets(task_id):
        if ds.split == split and ds.fingerprint == fp:
            return ds
    return None


def check_drift(
    registry: Registry,
    task: str,
    data: Any,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 500,
    reference: str | None = None,
    record: bool = True,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    bundle: DataBundle | None = None,
    device: str = "auto",
) -> DriftCheck:
    """Compare new data of ``task`` with the reference profile of its current adapter.

    The new data's ``train`` split (or its only split) is profiled on the frozen base encoder the
    same way the reference was, on ``device`` (``auto``: a GPU when there is one). With
    ``record`` the data snapshot and the report are stored.

    Raises:
        NotFound: the task or its adapter does not exist.
        InvalidInput: the reference adapter has no profile, or the data is unusable.
    """
    from .data import load_spec
    from .drift import detect_drift
    from .loader import load_backbone_for
    from .profiles import build_profile, load_profile
    from .runtime import pick_device

    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha}.", hint="e.g. --alpha 0.05")
    device = pick_device(device)  # refuse a missing GPU before reading any data
    task_row = registry.get_task(task)
    ref = current_reference(registry, task, reference)
    folder = registry.profile_path(ref)
    if folder is None:
        raise InvalidInput(
            f"{ref.ref} has no reference profile to compare new data with.",
            hint=f"Train a new version: adapter-registry train {task} --data SPEC --base MODEL",
        )
    ref_profile = load_profile(folder)
    if bundle is None:
        bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    split, rows = _new_split(bundle)
    if not rows:
        raise InvalidInput(f"The {split} split of {bundle.source} is empty.")
    fp = fingerprint(rows)
    backbone = load_backbone_for(registry, ref, device)
    new_profile = build_profile(
        backbone, rows, dataset_fingerprint=fp, seed=seed, max_length=_max_length(registry, ref)
    )
    result = detect_drift(
        ref_profile, new_profile, alpha=alpha, seed=seed, n_permutations=n_permutations
    )
    check = DriftCheck(task, ref, split, len(rows), fp, result)
    if record:
        labelled = [e for e in rows if e.label is not None]
        check.dataset = registry.record_dataset(
            task_row.id, data_source(data), split, len(rows), fp, label_distribution(labelled)
        )
        check.report = registry.record_drift_report(
            task=task,
            reference_adapter_version_id=ref.id,
            new_dataset_id=check.dataset.id,
            alpha=alpha,
            tests=[
                {**t.to_dict(), "seed": seed, "per_test_alpha": result.per_test_alpha}
                for t in result.tests
            ],
            drift=result.drift,
        )
    return check


# ---------------------------------------------------------------------- evaluation
@dataclass
class Column:
    """One validation snapshot of the task: a column of the accuracy matrix."""

    dataset: E.Dataset
    name: str
    examples: list[Example] | None
    note: str = ""


def domain_name(source: str) -> str:
    """Return a short column name for a data source (``.../mds_books`` → ``mds_books``)."""
    path = Path(source)
    if path.suffix.lower() in EXTENSIONS:
        return path.parent.name if path.stem.lower() in SPLIT_NAMES else path.stem
    return path.name or source


def _validation_rows(ds: E.Dataset, seeds: list[int]) -> tuple[list[Example] | None, str]:
    """Reload a validation snapshot from its source; None (with why) if it cannot be matched."""
    from .data import load_spec, split_validation
    from .errors import RegistryError

    try:
        bundle = load_spec(ds.source)
    except RegistryError as err:
        return None, f"cannot reload {ds.source}: {err}"
    candidates = []
    if "validation" in bundle.splits:
        candidates.append(bundle.splits["validation"])
    if "train" in bundle.splits:
        candidates.extend(split_validation(bundle, s)[1] for s in dict.fromkeys(seeds))
    for rows in candidates:
        if rows and fingerprint(rows) == ds.fingerprint:
            return rows, ""
    return None, f"{ds.source} changed since it was recorded (fingerprint differs)"


def task_columns(registry: Registry, task: E.Task, seeds: list[int]) -> list[Column]:
    """Return every validation snapshot of ``task`` that can be reloaded, oldest first."""
    out: list[Column] = []
    names: set[str] = set()
    for ds in registry.list_datasets(task.id):
        if ds.split != MATRIX_SPLIT:
            continue
        rows, note = _validation_rows(ds, seeds)
        name = domain_name(ds.source)
        if name in names:
            name = f"{name}#{ds.id}"
        names.add(name)
        out.append(Column(ds, name, rows, note))
    return out


def evaluate_entity(
    registry: Registry,
    entity: E.Entity,
    columns: list[Column],
    *,
    max_length: int = 256,
    device: str = "cpu",
) -> dict[int, float]:
    """Return the accuracy of ``entity`` on each column (dataset id → accuracy)."""
    from .data import make_batches
    from .fitting import evaluate_batches
    from .loader import load_entity

    usable = [c for c in columns if c.examples]
    if not usable:
        return {}
    loaded = load_entity(registry, entity, device)
    out: dict[int, float] = {}
    for col in usable:
        assert col.examples is not None
        batches, _ = make_batches(
            loaded.backbone.tokenizer,
            col.examples,
            loaded.label_names,
            batch_size=64,
            max_length=max_length,
            shuffle=False,
            seed=0,
        )
        out[col.dataset.id] = evaluate_batches(loaded.backbone, batches, loaded.label_names)[
            "accuracy"
        ]
    return out


def recorded_scores(registry: Registry, entity: E.Entity) -> dict[int, float]:
    """Return the recorded validation accuracy of an entity per dataset id (latest row wins)."""
    return {
        m.dataset_id: m.value
        for m in registry.metrics(entity)
        if m.name == MATRIX_METRIC and m.split == MATRIX_SPLIT and m.dataset_id is not None
    }


def _score(
    registry: Registry,
    entity: E.Entity,
    columns: list[Column],
    step: int,
    max_length: int,
    device: str,
) -> dict[int, float]:
    """Return the entity's accuracy on every column, evaluating (and recording) what is missing."""
    known = recorded_scores(registry, entity)
    missing = [c for c in columns if c.dataset.id not in known and c.examples]
    if missing:
        fresh = evaluate_entity(registry, entity, missing, max_length=max_length, device=device)
        registry.log_metrics(
            entity,
            [MetricIn(MATRIX_METRIC, v, MATRIX_SPLIT, ds_id, step) for ds_id, v in fresh.items()],
        )
        known.update(fresh)
    return {c.dataset.id: known[c.dataset.id] for c in columns if c.dataset.id in known}


# ---------------------------------------------------------------------- promotion history
@dataclass(frozen=True)
class Step:
    """One production model of a task, in order: step 0 is the one before the first update."""

    step: int
    entity: E.Entity
    dataset_id: int | None


def production_history(registry: Registry, task: str) -> list[Step]:
    """Return the task's production models in promotion order."""
    steps: list[Step] = []
    for entity in registry.list_entities(task=task):
        for m in registry.metrics(entity):
            if m.name == STEP_METRIC:
                steps.append(Step(int(m.value), entity, m.dataset_id))
    return sorted(steps, key=lambda s: (s.step, s.entity.created_at))


def _learned_dataset(registry: Registry, entity: E.Entity) -> int | None:
    """Return the validation snapshot an entity was trained against (its first recorded one)."""
    for m in registry.metrics(entity):
        if m.split == MATRIX_SPLIT and m.dataset_id is not None:
            return m.dataset_id
    return None


def _mark(registry: Registry, entity: E.Entity, step: int, dataset_id: int | None) -> None:
    if not any(m.name == STEP_METRIC for m in registry.metrics(entity)):
        registry.log_metrics(entity, [MetricIn(STEP_METRIC, float(step), None, dataset_id, step)])


# ---------------------------------------------------------------------- the update loop
@dataclass
class Score:
    """Candidate vs. incumbent accuracy on one validation snapshot."""

    column: str
    dataset_id: int
    candidate: float | None
    incumbent: float | None
    new: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "column": self.column,
            "dataset_id": self.dataset_id,
            "candidate": self.candidate,
            "incumbent": self.incumbent,
            "new_data": self.new,
        }


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
            "step": self.step,
            "reused": self.reused,
        }


def _existing_report(
    registry: Registry, task: str, ref: E.AdapterVersion, ds: E.Dataset | None, alpha: float
) -> E.DriftReport | None:
    if ds is None:
        return None
    hits = [
        r
        for r in registry.drift_reports(task)
        if r.drift
        and r.new_dataset_id == ds.id
        and r.reference_adapter_version_id == ref.id
        and math.isclose(r.alpha, alpha)
    ]
    return hits[-1] if hits else None


def _adapter_after(registry: Registry, task: str, report: E.DriftReport) -> E.AdapterVersion | None:
    for entity in reversed(registry.list_entities(task=task, kind="adapter")):
        if not isinstance(entity, E.AdapterVersion) or entity.status != "active":
            continue
        for edge in registry.edges_of("adapter", entity.id):
            if (edge.parent_kind, edge.parent_id, edge.relation) == (
                "drift",
                report.id,
                "trained_after_drift",
            ):
                return entity
    return None


def _fusion_over(registry: Registry, task: str, member_ids: list[int]) -> E.Fusion | None:
    for entity in reversed(registry.list_entities(task=task, kind="fusion")):
        if (
            isinstance(entity, E.Fusion)
            and entity.status == "active"
            and list(entity.member_ids) == member_ids
        ):
            return entity
    return None


def plan_members(
    registry: Registry,
    task: str,
    incumbent: E.Entity | None,
    reference: E.AdapterVersion,
    new_id: int,
    policy: str,
) -> tuple[list[int], str] | None:
    """Return (member ids, fusion name) of the re-fused model, or None when no fusion is made.

    ``replace``: the production fusion's members with the task's own old version swapped for the
    new one (no fusion when production is a single adapter). ``append``: the production fusion's
    members (or the production adapter) plus the new version, so earlier knowledge stays in.
    """
    if policy not in MEMBER_POLICIES:
        raise InvalidInput(
            f"Unknown member policy {policy!r}; valid: {', '.join(MEMBER_POLICIES)}.",
            hint="Use --members replace or --members append.",
        )
    if isinstance(incumbent, E.Fusion):
        ids = list(incumbent.member_ids)
        if policy == "replace" and reference.id in ids:
            ids[ids.index(reference.id)] = new_id
        elif new_id not in ids:
            ids.append(new_id)
        return ids, incumbent.name
    if policy == "append":
        base = incumbent.id if incumbent is not None else reference.id
        return [base, new_id], f"{task}-fusion"
    return None


def replay_mix(
    registry: Registry,
    task: E.Task,
    new: DataBundle,
    new_source: str,
    *,
    seed: int = 0,
) -> tuple[str, dict[str, int]] | None:
    """Write the new data's train split plus replayed earlier train rows; return (folder, counts).

    Earlier data comes from the task's recorded ``train`` snapshots whose source can still be
    loaded and whose rows still match the recorded fingerprint (earlier replay mixes, recorded
    as fusions' train data, are not sources: that would replay one domain twice); in all, about
    as many replayed
    rows as new rows, split evenly over the earlier sources. The validation split is the new
    data's. The folder lives under the registry home and is named by its content, so a re-run
    reuses it and recorded sources stay loadable. Returns None when there is nothing to replay.
    """
    import hashlib
    import random as _random

    from .data import write_jsonl

    new_train = new.split("train")
    replay_root = (registry.settings.home / "replay").resolve()
    sources: dict[str, E.Dataset] = {}
    for ds in registry.list_datasets(task.id):
        if ds.split != "train" or ds.source == new_source or not Path(ds.source).exists():
            continue
        if Path(ds.source).resolve().is_relative_to(replay_root):
            continue  # an earlier mix (recorded as a fusion's train data): its rows are above
        sources[ds.source] = ds  # the newest snapshot per source wins
    earlier: dict[str, list[Example]] = {}
    for source, ds in sources.items():
        rows, _ = _snapshot_rows(ds, "train")
        if rows:
            earlier[source] = rows
    if not earlier:
        return None
    per_source = max(1, len(new_train) // len(earlier))
    rng = _random.Random(seed)
    mixed = list(new_train)
    counts: dict[str, int] = {}
    for source, rows in sorted(earlier.items()):
        take = rng.sample(rows, min(per_source, len(rows)))
        counts[source] = len(take)
        mixed.extend(take)
    rng.shuffle(mixed)
    val = new.splits.get("validation", [])
    key = hashlib.sha256(f"{fingerprint(mixed)}:{fingerprint(val)}".encode()).hexdigest()[:16]
    folder = registry.settings.home / "replay" / f"{task.name}-{key}"
    if not (folder / "train.jsonl").exists():
        if val:
            write_jsonl(val, folder / "validation.jsonl")
        write_jsonl(mixed, folder / "train.jsonl.part").replace(folder / "train.jsonl")
    return str(folder), counts


def _snapshot_rows(ds: E.Dataset, split: str) -> tuple[list[Example] | None, str]:
    """Reload a recorded snapshot from its source; None unless the fingerprint still matches."""
    from .data import load_spec

    try:
        rows = load_spec(ds.source).split(split)
    except RegistryError as err:
        return None, str(err)
    for candidate in (rows, rows[: ds.row_count]):
        if fingerprint(candidate) == ds.fingerprint:
            return candidate, ""
    return None, "fingerprint changed"


def update(
    registry: Registry,
    task: str,
    data: Any,
    *,
    dry_run: bool = False,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 500,
    train_config: TrainConfig | None = None,
    fuse_config: Any = None,
    tolerance: float = 0.01,
    members: str = "replace",
    adapter_name: str | None = None,
    replay: bool = True,
    warm_start: bool = False,
    alias: str = PRODUCTION,
    force: bool = False,
    progress: bool = True,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    log: Callable[[str], None] | None = None,
) -> UpdateResult:
    """Run one continual step for ``task`` on new ``data`` (see the module docstring).

    Args:
        dry_run: compute the drift decision and the plan; write nothing at all.
        train_config: hyper-parameters of the new adapter version (``seed`` defaults to ``seed``).
        fuse_config: a :class:`registry.composer.FuseConfig` for the re-fused model.
        tolerance: the largest accuracy drop (absolute) allowed on any earlier validation split.
        members: ``replace`` the task's old version in the fusion, or ``append`` the new one.
        adapter_name: name of the new adapter (default: a new version of the reference's name).
        replay: train the new fusion on the new data plus a sample of the data the task learned
            earlier (its recorded train snapshots), so the fusion layer, unlike the frozen
            adapters, does not drift towards the newest domain only.
        warm_start: start the new adapter version from the reference version's weights (and
            head) instead of from scratch; it is still a new version (``warm_started_from``
            edge) and the reference is never changed.
        alias: the alias to promote (``production``).
        force: promote even when the gate refuses (its verdict is still reported).
        log: called with one line per step (the CLI prints them).

    Raises:
        NotFound: the task has no adapter yet (train one first).
        InvalidInput: the data does not fit the task.
    """
    from .configs import TrainConfig
    from .data import check_labels, load_spec, split_validation
    from .runtime import pick_device

    say = log or (lambda _msg: None)
    if tolerance < 0:
        raise InvalidInput(f"tolerance must be ≥ 0, got {tolerance}.", hint="e.g. --tolerance 0.01")
    if members not in MEMBER_POLICIES:
        raise InvalidInput(
            f"Unknown member policy {members!r}; valid: {', '.join(MEMBER_POLICIES)}.",
            hint="Use --members replace or --members append.",
        )
    task_row = registry.get_task(task)
    bundle = load_spec(_spec(data), text_fields=text_fields, label_field=label_field)
    check_labels(bundle, list(task_row.label_names))
    tcfg = train_config or TrainConfig(seed=seed)
    incumbent_alias = production_entity(registry, task, alias)
    reference = current_reference(registry, task)
    incumbent: E.Entity = incumbent_alias or reference

    # 1. drift (reuse the report of an interrupted run on the same data)
    split, rows = _new_split(bundle)
    ds = _find_dataset(registry, task_row.id, split, fingerprint(rows))
    report = None if dry_run else _existing_report(registry, task, reference, ds, alpha)
    reused: list[str] = []
    if report is not None:
        from .drift import DriftResult, DriftTest

        tests = [
            DriftTest(
                t["name"],
                math.nan if t["statistic"] is None else t["statistic"],
                t["p_value"],
                t["drift"],
                t["decisive"],
                t.get("details", {}),
            )
            for t in report.tests
        ]
        per_test = report.tests[0].get("per_test_alpha", alpha) if report.tests else alpha
        result = DriftResult(True, report.alpha, per_test, tests, 0, len(rows))
        check = DriftCheck(task, reference, split, len(rows), fingerprint(rows), result, ds, report)
        check.reused = True
        reused.append(f"drift report #{report.id}")
        say(f"drift: reusing report #{report.id} (drift) from an earlier run on this data")
    else:
        check = check_drift(
            registry,
            task,
            _spec(data),
            alpha=alpha,
            seed=seed,
            n_permutations=n_permutations,
            record=not dry_run,
            bundle=bundle,
            device=tcfg.device,
        )
        say(
            f"drift: {'DRIFT' if check.drift else 'no drift'} against {reference.ref}"
            + (f" (report #{check.report.id})" if check.report else "")
        )
    out = UpdateResult(task, dry_run, check, incumbent=incumbent, reused=reused)
    if not check.drift:
        out.gate = "no drift: nothing to do"
        out.plan.append("no drift: nothing to train")
        return out

    # 2. the plan
    _, val_rows, val_how = split_validation(bundle, tcfg.seed)
    start = f", starting from {reference.ref}'s weights" if warm_start else ""
    out.plan.append(
        f"train a new version of adapter {reference.name!r} on {data_source(data)} "
        f"({len(bundle.split('train'))} rows, {tcfg.epochs} epochs, validation: {val_how}"
        f"{start}), after this drift report"
    )
    planned = plan_members(registry, task, incumbent_alias, reference, -1, members)
    if planned is not None:
        names = ["NEW" if i == -1 else registry.get_adapter_version(i).ref for i in planned[0]]
        out.plan.append(f"fuse {planned[1]!r} over [{', '.join(names)}] on the new data")
    else:
        out.plan.append("no fusion (production is a single adapter; --members replace)")
    out.plan.append(
        f"evaluate the candidate and {incumbent.ref} on every validation split of {task!r}"
    )
    out.plan.append(
        f"promote to {task}:{alias} if it beats {incumbent.ref} on the new data and no earlier "
        f"split drops by more than {tolerance:.3f}"
    )
    if dry_run:
        out.gate = "dry run: nothing written"
        return out
    assert check.report is not None

    # 3. the new adapter version
    adapter = _adapter_after(registry, task, check.report)
    if adapter is not None:
        reused.append(f"adapter {adapter.ref}")
        say(f"train: reusing {adapter.ref}, trained after report #{check.report.id}")
    else:
        from .trainer import train

        base = registry.get_base_model(reference.base_model_id)
        outcome = train(
            registry,
            task,
            _spec(data),
            base.name,
            name=adapter_name or reference.name,
            config=tcfg,
            init_from=reference.ref if warm_start else None,
            after_drift=check.report.id,
            text_fields=text_fields,
            label_field=label_field,
            progress=progress,
        )
        adapter = outcome.version
        say(
            f"train: registered {adapter.ref} ({outcome.earlier_artifacts_verified} earlier "
            "artifacts verified unchanged)"
        )
    out.adapter = adapter

    # 4. re-fuse
    planned = plan_members(registry, task, incumbent_alias, reference, adapter.id, members)
    if planned is not None:
        member_ids, fusion_name = planned
        fusion = _fusion_over(registry, task, member_ids)
        if fusion is not None:
            reused.append(f"fusion {fusion.ref}")
            say(f"fuse: reusing {fusion.ref}")
        else:
            from .composer import fuse
            from .configs import FuseConfig

            fcfg = fuse_config or FuseConfig(seed=seed)
            refs = [registry.get_adapter_version(i).ref for i in member_ids]
            fuse_data: Any = _spec(data)
            if replay:
                mix = replay_mix(registry, task_row, bundle, data_source(data), seed=seed)
                if mix is not None:
                    fuse_data, counts = mix
                    say(
                        "fuse: training data = new data + replayed rows of earlier data ("
                        + ", ".join(f"{domain_name(k)} {v}" for k, v in counts.items())
                        + ")"
                    )
            fusion = fuse(
                registry,
                task,
                refs,
                fuse_data,
                name=fusion_name,
                config=fcfg,
                text_fields=text_fields,
                label_field=label_field,
                progress=progress,
            ).fusion
            say(f"fuse: registered {fusion.ref} over {', '.join(fusion.members)}")
        out.fusion = fusion
    candidate = out.candidate
    assert candidate is not None

    # 5. evaluate candidate and incumbent on every validation split of the task
    new_val = _find_dataset(registry, task_row.id, MATRIX_SPLIT, fingerprint(val_rows))
    history = production_history(registry, task)
    step = (max(s.step for s in history) + 1) if history else 1
    columns = task_columns(registry, task_row, [tcfg.seed, seed, 0])
    out.skipped_columns = [f"{c.name}: {c.note}" for c in columns if not c.examples]
    device = pick_device(tcfg.device)
    cand = _score(registry, candidate, columns, step, tcfg.max_length, device)
    inc = _score(registry, incumbent, columns, step, tcfg.max_length, device)
    for c in columns:
        if c.examples:
            out.scores.append(
                Score(
                    c.name,
                    c.dataset.id,
                    cand.get(c.dataset.id),
                    inc.get(c.dataset.id),
                    new_val is not None and c.dataset.id == new_val.id,
                )
            )
    say(
        "evaluate: "
        + ", ".join(f"{s.column} {_pct(s.candidate)} vs {_pct(s.incumbent)}" for s in out.scores)
    )

    # 6. gate and promote
    out.gate_passed, out.gate = gate(out.scores, tolerance)
    out.promoted = out.gate_passed or force
    if force and not out.gate_passed:
        out.gate = f"forced past the gate, which said: {out.gate}"
    if out.promoted:
        if not history:
            _mark(registry, incumbent, 0, _learned_dataset(registry, incumbent))
        _mark(registry, candidate, step, new_val.id if new_val else None)
        registry.set_alias(task, alias, candidate.uid)
        out.step = step
        say(f"promote: {task}:{alias} → {candidate.ref}")
    else:
        say(f"gate: kept {task}:{alias} at {incumbent.ref}: {out.gate}")
    return out


def gate(scores: list[Score], tolerance: float) -> tuple[bool, str]:
    """Return (promote?, why): beat the incumbent on the new data, lose ≤ tolerance elsewhere."""
    new = [s for s in scores if s.new]
    if not new or new[0].candidate is None:
        return False, "the new data's validation split could not be evaluated"
    s = new[0]
    if s.incumbent is not None and not s.candidate > s.incumbent:  # type: ignore[operator]
        return False, (
            f"does not beat the current model on the new data "
            f"({_pct(s.candidate)} vs {_pct(s.incumbent)})"
        )
    for o in scores:
        if o.new or o.candidate is None or o.incumbent is None:
            continue
        if o.candidate < o.incumbent - tolerance:
            return False, (
                f"{o.column} would regress from {_pct(o.incumbent)} to {_pct(o.candidate)} "
                f"(more than the tolerance {tolerance:.3f})"
            )
    return True, f"beats the current model on the new data ({_pct(s.candidate)} vs " + (
        f"{_pct(s.incumbent)}) and no earlier split regresses beyond {tolerance:.3f}"
    )


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


# ---------------------------------------------------------------------- report
@dataclass
class TaskReport:
    """The continual history of one task: accuracy matrix, its steps and the lineage graph."""

    task: str
    matrix: AccuracyMatrix | None
    steps: list[str]
    production: str | None
    mermaid: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "task": self.task,
            "production": self.production,
            "steps": self.steps,
            "matrix": self.matrix.to_dict() if self.matrix else None,
            "lineage_mermaid": self.mermaid,
            "notes": self.notes,
        }


def build_report(registry: Registry, task: str | None = None) -> dict[str, TaskReport]:
    """Build each task's accuracy matrix (rows: production models, columns: validation splits).

    ``R[i][j]`` is the recorded accuracy of the i-th production model on the j-th split; a cell
    nobody measured is NaN (``report`` never trains or evaluates).
    """
    import numpy as np

    from .evaluate import AccuracyMatrix
    from .views import lineage_mermaid

    tasks = [registry.get_task(task)] if task else registry.list_tasks()
    out: dict[str, TaskReport] = {}
    for t in tasks:
        notes: list[str] = []
        prod = production_entity(registry, t.name)
        latest = registry.list_entities(task=t.name)
        root = prod or (latest[-1] if latest else None)
        mermaid = lineage_mermaid(registry.lineage(root)) if root else ""
        history = production_history(registry, t.name)
        datasets = {d.id: d for d in registry.list_datasets(t.id) if d.split == MATRIX_SPLIT}
        # Columns: the split each step learned, in step order; then splits no step learned.
        col_ids: list[int] = []
        rows: list[Step] = []
        for s in history:
            if s.dataset_id is None or s.dataset_id in col_ids:
                notes.append(f"step {s.step} ({s.entity.ref}) re-learned a known split: left out")
                continue
            col_ids.append(s.dataset_id)
            rows.append(s)
        col_ids += [i for i in datasets if i not in col_ids]
        matrix = None
        if not rows and prod is not None:
            # Nothing promoted by `update` yet: show what is known of the current production.
            rows = [Step(0, prod, None)]
            notes.append("no update has promoted a model yet: one row, the current production")
        if rows:
            names: list[str] = []
            for i in col_ids:
                n = domain_name(datasets[i].source) if i in datasets else f"dataset#{i}"
                names.append(f"{n}#{i}" if n in names else n)
            values = np.full((len(rows), len(col_ids)), np.nan)
            for r, s in enumerate(rows):
                scores = recorded_scores(registry, s.entity)
                for c, ds_id in enumerate(col_ids):
                    if ds_id in scores:
                        values[r, c] = scores[ds_id]
            matrix = AccuracyMatrix(values, names, [f"{s.step}: {s.entity.ref}" for s in rows])
        else:
            notes.append("nothing registered for this task yet")
        out[t.name] = TaskReport(
            t.name,
            matrix,
            [f"{s.step}: {s.entity.ref}" for s in rows],
            prod.ref if prod else None,
            mermaid,
            notes,
        )
    return out


def routed_matrix(matrix: AccuracyMatrix) -> AccuracyMatrix:
    """Return the matrix of routing each split to the model that was production when it was learned.

    ``R'[i][j] = R[j][j]`` for ``j ≤ i`` (that model never changes) and ``R[i][j]`` otherwise.
    """
    values = matrix.values.copy()
    for i in range(values.shape[0]):
        for j in range(min(i + 1, values.shape[1])):
            values[i, j] = matrix.values[j, j]
    return type(matrix)(values, matrix.task_names, matrix.step_names)


__all__ = [
    "Column",
    "DriftCheck",
    "Score",
    "Step",
    "TaskReport",
    "UpdateResult",
    "build_report",
    "check_drift",
    "current_reference",
    "domain_name",
    "evaluate_entity",
    "gate",
    "plan_members",
    "production_entity",
    "production_history",
    "routed_matrix",
    "update",
]
