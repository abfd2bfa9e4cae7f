"""Hyper-parameters of adapter and fusion training, validated where they are made.

:class:`FitConfig` holds what the fit loop (:mod:`registry.fitting`) reads; :class:`TrainConfig`
and :class:`FuseConfig` add what adapter training and fusion training need. Every field carries
its help text in ``metadata["help"]``: the command line generates its options from these fields
(:mod:`registry.cli.options`), so ``train``, ``fuse`` and ``update`` cannot drift apart. Values
are checked in ``__post_init__``, so a bad setting is refused before any data or model loads.
Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from .errors import InvalidInput

#: The largest seed (torch seeds are 64-bit signed; SQLite integers too).
MAX_SEED = 2**63 - 1

#: Adapter methods that ``train`` creates (bottleneck adapters; AdapterFusion combines these).
TRAIN_METHODS = ("seq_bn", "double_seq_bn")

#: Numeric precision of training: ``auto`` is bf16 autocast on a GPU that supports it, else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Defaults that depend on the device (see :meth:`FitConfig.resolved`): on a CPU, batch 32 and
#: no token cap; on a GPU, larger batches (step launch overhead dominates small ones) capped by
#: a token budget, so a bucket of long rows does not run out of memory.
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256
GPU_MAX_TOKENS = 256 * 128

T = TypeVar("T", bound="FitConfig")


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass
class FitConfig:
    """What one run of the fit loop needs (shared by adapter and fusion training)."""

    epochs: int = field(default=3, metadata=_opt("Training epochs (at most; see --patience)."))
    lr: float = field(default=1e-3, metadata=_opt("Peak learning rate of AdamW."))
    batch_size: int | None = field(
        default=None,
        metadata=_opt(
            f"Rows per training batch [default: {CPU_BATCH_SIZE} on a CPU, "
            f"{GPU_BATCH_SIZE} on a GPU].",
            machine=True,
        ),
    )
    max_length: int = field(
        default=256, metadata=_opt("Token limit per row (longer rows are cut).")
    )
    seed: int = field(default=0, metadata=_opt("Seeds initialisation, batching and held-out rows."))
    warmup_ratio: float = field(
        default=0.1, metadata=_opt("Share of the steps that warm the learning rate up.")
    )
    weight_decay: float = field(default=0.01, metadata=_opt("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=_opt("Gradient clipping norm."))
    patience: int = field(
        default=2, metadata=_opt("Stop after this many epochs without a better validation score.")
    )
    class_weights: bool = field(
        default=False, metadata=_opt("Weight the loss by inverse class frequency.")
    )
    max_train_examples: int | None = field(
        default=None, metadata=_opt("Use only the first N training rows.")
    )
    head_layers: int = field(default=2, metadata=_opt("Layers of the classification head."))
    device: str = field(default="auto", metadata=_opt("cpu, cuda, or auto.", machine=True))
    threads: int | None = field(
        default=None, metadata=_opt("torch CPU threads (default: torch's choice).", machine=True)
    )
    precision: str = field(
        default="auto",
        metadata=_opt(
            "auto = bf16 autocast on a GPU that supports it, fp32 on a CPU; fp16 needs a GPU. "
            "Saved weights are fp32 either way.",
            choices=PRECISIONS,
            machine=True,
        ),
    )
    max_tokens: int | None = field(
        default=None,
        metadata=_opt(
            "Most padded tokens (rows x longest row) per training batch, on top of length "
            f"bucketing [default: no cap on a CPU, {GPU_MAX_TOKENS} on a GPU].",
            machine=True,
        ),
    )
    compile: bool = field(
        default=False,
        metadata=_opt("torch.compile the model before training (unmeasured on GPU).", machine=True),
    )

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _at_least(self, "epochs", 1, "--epochs 3")
        if self.batch_size is not None:
            _at_least(self, "batch_size", 1, "--batch-size 32")
        _at_least(self, "max_length", 8, "--max-length 256")
        _at_least(self, "patience", 1, "--patience 2")
        _at_least(self, "head_layers", 1, "--head-layers 2")
        _at_least(self, "seed", 0, "--seed 0")
        if self.seed > MAX_SEED:
            raise InvalidInput(f"seed must be ≤ {MAX_SEED}, got {self.seed}.", hint="e.g. --seed 0")
        if self.max_train_examples is not None:
            _at_least(self, "max_train_examples", 1, "--max-train-examples 1000")
        if self.threads is not None:
            _at_least(self, "threads", 1, "--threads 2")
        _positive(self, "lr", "--lr 1e-3")
        _positive(self, "max_grad_norm", "--max-grad-norm 1.0")
        _finite(self, "weight_decay", "--weight-decay 0.01", low=0.0)
        _finite(self, "warmup_ratio", "--warmup-ratio 0.1", low=0.0, high=1.0)
        device = self.device
        if not isinstance(device, str) or not (
            device in ("auto", "cpu") or device == "cuda" or device.startswith("cuda:")
        ):
            raise InvalidInput(
                f"device must be cpu, cuda, cuda:N or auto, got {device!r}.",
                hint="e.g. --device cpu",
            )
        if self.precision not in PRECISIONS:
            raise InvalidInput(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.",
                hint="e.g. --precision auto",
            )
        if self.precision == "fp16" and device == "cpu":
            raise InvalidInput(
                "fp16 training needs a GPU; a CPU has no fp16 autocast worth using.",
                hint="Use --precision bf16 (or fp32) with --device cpu.",
            )
        if self.max_tokens is not None:
            _at_least(self, "max_tokens", self.max_length, f"--max-tokens {64 * self.max_length}")

    def resolved(self: T, device: str, *, bf16_supported: bool = False) -> T:
        """Return a copy with the device-dependent defaults filled in for ``device``.

        ``device`` is what :func:`registry.runtime.pick_device` chose; ``bf16_supported``
        says whether that GPU runs bf16 (``precision=auto`` then picks it).

        Raises:
            InvalidInput: fp16 asked for on a CPU.
        """
        gpu = device.startswith("cuda")
        precision = self.precision
        if precision == "auto":
            precision = "bf16" if gpu and bf16_supported else "fp32"
        if precision == "fp16" and not gpu:
            raise InvalidInput(
                "fp16 training needs a GPU, and none was chosen.",
                hint="Use --precision bf16 (or fp32), or run where a GPU is: --device cuda.",
            )
        batch_size = self.batch_size or (GPU_BATCH_SIZE if gpu else CPU_BATCH_SIZE)
        max_tokens = self.max_tokens
        if max_tokens is None and gpu and self.batch_size is None:
            max_tokens = max(GPU_MAX_TOKENS, self.max_length)
        return replace(
            self, device=device, precision=precision, batch_size=batch_size, max_tokens=max_tokens
        )

    @property
    def rows_per_batch(self) -> int:
        """Return the batch size, resolved for a CPU when :meth:`resolved` has not run."""
        return self.batch_size or CPU_BATCH_SIZE

    @classmethod
    def recipe_fields(cls) -> tuple[str, ...]:
        """Return the fields that describe the learning recipe, not the machine it runs on.

        ``update`` carries these over from the current adapter's recorded run.
        """
        return tuple(f.name for f in fields(cls) if not f.metadata.get("machine"))

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict (recorded with the training run)."""
        return asdict(self)

    def fit_settings(self) -> dict[str, Any]:
        """Return the values of the :class:`FitConfig` fields only."""
        return {f.name: getattr(self, f.name) for f in fields(FitConfig)}


