"""Train a NEW task adapter (+ head) on a frozen base model and register it with its lineage.

Earlier adapters are never touched: their artifacts are content-addressed and read-only, and
:func:`train` re-verifies every earlier artifact's sha256 after training as proof.
The training loop (:func:`fit`) is shared with the composer.
"""

from __future__ import annotations

import math
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import DataBundle, Example, fingerprint, label_distribution, load_spec, spec_label
from .errors import IntegrityError, Interrupted, InvalidInput, NotFound
from .store import EdgeIn, MetricIn, Registry

if TYPE_CHECKING:
    from torch import Tensor

    from .backbone import Backbone
    from .prefix_cache import PrefixCache

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (recorded with the version)."""

    method: str = "seq_bn"
    reduction_factor: float = 16.0
    leave_out: list[int] = field(default_factory=list)
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    max_length: int = 256
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    patience: int = 2
    class_weights: bool = False
    max_train_examples: int | None = None
    head_layers: int = 2
    device: str = "auto"
    threads: int | None = None
    #: Cache the frozen layers below the first adapted one (needs leave_out 0..k-1); see
    #: registry.prefix_cache. Runs those frozen layers without dropout.
    cache_prefix: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict."""
        return asdict(self)


@dataclass
class EpochLog:
    """Loss and validation scores after one epoch."""

    epoch: int
    train_loss: float
    val_accuracy: float | None
    val_macro_f1: float | None
    train_time_s: float = 0.0


@dataclass
class FitResult:
    """What :func:`fit` measured."""

    best_epoch: int
    history: list[EpochLog]
    wall_time_s: float
    train_time_s: float
    real_tokens: int
    steps: int

    @property
    def tokens_per_s(self) -> float:
        """Return real (unpadded) training tokens per second of training time."""
        return self.real_tokens / self.train_time_s if self.train_time_s > 0 else 0.0


@dataclass
class TrainOutcome:
    """A freshly registered adapter version and what proves nothing else changed."""

    version: E.AdapterVersion
    metrics: dict[str, dict[str, float]]
    fit: FitResult
    earlier_artifacts_verified: int


