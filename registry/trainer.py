"""Train a NEW task adapter (+ head) on a frozen base model and register it with its lineage.

Earlier adapters are never touched: their artifacts are content-addressed and read-only, and
:func:`train` re-verifies every earlier artifact's sha256 after training as proof. The flow is
the composer's: :func:`plan_training` checks everything that can refuse before a model loads
(a :class:`TrainPlan`), the shared fit loop (:mod:`registry.fitting`) trains, and
:mod:`registry.recording` writes what the registry keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from .configs import TrainConfig
from .data import (
    DataBundle,
    Example,
    check_labels,
    fingerprint,
    load_spec,
    spec_label,
    training_rows,
)
from .data import TrainingRows as TrainingRows
from .distributed import is_main, joined
from .errors import InvalidInput
from .fitting import FitData, FitResult, fit_and_evaluate
from .fitting import evaluate_batches as evaluate_batches
from .fitting import fit as fit
from .recording import (
    TaskSchema,
    check_task,
    ensure_base_row,
    evaluation_metrics,
    register_as_one,
    run_and_register,
    same_base,
    training_run,
    verify_untouched,
)
from .replay import record_mix, write_mix
from .runtime import resolve_config, seed_everything
from .store import EdgeIn, Registry, validate_name
from .transfer import Transfer, plan_transfer

if TYPE_CHECKING:
    from .backbone import Backbone, BaseInfo
    from .prefix_cache import PrefixCache

#: The adapter's module name inside the model while it trains.
MODULE = "adapter"


@dataclass
class TrainOutcome:
    """A freshly registered adapter version and what proves nothing else changed."""

    version: E.AdapterVersion
    metrics: dict[str, dict[str, float]]
    fit: FitResult
    earlier_artifacts_verified: int
    #: the related task this first adapter started from (see :mod:`registry.transfer`)
    transfer: Transfer | None = None


@dataclass
class TrainPlan:
    """Everything :func:`train` needs, checked before any model is loaded."""

    task: str
    name: str
    base: str
    info: BaseInfo
    bundle: DataBundle
    schema: TaskSchema
    rows: TrainingRows
    source: str
    config: TrainConfig
    init_from: E.AdapterVersion | None
    drift_report: E.DriftReport | None
    cache_layers: int
    #: The Hub id (``OWNER/NAME[@COMMIT]``) of which a local base folder is a copy.
    base_hub_id: str | None = None
    #: start from a related task's adapter and replay its rows (:mod:`registry.transfer`)
    transfer: Transfer | None = None

    @property
    def fit_rows(self) -> list[Example]:
        """Return the rows the fit trains on: the train rows, or the transfer's mix."""
        return self.transfer.rows if self.transfer is not None else self.rows.train

    def fit_data(self) -> FitData:
        """Return the rows the fit loop trains on, picks the epoch with, and scores.

        The scored ``train`` split is the new data's own train rows (recorded under its
        source, so a later ``update`` of the task replays them), even when the fit trains on
        a transfer's mix."""
        return FitData(
            self.fit_rows, self.rows.validation, self.rows.eval_sets, self.schema.label_names
        )


def plan_training(
    registry: Registry,
    task: str,
    data: Any,
    base: str,
    *,
    name: str | None = None,
    config: TrainConfig | None = None,
    init_from: str | None = None,
    after_drift: int | None = None,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    bundle: DataBundle | None = None,
    base_hub_id: str | None = None,
    transfer: bool = True,
) -> TrainPlan:
    """Check a training request against the registry and the data without writing anything.

    ``bundle``: the data, already loaded from ``data`` by the caller (it is then not reloaded).
    ``base_hub_id``: the Hub id of which a local ``base`` is a copy (recorded with the run; it
    names the base in pushed model cards).
    ``transfer``: for a task's first adapter without ``init_from``, start from a related task
    with the same labels and replay its rows (:mod:`registry.transfer`).

    Raises:
        InvalidInput: bad names, data, labels, base model or warm start.
        NotFound: ``init_from`` or ``after_drift`` names nothing.
    """
    from .backbone import resolve_base

    cfg = resolve_config(config or TrainConfig())
    name = name or task
    validate_name(task, "task name")
    validate_name(name, "adapter name")
    if base_hub_id is not None:
        from .hub.cards import parse_hub_id

        parse_hub_id(base_hub_id)
    if bundle is None:
        bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    info = resolve_base(base)
    schema = check_task(registry, task, bundle, info)
    check_labels(bundle, schema.label_names)
    if cfg.cache_prefix and joined():
        raise InvalidInput(
            "--cache-prefix does not run under torchrun (each rank would cache its own slice "
            "of every batch).",
            hint="Drop --cache-prefix, or train in a single process.",
        )
    rows = training_rows(bundle, cfg.seed, cfg.max_train_examples)
    init_entity = _warm_start(registry, init_from, info) if init_from else None
    related = None
    if transfer and init_from is None and after_drift is None:
        related = plan_transfer(
            registry, task, schema.label_names, schema.kind, info, rows.train, cfg.seed
        )
        init_entity = related.adapter if related is not None else None
    drift_report = registry.get_drift_report(after_drift) if after_drift is not None else None
    return TrainPlan(
        task=task,
        name=name,
        base=base,
        info=info,
        bundle=bundle,
        schema=schema,
        rows=rows,
        source=spec_label(data),
        config=cfg,
        init_from=init_entity,
        drift_report=drift_report,
        cache_layers=_cached_prefix_layers(cfg, init_entity, info.num_layers),
        base_hub_id=base_hub_id,
        transfer=related,
    )