@dataclass
class TrainConfig(FitConfig):
    """Hyper-parameters of one adapter training run (recorded with the version)."""

    method: str = field(
        default="seq_bn",
        metadata=_opt("seq_bn = Pfeiffer, double_seq_bn = Houlsby.", choices=TRAIN_METHODS),
    )
    reduction_factor: float = field(
        default=16.0, metadata=_opt("Bottleneck reduction factor (hidden size / bottleneck).")
    )
    leave_out: list[int] = field(
        default_factory=list,
        metadata=_opt("Comma-separated layer indices without an adapter (AdapterDrop).", csv=True),
    )
    #: Cache the frozen layers below the first adapted one (needs leave_out 0..k-1); see
    #: registry.prefix_cache. Runs those frozen layers without dropout.
    cache_prefix: bool = field(
        default=False,
        metadata=_opt(
            "After epoch 1, reuse the frozen layers below --leave-out 0..k-1 (run without dropout)."
        ),
    )

    def _check(self) -> None:
        super()._check()
        if self.method not in TRAIN_METHODS:
            raise InvalidInput(
                f"Unknown adapter method {self.method!r}; valid: {', '.join(TRAIN_METHODS)}.",
                hint="e.g. --method seq_bn",
            )
        _positive(self, "reduction_factor", "--reduction-factor 16")
        if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.leave_out):
            raise InvalidInput(
                f"leave_out takes layer numbers ≥ 0, got {self.leave_out!r}.",
                hint="e.g. --leave-out 0,1",
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict, in the order versions have recorded it."""
        values = asdict(self)
        order = ("method", "reduction_factor", "leave_out", *_FIT_FIELDS, "cache_prefix")
        return {k: values[k] for k in order}


@dataclass
class FuseConfig(FitConfig):
    """Hyper-parameters of one fusion training run (recorded with the fusion)."""

    epochs: int = field(default=5, metadata=_opt("Training epochs (at most; see --patience)."))
    lr: float = field(default=5e-4, metadata=_opt("Peak learning rate of AdamW."))
    dynamic: bool = field(
        default=True, metadata=_opt("Dynamic fusion (with a value matrix) rather than static.")
    )
    init_head: bool = field(
        default=True,
        metadata=_opt("Start the head from a member's trained head with the same labels."),
    )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict, in the order fusions have recorded it."""
        values = asdict(self)
        order = ("dynamic", *_FUSE_FIT_ORDER, "init_head")
        return {k: values[k] for k in order}

    def train_config(self) -> FitConfig:
        """Return the :class:`FitConfig` part (what :func:`registry.fitting.fit` reads)."""
        return FitConfig(**self.fit_settings())


_FIT_FIELDS = tuple(f.name for f in fields(FitConfig))
#: Fusions have recorded max_train_examples after threads.
_FUSE_FIT_ORDER = (*(n for n in _FIT_FIELDS if n != "max_train_examples"), "max_train_examples")


def _value(config: object, name: str) -> Any:
    return getattr(config, name)


def _number(config: object, name: str, example: str) -> float:
    value = _value(config, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number, got {value!r}.", hint=f"e.g. {example}")
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value}.", hint=f"e.g. {example}")
    return float(value)


def _at_least(config: object, name: str, low: int, example: str) -> None:
    value = _value(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(
            f"{name.replace('_', ' ')} must be a whole number ≥ {low}, got {value!r}.",
            hint=f"e.g. {example}",
        )


def _positive(config: object, name: str, example: str) -> None:
    if not _number(config, name, example) > 0:
        raise InvalidInput(
            f"{name.replace('_', ' ')} must be > 0, got {_value(config, name)}.",
            hint=f"e.g. {example}",
        )


def _finite(
    config: object, name: str, example: str, *, low: float, high: float | None = None
) -> None:
    value = _number(config, name, example)
    if value < low or (high is not None and value > high):
        bounds = f"≥ {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInput(
            f"{name.replace('_', ' ')} must be {bounds}, got {value}.", hint=f"e.g. {example}"
        )


__all__ = ["PRECISIONS", "TRAIN_METHODS", "FitConfig", "FuseConfig", "TrainConfig"]