def pick_device(requested: str) -> str:
    """Return ``cuda`` when asked for (or ``auto`` and available), else ``cpu``."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput("CUDA was requested but no GPU is available.", hint="Use --device cpu")
    return requested


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    """Return the versions that decide numerical results."""
    import adapters  # noqa: F401  (version only; backbone owns the API)
    import torch
    import transformers

    from . import __version__

    return {
        "adapter-registry": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adapters": _dist_version("adapters"),
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def class_weight_tensor(examples: Sequence[Example], label_names: list[str]) -> Tensor:
    """Return inverse-frequency class weights ``n / (K * n_c)`` (1.0 for absent classes)."""
    import torch

    counts = label_distribution(list(examples))
    n = sum(counts.values())
    k = len(label_names)
    weights = [n / (k * counts[lab]) if counts.get(lab) else 1.0 for lab in label_names]
    return torch.tensor(weights, dtype=torch.float32)


def evaluate_batches(
    backbone: Backbone, batches: list[dict[str, Tensor]], label_names: list[str]
) -> dict[str, float]:
    """Return accuracy, macro-F1 and per-class F1 of the active setup on labelled batches."""
    from .evaluate import classification_metrics

    y_true: list[int] = []
    y_pred: list[int] = []
    for batch in batches:
        logits = backbone.logits(batch)
        y_pred.extend(int(i) for i in logits.argmax(dim=-1).tolist())
        y_true.extend(int(i) for i in batch["labels"].tolist())
    if not y_true:
        raise InvalidInput("Nothing to evaluate: the split has no labelled rows.")
    return classification_metrics(y_true, y_pred, label_names)


def fit(
    backbone: Backbone,
    train_batches: list[dict[str, Tensor]],
    val_batches: list[dict[str, Tensor]],
    label_names: list[str],
    config: TrainConfig,
    *,
    class_weights: Tensor | None = None,
    extra_loss: Callable[[], Tensor | None] | None = None,
    progress: bool = True,
    desc: str = "training",
    prefix_cache: PrefixCache | None = None,
) -> FitResult:
    """Train the backbone's trainable parameters; keep the best validation epoch.

    AdamW with a linear schedule and warm-up, gradient clipping, early stopping after
    ``config.patience`` epochs without a better validation score. At the end the best
    epoch's trainable tensors are restored (the registry keeps the best, not the last).
    With ``prefix_cache``, training steps go through it (frozen prefix without dropout, and
    after the first sight of a batch only the layers above the prefix run).
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    params = [p for _, p in backbone.trainable_parameters()]
    if not params:
        raise InvalidInput("Nothing to train: no parameter requires a gradient.")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = max(1, config.epochs * len(train_batches))
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    weights = class_weights.to(backbone.device) if class_weights is not None else None
    rng = random.Random(config.seed)
    history: list[EpochLog] = []
    best_key: tuple[float, float] = (-math.inf, -math.inf)
    best_state: dict[str, Tensor] | None = None
    best_epoch = 0
    stale = 0
    real_tokens = 0
    steps = 0
    train_time = 0.0
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, unit="step", leave=False)
    try:
        for epoch in range(1, config.epochs + 1):
            backbone.model.train()
            order = list(range(len(train_batches)))
            rng.shuffle(order)
            losses = []
            t0 = time.perf_counter()
            for i in order:
                batch = train_batches[i]
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                if prefix_cache is not None:
                    logits = prefix_cache.logits(inputs)
                else:
                    _, logits = backbone.forward(inputs)
                loss = F.cross_entropy(logits, batch["labels"].to(backbone.device), weight=weights)
                if extra_loss is not None:
                    reg = extra_loss()
                    if reg is not None:
                        loss = loss + reg
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                real_tokens += int(batch["attention_mask"].sum())
                steps += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
            epoch_time = time.perf_counter() - t0
            train_time += epoch_time
            val = evaluate_batches(backbone, val_batches, label_names) if val_batches else None
            log = EpochLog(
                epoch=epoch,
                train_loss=sum(losses) / max(1, len(losses)),
                val_accuracy=val["accuracy"] if val else None,
                val_macro_f1=val["macro_f1"] if val else None,
                train_time_s=epoch_time,
            )
            history.append(log)
            key = (val["accuracy"], val["macro_f1"]) if val else (float(epoch), 0.0)
            if key > best_key:
                best_key, best_epoch, stale = key, epoch, 0
                best_state = {n: p.detach().clone() for n, p in backbone.trainable_parameters()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
    finally:
        bar.close()
    if best_state is not None:
        with torch.no_grad():
            for name, param in backbone.trainable_parameters():
                param.copy_(best_state[name])
    backbone.model.eval()
    return FitResult(
        best_epoch=best_epoch,
        history=history,
        wall_time_s=time.perf_counter() - start,
        train_time_s=train_time,
        real_tokens=real_tokens,
        steps=steps,
    )


def split_validation(bundle: DataBundle, seed: int) -> tuple[list[Example], list[Example], str]:
    """Return (train, validation, how): the bundle's validation split, or 10% held out."""
    train = bundle.split(TRAIN_SPLIT)
    if VALIDATION_SPLIT in bundle.splits and bundle.splits[VALIDATION_SPLIT]:
        return train, bundle.splits[VALIDATION_SPLIT], VALIDATION_SPLIT
    if len(train) < 10:
        return train, [], "none"
    idx = list(range(len(train)))
    random.Random(seed).shuffle(idx)
    cut = max(1, len(train) // 10)
    held = set(idx[:cut])
    return (
        [e for i, e in enumerate(train) if i not in held],
        [e for i, e in enumerate(train) if i in held],
        "held-out 10% of train",
    )


def prepare_task(
    registry: Registry,
    task: str,
    bundle: DataBundle,
    base_name: str,
    base_revision: str,
) -> tuple[list[str], str, list[str]]:
    """Check data against the task (if registered) without writing; return labels, kind, fields.

    Raises:
        InvalidInput: a different label set, kind or base model than the registered task.
    """
    kind = "pair" if bundle.pair else "single"
    fields = ["text_a", "text_b"] if bundle.pair else ["text"]
    try:
        existing = registry.get_task(task)
    except NotFound:
        from .data import infer_label_names

        return infer_label_names(bundle), kind, fields
    if existing.kind != kind:
        raise InvalidInput(
            f"Task {task!r} is a {existing.kind}-text task, but the data is {kind}-text.",
            hint="Check --text-fields, or use another task name.",
        )
    if existing.base_model_id is not None:
        base = registry.get_base_model(existing.base_model_id)
        if (base.name, base.revision) != (
            base_name,
            base_revision,
        ) and base.revision != base_revision:
            raise InvalidInput(
                f"Task {task!r} is registered on base model {base.name} (revision "
                f"{base.revision[:12]}), not {base_name} (revision {base_revision[:12]}): adapters "
                "of one task must share a base model.",
                hint=f"Train with --base {base.name}, or use another task name.",
            )
    return list(existing.label_names), kind, fields


def check_labels(bundle: DataBundle, label_names: list[str]) -> None:
    """Refuse any labelled row whose label is outside the task's label set."""
    allowed = set(label_names)
    for split, rows in bundle.splits.items():
        for i, ex in enumerate(rows):
            if ex.label is not None and ex.label not in allowed:
                raise InvalidInput(
                    f"Row {i + 1} of split {split!r} has label {ex.label!r}, which is not one of "
                    f"the task's labels {label_names}.",
                    hint="Fix the data, or register it under a new task name.",
                )


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
    full_finetune: bool = False,
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
        full_finetune: benchmark mode only (never registered): train every parameter.

    Raises:
        InvalidInput: bad data, labels, base model, or hyper-parameters (before any training).
        Interrupted: Ctrl-C; nothing is registered.
    """
    from .backbone import Backbone, resolve_base
    from .data import make_batches

    cfg = config or TrainConfig()
    name = name or task
    from .store import validate_name

    validate_name(task, "task name")
    validate_name(name, "adapter name")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.max_length < 8:
        raise InvalidInput(
            "epochs and batch size must be ≥ 1, lr > 0, max length ≥ 8.",
            hint="e.g. --epochs 3 --batch-size 32 --lr 1e-3 --max-length 256",
        )
    # Everything that can refuse happens before the model is loaded or trained.
    bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    info = resolve_base(base)
    label_names, kind, fields = prepare_task(registry, task, bundle, info.name, info.revision)
    check_labels(bundle, label_names)
    train_rows, val_rows, val_how = split_validation(bundle, cfg.seed)
    if cfg.max_train_examples is not None:
        train_rows = train_rows[: cfg.max_train_examples]
    if not train_rows:
        raise InvalidInput("The train split is empty.", hint="Give data with a train split.")
    init_entity = registry.resolve(init_from) if init_from else None
    if init_entity is not None and not isinstance(init_entity, E.AdapterVersion):
        raise InvalidInput(f"--init-from must name an adapter version, not {init_entity.kind}.")
    drift_report = registry.get_drift_report(after_drift) if after_drift is not None else None
    if init_entity is not None and init_entity.base_model_id is not None:
        init_base = registry.get_base_model(init_entity.base_model_id)
        if init_base.revision != info.revision:
            raise InvalidInput(
                f"{init_entity.ref} was trained on another base model ({init_base.name}).",
                hint="Warm-start only from adapters on the same base model.",
            )
    cache_layers = _cached_prefix_layers(cfg, init_entity, full_finetune, info.num_layers)
    earlier = registry.referenced_artifacts()

    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    try:
        backbone = Backbone.load(base, device=device)
        profile = None
        if not full_finetune:
            from .profiles import build_profile

            profile = build_profile(
                backbone,
                train_rows,
                dataset_fingerprint=fingerprint(train_rows),
                seed=cfg.seed,
                max_length=cfg.max_length,
            )
        module = "adapter"
        if init_entity is not None:
            backbone.load_adapter(registry.artifact_path(init_entity), module)
            if backbone.head_labels(module) != label_names:
                raise InvalidInput(f"{init_entity.ref} has other labels than task {task!r}.")
            adapter_config = dict(init_entity.config)
        else:
            adapter_config = backbone.add_adapter(
                module, cfg.method, cfg.reduction_factor, cfg.leave_out or None
            )
            backbone.add_head(module, label_names, layers=cfg.head_layers)
        if full_finetune:
            backbone.activate(module, module)
            backbone.unfreeze_all()
        else:
            backbone.train_adapter(module)
        seed_everything(cfg.seed)
        batches = {
            "train": make_batches(
                backbone.tokenizer,
                train_rows,
                label_names,
                batch_size=cfg.batch_size,
                max_length=cfg.max_length,
                shuffle=True,
                seed=cfg.seed,
            )[0]
        }
        val_batches = (
            make_batches(
                backbone.tokenizer,
                val_rows,
                label_names,
                batch_size=cfg.batch_size,
                max_length=cfg.max_length,
                shuffle=False,
                seed=cfg.seed,
            )[0]
            if val_rows
            else []
        )
        weights = class_weight_tensor(train_rows, label_names) if cfg.class_weights else None
        prefix_cache = None
        if cache_layers:
            from .prefix_cache import PrefixCache

            prefix_cache = PrefixCache(
                backbone,
                cache_layers,
                base_revision=info.revision,
                data_fingerprint=fingerprint(train_rows),
                max_length=cfg.max_length,
            )
        result = fit(
            backbone,
            batches["train"],
            val_batches,
            label_names,
            cfg,
            class_weights=weights,
            progress=progress,
            desc=f"train {name}",
            prefix_cache=prefix_cache,
        )
        del prefix_cache  # free the cached hidden states before evaluation
        eval_sets = _labelled_splits(bundle, train_rows, val_rows, val_how)
        metrics = {
            split: evaluate_batches(
                backbone,
                make_batches(
                    backbone.tokenizer,
                    rows,
                    label_names,
                    batch_size=64,
                    max_length=cfg.max_length,
                    shuffle=False,
                    seed=0,
                )[0],
                label_names,
            )
            for split, rows in eval_sets.items()
        }
        if full_finetune:
            raise _FullFinetuneDone(metrics, result)
        trainable = backbone.count_parameters()
        with tempfile.TemporaryDirectory(prefix="adapter-registry-") as tmp:
            art = Path(tmp) / "adapter"
            backbone.save_adapter(module, art)
            prof_dir = None
            if profile is not None:
                from .profiles import save_profile

                prof_dir = save_profile(profile, Path(tmp) / "profile")
            version = _register(
                registry,
                task=task,
                name=name,
                kind=kind,
                fields=fields,
                label_names=label_names,
                info=info,
                bundle=bundle,
                eval_sets=eval_sets,
                source=spec_label(data),
                cfg=cfg,
                adapter_config=adapter_config,
                art=art,
                prof_dir=prof_dir,
                trainable=trainable,
                result=result,
                metrics=metrics,
                device=device,
                val_how=val_how,
                init_entity=init_entity,
                drift_report=drift_report,
            )
    except KeyboardInterrupt as err:
        raise Interrupted(
            "Training was interrupted: nothing was registered.",
            hint="Run the same command again to start over.",
        ) from err
    verified = _verify_untouched(registry, earlier)
    return TrainOutcome(version, metrics, result, verified)


def _cached_prefix_layers(
    cfg: TrainConfig,
    init_entity: E.AdapterVersion | None,
    full_finetune: bool,
    num_layers: int,
) -> int:
    """Return how many frozen lower layers ``cache_prefix`` caches (0 when it is off).

    Raises:
        InvalidInput: ``cache_prefix`` without ``leave_out`` covering layer 0, or with full
            fine-tuning (nothing is frozen then).
    """
    if not cfg.cache_prefix:
        return 0
    from .prefix_cache import frozen_prefix_length

    if full_finetune:
        raise InvalidInput("cache_prefix needs a frozen base; full fine-tuning trains every layer.")
    leave_out = init_entity.config.get("leave_out", []) if init_entity else cfg.leave_out
    k = min(frozen_prefix_length(leave_out or []), num_layers)
    if k == 0:
        raise InvalidInput(
            "--cache-prefix caches the layers below the first adapted one, but the adapter is "
            f"not left out of layer 0 (leave_out={list(leave_out or [])}).",
            hint="Add --leave-out 0,1,...,k-1 (AdapterDrop), or drop --cache-prefix.",
        )
    return k


class _FullFinetuneDone(Exception):
    """Carries full fine-tuning results out of :func:`train` (benchmarks only)."""

    def __init__(self, metrics: dict[str, dict[str, float]], fit: FitResult) -> None:
        super().__init__("full fine-tuning finished")
        self.metrics = metrics
        self.fit = fit


def _labelled_splits(
    bundle: DataBundle, train_rows: list[Example], val_rows: list[Example], val_how: str
) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {"train": train_rows}
    if val_rows:
        out[VALIDATION_SPLIT] = val_rows
    for split, rows in bundle.splits.items():
        if split in out or split == TRAIN_SPLIT:
            continue
        labelled = [e for e in rows if e.label is not None]
        if labelled and len(labelled) == len(rows):
            out[split] = rows
    return out


def _register(
    registry: Registry,
    *,
    task: str,
    name: str,
    kind: str,
    fields: list[str],
    label_names: list[str],
    info: Any,
    bundle: DataBundle,
    eval_sets: dict[str, list[Example]],
    source: str,
    cfg: TrainConfig,
    adapter_config: dict[str, Any],
    art: Path,
    prof_dir: Path | None,
    trainable: int,
    result: FitResult,
    metrics: dict[str, dict[str, float]],
    device: str,
    val_how: str,
    init_entity: E.AdapterVersion | None,
    drift_report: E.DriftReport | None,
) -> E.AdapterVersion:
    base = registry.ensure_base_model(
        info.name, info.revision, info.architecture, info.hidden_size, info.num_layers
    )
    task_row = registry.ensure_task(task, kind, label_names, fields, base.id)
    metric_rows: list[MetricIn] = []
    for split, rows in eval_sets.items():
        ds = registry.record_dataset(
            task_row.id, source, split, len(rows), fingerprint(rows), label_distribution(rows)
        )
        for metric, value in metrics[split].items():
            metric_rows.append(MetricIn(metric, value, split, ds.id))
    for log in result.history:
        metric_rows.append(MetricIn("train_loss", log.train_loss, "train", None, log.epoch))
        if log.val_accuracy is not None:
            metric_rows.append(
                MetricIn("accuracy", log.val_accuracy, "validation", None, log.epoch)
            )
    lineage = []
    if init_entity is not None:
        lineage.append(EdgeIn("adapter", init_entity.id, "warm_started_from"))
    if drift_report is not None:
        lineage.append(EdgeIn("drift", drift_report.id, "trained_after_drift"))
    run = {
        "hyperparams": {
            **cfg.to_dict(),
            "validation": val_how,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_examples": len(eval_sets["train"]),
            "steps": result.steps,
            "label_names": label_names,
        },
        "seed": cfg.seed,
        "library_versions": library_versions(),
        "wall_time_s": result.wall_time_s,
        "tokens_per_s": result.tokens_per_s,
        "device": device,
    }
    return registry.register_adapter_version(
        name=name,
        task=task,
        base_model_id=base.id,
        method=str(adapter_config.get("architecture") or cfg.method)
        if init_entity is None
        else init_entity.method,
        config=adapter_config,
        artifact_dir=art,
        trainable_params=trainable,
        training_run=run,
        metrics=metric_rows,
        lineage=lineage,
        profile_dir=prof_dir,
    )


def _verify_untouched(registry: Registry, earlier: dict[str, str]) -> int:
    """Re-hash every artifact that existed before training; raise if any byte changed."""
    for sha, what in earlier.items():
        try:
            registry.artifacts.verify(sha, what)
        except IntegrityError:
            raise
        except NotFound:
            continue  # removed by someone else meanwhile; verify reports it, not our doing
    return len(earlier)


def full_finetune(
    task: str, data: Any, base: str, config: TrainConfig | None = None, progress: bool = False
) -> tuple[dict[str, dict[str, float]], FitResult]:
    """Fully fine-tune a base model + head (a baseline for benchmarks; nothing is registered)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Registry.init(Path(tmp) / "scratch")
        try:
            train(scratch, task, data, base, config=config, progress=progress, full_finetune=True)
        except _FullFinetuneDone as done:
            return done.metrics, done.fit
        finally:
            scratch.close()
    raise AssertionError("unreachable")  # pragma: no cover
