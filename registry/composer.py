"""Train ONLY a new AdapterFusion layer (+ head) over frozen adapter versions; register it.

The flow mirrors :mod:`registry.trainer`: everything that can refuse (members, base model, task,
labels, names, hyper-parameters) is checked by :func:`plan_fusion` before any model is loaded.
Members are then loaded from their verified artifacts under their registry identities
(:func:`registry.loader.module_name`), a fusion layer and a head are added, and only those train.
The saved folder gets a ``fusion_manifest.json`` naming every member by ref, id and sha256, so
the artifact says on its own what it needs; after registration every earlier artifact (members
included) is re-hashed as proof that nothing registered changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from . import layout
from .configs import FuseConfig
from .data import DataBundle, Example, check_labels, load_spec, spec_label, training_rows
from .data import TrainingRows as TrainingRows
from .distributed import is_main
from .errors import AlreadyExists, InvalidInput, NotFound
from .fitting import FitData, FitResult, fit_and_evaluate
from .layout import BOTTLENECK_METHODS, FUSION_HEAD
from .layout import read_manifest as read_manifest
from .progress import bar
from .recording import (
    TaskSchema,
    check_task,
    evaluation_metrics,
    register_as_one,
    run_and_register,
    training_run,
    verify_untouched,
)
from .runtime import resolve_config, seed_everything
from .store import EdgeIn, Registry, validate_name

if TYPE_CHECKING:
    import numpy as np

    from .backbone import Backbone

#: The file written next to the fusion weights that says which members it needs.
MANIFEST = layout.FUSION_MANIFEST


@dataclass
class FuseOutcome:
    """A freshly registered fusion and what proves its members did not change."""

    fusion: E.Fusion
    metrics: dict[str, dict[str, float]]
    fit: FitResult
    members_verified: int
    earlier_artifacts_verified: int = 0


@dataclass
class FusionPlan:
    """Everything :func:`fuse` needs, checked before any model is loaded."""

    task: str
    name: str
    members: list[E.AdapterVersion]
    base: E.BaseModel
    bundle: DataBundle
    schema: TaskSchema
    rows: TrainingRows
    source: str
    config: FuseConfig

    @property
    def label_names(self) -> list[str]:
        """Return the task's labels (the fusion head's outputs, in order)."""
        return self.schema.label_names

    def fit_data(self) -> FitData:
        """Return the rows the fit loop trains on, picks the epoch with, and scores."""
        return FitData(
            self.rows.train, self.rows.validation, self.rows.eval_sets, self.schema.label_names
        )


def is_bottleneck(version: E.AdapterVersion) -> bool:
    """Return True if an adapter version is a bottleneck adapter (seq_bn / double_seq_bn)."""
    if version.method in BOTTLENECK_METHODS:
        return True
    # Pulled or older versions may record adapters' own config; judge by its shape then.
    cfg = version.config
    return (
        cfg.get("architecture") in (None, "bn")
        and "reduction_factor" in cfg
        and bool(cfg.get("output_adapter") or cfg.get("mh_adapter"))
        and not cfg.get("is_parallel", False)
    )


def resolve_members(
    registry: Registry, refs: Sequence[str], *, allow_deprecated: bool = False
) -> list[E.AdapterVersion]:
    """Resolve member REFs to distinct, active bottleneck adapter versions on one base model.

    Raises:
        InvalidInput: fewer than two members, duplicates, a fusion or non-bottleneck member, a
            deprecated member (unless ``allow_deprecated``), or members on different base models.
        NotFound: a REF that names nothing.
    """
    refs = [r.strip() for r in refs if r.strip()]
    if len(refs) < 2:
        raise InvalidInput(
            f"A fusion needs at least two member adapters, got {len(refs)}"
            f"{': ' + refs[0] if refs else ''}.",
            hint="Name two or more, e.g. --adapters mnli@1,qqp@1,cb@1",
        )
    members: list[E.AdapterVersion] = []
    for ref in refs:
        entity = registry.resolve(ref)
        if not isinstance(entity, E.AdapterVersion):
            raise InvalidInput(
                f"Member {ref!r} is a {entity.kind} ({entity.ref}), not an adapter version.",
                hint="Fuse adapter versions; list them with: adapter-registry list --kind adapter",
            )
        members.append(entity)
    seen: dict[int, str] = {}
    for ref, member in zip(refs, members, strict=True):
        if member.id in seen:
            raise InvalidInput(
                f"Members {seen[member.id]!r} and {ref!r} are the same adapter version "
                f"({member.ref}); fusion members must be distinct.",
                hint="Name each adapter version once.",
            )
        seen[member.id] = ref
    for member in members:
        if not is_bottleneck(member):
            raise InvalidInput(
                f"Member {member.ref} is a {member.method!r} adapter; AdapterFusion combines "
                f"bottleneck adapters only ({', '.join(BOTTLENECK_METHODS)}).",
                hint="Train one with: adapter-registry train TASK --data SPEC --method seq_bn",
            )
        if member.status == "deprecated" and not allow_deprecated:
            raise InvalidInput(
                f"Member {member.ref} is deprecated.",
                hint=f"Fuse a newer version, or pass --allow-deprecated "
                f"(or run: adapter-registry deprecate {member.ref} --undo).",
            )
    first = members[0]
    for member in members[1:]:
        if member.base_model_id != first.base_model_id:
            a = registry.get_base_model(first.base_model_id)
            b = registry.get_base_model(member.base_model_id)
            raise InvalidInput(
                f"Members are on different base models: {first.ref} on {a.name} @ "
                f"{a.revision[:12]}, {member.ref} on {b.name} @ {b.revision[:12]}.",
                hint="Fuse adapters trained on the same base model.",
            )
    return members


def plan_fusion(
    registry: Registry,
    task: str,
    adapters: Sequence[str],
    data: Any,
    *,
    name: str | None = None,
    config: FuseConfig | None = None,
    allow_deprecated: bool = False,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    bundle: DataBundle | None = None,
) -> FusionPlan:
    """Check a fusion request against the registry and the data without writing anything.

    ``bundle``: the data, already loaded from ``data`` by the caller (it is then not reloaded).
    """
    cfg = resolve_config(config or FuseConfig())
    name = name or f"{task}-fusion"
    validate_name(task, "task name")
    validate_name(name, "fusion name")
    members = resolve_members(registry, adapters, allow_deprecated=allow_deprecated)
    base = registry.get_base_model(members[0].base_model_id)
    _check_name_free(registry, name, task)
    if bundle is None:
        bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    schema = check_task(registry, task, bundle, base)
    check_labels(bundle, schema.label_names)
    if len(schema.label_names) < 2:
        raise InvalidInput(
            f"Task {task!r} needs at least two labels; the data has {schema.label_names}.",
            hint="Check the label field of the data (--label-field).",
        )
    return FusionPlan(
        task=task,
        name=name,
        members=members,
        base=base,
        bundle=bundle,
        schema=schema,
        rows=training_rows(bundle, cfg.seed, cfg.max_train_examples),
        source=spec_label(data),
        config=cfg,
    )


def _check_name_free(registry: Registry, name: str, task: str) -> None:
    for entity in registry.list_entities():
        if entity.name != name:
            continue
        if entity.kind == "adapter":
            raise AlreadyExists(
                f"{name!r} is already the name of an adapter.",
                hint=f"Pick another fusion name, e.g. --name {task}-fusion",
            )
        if entity.task != task:
            raise InvalidInput(
                f"Fusion {name!r} belongs to task {entity.task!r}, not {task!r}.",
                hint="Use another fusion name for this task (--name).",
            )


def prepare_backbone(
    registry: Registry,
    members: Sequence[E.AdapterVersion],
    label_names: list[str],
    config: FuseConfig,
    device: str = "cpu",
) -> tuple[Backbone, list[str], dict[str, Any]]:
    """Load the base once, the members (verified), add a fusion + head, and freeze the rest.

    Returns the backbone (set up for :meth:`Backbone.train_fusion`), the members' module names
    in order, and the fusion layer's config dict.
    """
    from .loader import attach_adapter, load_backbone_for

    backbone = load_backbone_for(registry, members[0], device)
    names = [attach_adapter(registry, backbone, m) for m in members]
    # The same seed as the trainer gives the same initial fusion and head for the same request.
    seed_everything(config.seed)
    fusion_config = backbone.add_fusion(names, dynamic=config.dynamic)
    backbone.add_head(FUSION_HEAD, label_names, layers=config.head_layers)
    if config.init_head:
        # Start from a trained head of the same label set (the newest such member): the fused
        # representation starts close to each member's output, so the head needs far fewer
        # steps than one learned from scratch on small data.
        for name in reversed(names):
            if name in backbone.head_names and backbone.copy_head(name, FUSION_HEAD):
                break
    backbone.train_fusion(names, FUSION_HEAD)
    return backbone, names, fusion_config


def fuse(
    registry: Registry,
    task: str,
    adapters: list[str],
    data: Any,
    *,
    name: str | None = None,
    config: FuseConfig | None = None,
    allow_deprecated: bool = False,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    progress: bool = True,
    lineage: Sequence[EdgeIn] = (),
    bundle: DataBundle | None = None,
) -> FuseOutcome:
    """Train a fusion over adapter versions ``adapters`` for ``task`` on ``data``; register it.

    Args:
        registry: where the members live and the fusion is registered.
        task: the target task; created on registration with the data's label set if new. Its
            own adapter may be a member.
        adapters: member REFs, in order (two or more, distinct, one base model).
        data: a data spec (see :func:`registry.data.load_spec`).
        name: the fusion name (default ``TASK-fusion``).
        config: hyper-parameters.
        allow_deprecated: accept deprecated members.
        lineage: extra edges into the fusion; ``fused_from`` edges are added for every member.
        bundle: ``data`` already loaded by the caller.

    Raises:
        InvalidInput, NotFound, AlreadyExists: the request was refused before any model loaded.
        IntegrityError: a member or earlier artifact changed (should never happen).
        Interrupted: Ctrl-C; the message says whether the version was registered.
    """
    plan = plan_fusion(
        registry,
        task,
        adapters,
        data,
        name=name,
        config=config,
        allow_deprecated=allow_deprecated,
        text_fields=text_fields,
        label_field=label_field,
        bundle=bundle,
    )

    def work(device: str, earlier: dict[str, str] | None) -> FuseOutcome | None:
        fusion, metrics, result = _fuse_and_register(registry, plan, device, progress, lineage)
        if fusion is None or earlier is None:  # another rank than 0
            return None
        for member in plan.members:
            registry.artifacts.verify(member.artifact_sha256, f"adapter {member.ref}")
        verified = verify_untouched(registry, earlier)
        return FuseOutcome(fusion, metrics, result, len(plan.members), verified)

    return run_and_register(registry, plan.config, "Fusion training", plan.name, work)


def _fuse_and_register(
    registry: Registry,
    plan: FusionPlan,
    device: str,
    progress: bool,
    lineage: Sequence[EdgeIn],
) -> tuple[E.Fusion | None, dict[str, dict[str, float]], FitResult]:
    cfg = plan.config
    backbone, names, fusion_config = prepare_backbone(
        registry, plan.members, plan.label_names, cfg, device
    )
    seed_everything(cfg.seed)
    result, metrics = fit_and_evaluate(
        backbone,
        plan.fit_data(),
        cfg.train_config(),
        extra_loss=backbone.fusion_regularization_loss if cfg.dynamic else None,
        progress=progress,
        desc=f"fuse {plan.name}",
    )
    if not is_main():  # rank 0 registers (and hands the result round)
        return None, metrics, result
    with registry.artifacts.staging("fuse") as tmp:
        art = Path(tmp) / "fusion"
        backbone.save_fusion(names, art, FUSION_HEAD)
        write_manifest(art, plan, names, fusion_config, cfg)
        trainable = backbone.count_parameters()
        fusion = register_as_one(
            registry,
            lambda: _register(
                registry, plan, fusion_config, art, trainable, result, metrics, device, lineage
            ),
            [art],
        )
    return fusion, metrics, result


def write_manifest(
    folder: Path,
    plan: FusionPlan,
    module_names: list[str],
    fusion_config: dict[str, Any],
    cfg: FuseConfig,
) -> Path:
    """Write ``fusion_manifest.json``: ordered members, fusion config, head labels, base model."""
    members = [
        {
            "ref": m.ref,
            "adapter_version_id": m.id,
            "artifact_sha256": m.artifact_sha256,
            "module_name": module,
            "method": m.method,
        }
        for m, module in zip(plan.members, module_names, strict=True)
    ]
    manifest = layout.fusion_manifest(
        name=plan.name,
        task=plan.task,
        members=members,
        dynamic=cfg.dynamic,
        fusion_config=fusion_config,
        head_labels=plan.label_names,
        head_layers=cfg.head_layers,
        base_name=plan.base.name,
        base_revision=plan.base.revision,
    )
    return layout.write_manifest(folder, manifest)


def _register(
    registry: Registry,
    plan: FusionPlan,
    fusion_config: dict[str, Any],
    art: Path,
    trainable: int,
    result: FitResult,
    metrics: dict[str, dict[str, float]],
    device: str,
    lineage: Sequence[EdgeIn],
) -> E.Fusion:
    cfg = plan.config
    schema = plan.schema
    task_row = registry.ensure_task(
        plan.task, schema.kind, schema.label_names, schema.fields, plan.base.id
    )
    run = training_run(
        cfg.to_dict(),
        cfg.seed,
        plan.rows,
        schema.label_names,
        result,
        device,
        members=[m.ref for m in plan.members],
    )
    return registry.register_fusion(
        name=plan.name,
        task=plan.task,
        base_model_id=plan.base.id,
        member_ids=[m.id for m in plan.members],
        config={"dynamic": cfg.dynamic, **fusion_config},
        head={"labels": schema.label_names, "layers": cfg.head_layers},
        artifact_dir=art,
        trainable_params=trainable,
        training_run=run,
        metrics=evaluation_metrics(
            registry, task_row, plan.source, plan.rows.eval_sets, metrics, result
        ),
        lineage=list(lineage),
    )


def fusion_attention(
    registry: Registry,
    ref: str,
    data: Any,
    *,
    split: str = "validation",
    max_examples: int = 256,
    device: str = "cpu",
) -> tuple[np.ndarray, list[str]]:
    """Return a fusion's mean attention per layer and member ([layers, members]) and member refs.

    Averaged over the real tokens of the first ``max_examples`` rows of ``split``, with the
    model on ``device``; labels in the data are ignored.
    """

    from .data import make_batches
    from .loader import load_entity

    entity = registry.resolve(ref)
    if not isinstance(entity, E.Fusion):
        raise InvalidInput(
            f"{entity.ref} is an adapter version, not a fusion.",
            hint="Give a fusion REF; list them with: adapter-registry list --kind fusion",
        )
    if max_examples < 1:
        raise InvalidInput(
            f"max_examples must be at least 1, got {max_examples}.", hint="e.g. --max-examples 256"
        )
    bundle = load_spec(data, require_labels=False)
    rows = [Example(e.text_a, e.text_b, None) for e in bundle.split(split)[:max_examples]]
    if not rows:
        raise InvalidInput(
            f"Split {split!r} of {bundle.source} is empty.",
            hint="Pick a split with rows (--split).",
        )
    task = registry.get_task_by_id(entity.task_id)
    if (task.kind == "pair") != bundle.pair:
        raise InvalidInput(
            f"{entity.ref} was trained on {task.kind}-text data, but {bundle.source} is "
            f"{'pair' if bundle.pair else 'single'}-text.",
            hint="Give data of the fusion's task.",
        )
    loaded = load_entity(registry, entity, device)
    members = loaded.setup
    assert isinstance(members, list)
    batches, _ = make_batches(
        loaded.backbone.tokenizer, rows, None, batch_size=32, shuffle=False, seed=0
    )
    total: np.ndarray | None = None
    weight = 0.0
    for batch in bar(batches, "attention"):
        tokens = float(batch["attention_mask"].sum())
        part = loaded.backbone.fusion_attention(batch, members) * tokens
        total = part if total is None else total + part
        weight += tokens
    if total is None or weight == 0:  # pragma: no cover - rows are non-empty
        raise NotFound("No tokens to measure attention on.", hint="Give rows with text.")
    refs = [registry.get_adapter_version(mid).ref for mid in entity.member_ids]
    return total / weight, refs
