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

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import DataBundle, Example, fingerprint, label_distribution, load_spec
from .errors import AlreadyExists, IntegrityError, Interrupted, InvalidInput, NotFound
from .store import EdgeIn, MetricIn, Registry, validate_name
from .trainer import (
    FitResult,
    TrainConfig,
    check_labels,
    evaluate_batches,
    fit,
    library_versions,
    pick_device,
    prepare_task,
    seed_everything,
    split_validation,
)
from .trainer import _labelled_splits as labelled_splits
from .trainer import _verify_untouched as verify_untouched

if TYPE_CHECKING:
    import numpy as np

    from .backbone import Backbone

#: The name of the fusion's head inside the model while training (saved under this name).
FUSION_HEAD = "fusion_head"
#: The file written next to the fusion weights that says which members it needs.
MANIFEST = "fusion_manifest.json"
MANIFEST_FORMAT = 1
#: Adapter methods a fusion can combine: bottleneck adapters, as registry.trainer registers them.
BOTTLENECK_METHODS = ("seq_bn", "double_seq_bn")


@dataclass
class FuseConfig:
    """Hyper-parameters of one fusion training run (recorded with the fusion)."""

    dynamic: bool = True
    epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 32
    max_length: int = 256
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    patience: int = 2
    class_weights: bool = False
    head_layers: int = 2
    device: str = "auto"
    threads: int | None = None
    max_train_examples: int | None = None
    init_head: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict."""
        return asdict(self)

    def train_config(self) -> TrainConfig:
        """Return the :class:`TrainConfig` that drives :func:`registry.trainer.fit`."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            max_length=self.max_length,
            seed=self.seed,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            patience=self.patience,
            class_weights=self.class_weights,
            head_layers=self.head_layers,
            device=self.device,
            threads=self.threads,
            max_train_examples=self.max_train_examples,
        )


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
    label_names: list[str]
    kind: str
    fields: list[str]
    train_rows: list[Example]
    val_rows: list[Example]
    val_how: str
    source: str


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
) -> FusionPlan:
    """Check a fusion request against the registry and the data without writing anything."""
    cfg = config or FuseConfig()
    name = name or f"{task}-fusion"
    validate_name(task, "task name")
    validate_name(name, "fusion name")
    if (
        cfg.epochs < 1
        or cfg.batch_size < 1
        or cfg.lr <= 0
        or cfg.max_length < 8
        or cfg.head_layers < 1
    ):
        raise InvalidInput(
            "epochs, batch size and head layers must be ≥ 1, lr > 0, max length ≥ 8.",
            hint="e.g. --epochs 5 --batch-size 32 --lr 5e-4 --max-length 256",
        )
    members = resolve_members(registry, adapters, allow_deprecated=allow_deprecated)
    base = registry.get_base_model(members[0].base_model_id)
    _check_name_free(registry, name, task)
    bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    label_names, kind, fields = prepare_task(registry, task, bundle, base.name, base.revision)
    check_labels(bundle, label_names)
    if len(label_names) < 2:
        raise InvalidInput(
            f"Task {task!r} needs at least two labels; the data has {label_names}.",
            hint="Check the label field of the data (--label-field).",
        )
    train_rows, val_rows, val_how = split_validation(bundle, cfg.seed)
    if cfg.max_train_examples is not None:
        train_rows = train_rows[: cfg.max_train_examples]
    if not train_rows or any(e.label is None for e in train_rows):
        raise InvalidInput(
            "The train split is empty or has unlabelled rows.",
            hint="Give data with a labelled train split.",
        )
    source = str(data) if isinstance(data, str | Path) else type(data).__name__
    return FusionPlan(
        task=task,
        name=name,
        members=members,
        base=base,
        bundle=bundle,
        label_names=label_names,
        kind=kind,
        fields=fields,
        train_rows=train_rows,
        val_rows=val_rows,
        val_how=val_how,
        source=source,
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

    Raises:
        InvalidInput, NotFound, AlreadyExists: the request was refused before any model loaded.
        IntegrityError: a member or earlier artifact changed (should never happen).
        Interrupted: Ctrl-C; nothing is registered.
    """
    cfg = config or FuseConfig()
    plan = plan_fusion(
        registry,
        task,
        adapters,
        data,
        name=name,
        config=cfg,
        allow_deprecated=allow_deprecated,
        text_fields=text_fields,
        label_field=label_field,
    )
    earlier = registry.referenced_artifacts()

    import torch

    from .trainer import class_weight_tensor

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    tcfg = cfg.train_config()
    try:
        backbone, names, fusion_config = prepare_backbone(
            registry, plan.members, plan.label_names, cfg, device
        )
        seed_everything(cfg.seed)
        train_batches = _batches(backbone, plan.train_rows, plan.label_names, cfg, shuffle=True)
        val_batches = (
            _batches(backbone, plan.val_rows, plan.label_names, cfg, shuffle=False)
            if plan.val_rows
            else []
        )
        weights = (
            class_weight_tensor(plan.train_rows, plan.label_names) if cfg.class_weights else None
        )
        result = fit(
            backbone,
            train_batches,
            val_batches,
            plan.label_names,
            tcfg,
            class_weights=weights,
            extra_loss=backbone.fusion_regularization_loss if cfg.dynamic else None,
            progress=progress,
            desc=f"fuse {plan.name}",
        )
        eval_sets = labelled_splits(plan.bundle, plan.train_rows, plan.val_rows, plan.val_how)
        metrics = {
            split: evaluate_batches(
                backbone,
                _batches(backbone, rows, plan.label_names, cfg, shuffle=False, batch_size=64),
                plan.label_names,
            )
            for split, rows in eval_sets.items()
        }
        trainable = backbone.count_parameters()
        with tempfile.TemporaryDirectory(prefix="adapter-registry-") as tmp:
            art = Path(tmp) / "fusion"
            backbone.save_fusion(names, art, FUSION_HEAD)
            write_manifest(art, plan, names, fusion_config, cfg)
            fusion = _register(
                registry,
                plan=plan,
                cfg=cfg,
                fusion_config=fusion_config,
                art=art,
                trainable=trainable,
                result=result,
                metrics=metrics,
                eval_sets=eval_sets,
                device=device,
                lineage=lineage,
            )
    except KeyboardInterrupt as err:
        raise Interrupted(
            "Fusion training was interrupted: nothing was registered.",
            hint="Run the same command again to start over.",
        ) from err
    for member in plan.members:
        registry.artifacts.verify(member.artifact_sha256, f"adapter {member.ref}")
    verified = verify_untouched(registry, earlier)
    return FuseOutcome(fusion, metrics, result, len(plan.members), verified)


def _batches(
    backbone: Backbone,
    rows: list[Example],
    label_names: list[str],
    cfg: FuseConfig,
    *,
    shuffle: bool,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    from .data import make_batches

    return make_batches(
        backbone.tokenizer,
        rows,
        label_names,
        batch_size=batch_size or cfg.batch_size,
        max_length=cfg.max_length,
        shuffle=shuffle,
        seed=cfg.seed if shuffle else 0,
    )[0]


def write_manifest(
    folder: Path,
    plan: FusionPlan,
    module_names: list[str],
    fusion_config: dict[str, Any],
    cfg: FuseConfig,
) -> Path:
    """Write ``fusion_manifest.json``: ordered members, fusion config, head labels, base model."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": plan.name,
        "task": plan.task,
        "members": [
            {
                "ref": m.ref,
                "adapter_version_id": m.id,
                "artifact_sha256": m.artifact_sha256,
                "module_name": module,
                "method": m.method,
            }
            for m, module in zip(plan.members, module_names, strict=True)
        ],
        "fusion": {"dynamic": cfg.dynamic, "config": fusion_config},
        "head": {"name": FUSION_HEAD, "labels": plan.label_names, "layers": cfg.head_layers},
        "base_model": {"name": _portable(plan.base.name), "revision": plan.base.revision},
    }
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """Return a fusion artifact's manifest, or None for fusions saved without one."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(
            f"{path} is not readable JSON: {exc}", hint="Run: adapter-registry verify"
        ) from exc
    if not isinstance(data, dict):
        raise IntegrityError(f"{path} is not a JSON object.", hint="Run: adapter-registry verify")
    return data


def _portable(name: str) -> str:
    # As in backbone.BaseInfo.portable_name: never write this machine's absolute path.
    path = Path(name)
    return path.name if path.is_absolute() or name.startswith("~") else name


def _register(
    registry: Registry,
    *,
    plan: FusionPlan,
    cfg: FuseConfig,
    fusion_config: dict[str, Any],
    art: Path,
    trainable: int,
    result: FitResult,
    metrics: dict[str, dict[str, float]],
    eval_sets: dict[str, list[Example]],
    device: str,
    lineage: Sequence[EdgeIn],
) -> E.Fusion:
    fields = plan.fields
    task_row = registry.ensure_task(plan.task, plan.kind, plan.label_names, fields, plan.base.id)
    metric_rows: list[MetricIn] = []
    for split, rows in eval_sets.items():
        ds = registry.record_dataset(
            task_row.id, plan.source, split, len(rows), fingerprint(rows), label_distribution(rows)
        )
        for metric, value in metrics[split].items():
            metric_rows.append(MetricIn(metric, value, split, ds.id))
    for log in result.history:
        metric_rows.append(MetricIn("train_loss", log.train_loss, "train", None, log.epoch))
        if log.val_accuracy is not None:
            metric_rows.append(
                MetricIn("accuracy", log.val_accuracy, "validation", None, log.epoch)
            )
    run = {
        "hyperparams": {
            **cfg.to_dict(),
            "validation": plan.val_how,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_examples": len(plan.train_rows),
            "steps": result.steps,
            "label_names": plan.label_names,
            "members": [m.ref for m in plan.members],
        },
        "seed": cfg.seed,
        "library_versions": library_versions(),
        "wall_time_s": result.wall_time_s,
        "tokens_per_s": result.tokens_per_s,
        "device": device,
    }
    return registry.register_fusion(
        name=plan.name,
        task=plan.task,
        base_model_id=plan.base.id,
        member_ids=[m.id for m in plan.members],
        config={"dynamic": cfg.dynamic, **fusion_config},
        head={"labels": plan.label_names, "layers": cfg.head_layers},
        artifact_dir=art,
        trainable_params=trainable,
        training_run=run,
        metrics=metric_rows,
        lineage=list(lineage),
    )


def fusion_attention(
    registry: Registry,
    ref: str,
    data: Any,
    *,
    split: str = "validation",
    max_examples: int = 256,
) -> tuple[np.ndarray, list[str]]:
    """Return a fusion's mean attention per layer and member ([layers, members]) and member refs.

    Averaged over the real tokens of the first ``max_examples`` rows of ``split``; labels in the
    data are ignored.
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
        raise InvalidInput(f"max_examples must be at least 1, got {max_examples}.")
    bundle = load_spec(data, require_labels=False)
    rows = [Example(e.text_a, e.text_b, None) for e in bundle.split(split)[:max_examples]]
    if not rows:
        raise InvalidInput(f"Split {split!r} of {bundle.source} is empty.")
    task = registry.get_task_by_id(entity.task_id)
    if (task.kind == "pair") != bundle.pair:
        raise InvalidInput(
            f"{entity.ref} was trained on {task.kind}-text data, but {bundle.source} is "
            f"{'pair' if bundle.pair else 'single'}-text.",
            hint="Give data of the fusion's task.",
        )
    loaded = load_entity(registry, entity)
    members = loaded.setup
    assert isinstance(members, list)
    batches, _ = make_batches(
        loaded.backbone.tokenizer, rows, None, batch_size=32, shuffle=False, seed=0
    )
    total: np.ndarray | None = None
    weight = 0.0
    for batch in batches:
        tokens = float(batch["attention_mask"].sum())
        part = loaded.backbone.fusion_attention(batch, members) * tokens
        total = part if total is None else total + part
        weight += tokens
    if total is None or weight == 0:  # pragma: no cover - rows are non-empty
        raise NotFound("No tokens to measure attention on.")
    refs = [registry.get_adapter_version(mid).ref for mid in entity.member_ids]
    return total / weight, refs