def _warm_start(registry: Registry, ref: str, info: BaseInfo) -> E.AdapterVersion:
    entity = registry.resolve(ref)
    if not isinstance(entity, E.AdapterVersion):
        raise InvalidInput(
            f"--init-from must name an adapter version, not {entity.kind}.",
            hint="List adapter versions with: adapter-registry list --kind adapter",
        )
    if entity.base_model_id is not None:
        init_base = registry.get_base_model(entity.base_model_id)
        if not same_base(init_base, info):
            raise InvalidInput(
                f"{entity.ref} was trained on another base model ({init_base.name}).",
                hint="Warm-start only from adapters on the same base model.",
            )
    return entity


def train(
    registry: Registry,
    task: str,
    data: Any,
    base: str,
    *,
    name: str | None = None,
    config: TrainConfig | None = None,
    init_from: str | None = None,
    after_drift: int | None = None,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    progress: bool = True,
    bundle: DataBundle | None = None,
    base_hub_id: str | None = None,
    transfer: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train a new adapter version for ``task`` on ``data`` over base model ``base``; register it.

    Args:
        registry: where to register the result.
        task: the task name; created on first use with the data's label set.
        data: a data spec (see :func:`registry.data.load_spec`).
        base: a local model folder or Hub model name.
        name: the adapter name (default: the task name).
        config: hyper-parameters.
        init_from: a REF whose adapter weights start this training (``warm_started_from``).
        after_drift: a drift report id that triggered this training (``trained_after_drift``).
        bundle: ``data`` already loaded by the caller.
        base_hub_id: the Hub id (``OWNER/NAME[@COMMIT]``) of which a local ``base`` is a copy.
        transfer: the first adapter of a task without ``init_from`` starts from the production
            adapter of the most recently promoted task with exactly the same labels (same base
            model) and trains on its rows plus about as many of that task's recorded train
            rows; validation is the new data's (:mod:`registry.transfer`). On by default.
        log: called with the transfer line before training, when there is one.

    Raises:
        InvalidInput: bad data, labels, base model, or hyper-parameters (before any training).
        Interrupted: Ctrl-C; the message says whether the version was registered.
    """
    plan = plan_training(
        registry,
        task,
        data,
        base,
        name=name,
        config=config,
        init_from=init_from,
        after_drift=after_drift,
        text_fields=text_fields,
        label_field=label_field,
        bundle=bundle,
        base_hub_id=base_hub_id,
        transfer=transfer,
    )
    if plan.transfer is not None and log is not None and is_main():
        log(plan.transfer.line())

    def work(device: str, earlier: dict[str, str] | None) -> TrainOutcome | None:
        seed_everything(plan.config.seed)
        version, metrics, result = _train_and_register(registry, plan, device, progress)
        if version is None:  # another rank than 0
            return None
        verified = verify_untouched(registry, earlier) if earlier else 0
        return TrainOutcome(version, metrics, result, verified, plan.transfer)

    return run_and_register(registry, plan.config, "Training", plan.name, work)


def _train_and_register(
    registry: Registry, plan: TrainPlan, device: str, progress: bool
) -> tuple[E.AdapterVersion | None, dict[str, dict[str, float]], FitResult]:
    from .backbone import Backbone
    from .profiles import build_profile, save_profile

    cfg = plan.config
    main = is_main()
    backbone = Backbone.load(plan.base, device=device)
    profile = (
        build_profile(
            backbone,
            plan.rows.train,
            dataset_fingerprint=fingerprint(plan.rows.train),
            seed=cfg.seed,
            max_length=cfg.max_length,
        )
        if main
        else None
    )
    adapter_config = _add_adapter(registry, backbone, plan)
    backbone.train_adapter(MODULE)
    seed_everything(cfg.seed)
    result, metrics = fit_and_evaluate(
        backbone,
        plan.fit_data(),
        cfg,
        progress=progress,
        desc=f"train {plan.name}",
        prefix_cache=_prefix_cache(backbone, plan),
    )
    if profile is None:  # another rank than 0: rank 0 registers (and hands the result round)
        return None, metrics, result
    with registry.artifacts.staging("train") as tmp:
        art = Path(tmp) / "adapter"
        backbone.save_adapter(MODULE, art)
        prof_dir = save_profile(profile, Path(tmp) / "profile")
        mix = _write_mix(plan, Path(tmp) / "mix")
        trainable = backbone.count_parameters()
        version = register_as_one(
            registry,
            lambda: _register(
                registry, plan, adapter_config, art, prof_dir, trainable, result, metrics, device,
                mix,
            ),
            [art, prof_dir, *([mix] if mix else [])],
        )  # fmt: skip
    return version, metrics, result


def _add_adapter(registry: Registry, backbone: Backbone, plan: TrainPlan) -> dict[str, Any]:
    """Add the new adapter and its head (or load the warm start's); return its config."""
    cfg = plan.config
    labels = plan.schema.label_names
    if plan.init_from is not None:
        backbone.load_adapter(registry.artifact_path(plan.init_from), MODULE)
        if backbone.head_labels(MODULE) != labels:
            raise InvalidInput(
                f"{plan.init_from.ref} has other labels than task {plan.task!r}.",
                hint="Warm-start from an adapter of this task.",
            )
        return dict(plan.init_from.config)
    config = backbone.add_adapter(MODULE, cfg.method, cfg.reduction_factor, cfg.leave_out or None)
    backbone.add_head(MODULE, labels, layers=cfg.head_layers)
    return config


def _write_mix(plan: TrainPlan, folder: Path) -> Path | None:
    """Write a transfer's mix (its rows, the new validation rows) to record with the version."""
    if plan.transfer is None or not plan.transfer.counts:
        return None
    return write_mix(folder, plan.task, plan.fit_rows, plan.rows.validation)


def _prefix_cache(backbone: Backbone, plan: TrainPlan) -> PrefixCache | None:
    if not plan.cache_layers:
        return None
    from .prefix_cache import PrefixCache

    return PrefixCache(
        backbone,
        plan.cache_layers,
        base_revision=plan.info.revision,
        data_fingerprint=fingerprint(plan.fit_rows),
        max_length=plan.config.max_length,
    )


def _cached_prefix_layers(
    cfg: TrainConfig, init_entity: E.AdapterVersion | None, num_layers: int
) -> int:
    """Return how many frozen lower layers ``cache_prefix`` caches (0 when it is off).

    Raises:
        InvalidInput: ``cache_prefix`` without ``leave_out`` covering layer 0.
    """
    if not cfg.cache_prefix:
        return 0
    from .prefix_cache import frozen_prefix_length

    leave_out = init_entity.config.get("leave_out", []) if init_entity else cfg.leave_out
    k = min(frozen_prefix_length(leave_out or []), num_layers)
    if k == 0:
        raise InvalidInput(
            "--cache-prefix caches the layers below the first adapted one, but the adapter is "
            f"not left out of layer 0 (leave_out={list(leave_out or [])}).",
            hint="Add --leave-out 0,1,...,k-1 (AdapterDrop), or drop --cache-prefix.",
        )
    return k


def _register(
    registry: Registry,
    plan: TrainPlan,
    adapter_config: dict[str, Any],
    art: Path,
    prof_dir: Path,
    trainable: int,
    result: FitResult,
    metrics: dict[str, dict[str, float]],
    device: str,
    mix: Path | None = None,
) -> E.AdapterVersion:
    info = plan.info
    base = ensure_base_row(registry, info, plan.base_hub_id)
    schema = plan.schema
    task_row = registry.ensure_task(
        plan.task, schema.kind, schema.label_names, schema.fields, base.id
    )
    extra: dict[str, Any] = {"base_hub_id": plan.base_hub_id} if plan.base_hub_id else {}
    if plan.transfer is not None:
        extra["transfer"] = plan.transfer.to_dict()
        if mix is not None:  # the rows the fit trained on, as the task's train snapshot
            extra["transfer"]["mix"] = record_mix(registry, task_row.id, mix, plan.fit_rows)
    lineage = []
    if plan.init_from is not None:
        lineage.append(EdgeIn("adapter", plan.init_from.id, "warm_started_from"))
    if plan.drift_report is not None:
        lineage.append(EdgeIn("drift", plan.drift_report.id, "trained_after_drift"))
    cfg = plan.config
    method = (
        plan.init_from.method
        if plan.init_from is not None
        else str(adapter_config.get("architecture") or cfg.method)
    )
    return registry.register_adapter_version(
        name=plan.name,
        task=plan.task,
        base_model_id=base.id,
        method=method,
        config=adapter_config,
        artifact_dir=art,
        trainable_params=trainable,
        training_run=training_run(
            cfg.to_dict(),
            cfg.seed,
            plan.rows,
            schema.label_names,
            result,
            device,
            **extra,
        ),
        metrics=evaluation_metrics(
            registry, task_row, plan.source, plan.rows.eval_sets, metrics, result
        ),
        lineage=lineage,
        profile_dir=prof_dir,
    )


__all__ = [
    "TrainConfig",
    "TrainOutcome",
    "TrainPlan",
    "evaluate_batches",
    "fit",
    "plan_training",
    "seed_everything",
    "train",
]
