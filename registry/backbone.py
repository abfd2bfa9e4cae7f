"""Base encoder, adapters, fusion layers and heads: with :mod:`registry.backbone_run` (running
the model, a mixin of :class:`Backbone`), the only code that imports ``adapters``.

A :class:`Backbone` wraps an ``adapters`` flexible-head model (``AutoAdapterModel``) and its
tokenizer. Everything the registry stores goes through :meth:`Backbone.save_adapter` and
:meth:`Backbone.save_fusion`, which write safetensors only, and everything it loads goes through
:meth:`Backbone.load_adapter` / :meth:`Backbone.load_fusion`, which refuse pickle weights.

Saved ``adapter_config.json`` / ``head_config.json`` / ``adapter_fusion_config.json`` files carry a
``model_name``. ``adapters`` fills it from ``config.name_or_path``, which for a local base model is
this machine's absolute path. We write :attr:`BaseInfo.portable_name` instead: the Hub id for a Hub
model, the name exactly as the user gave it for a relative local path, and only the folder's base
name for an absolute (or ``~``) path, so artifacts are identical across machines.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import layout
from .backbone_base import BaseInfo as BaseInfo
from .backbone_base import TokenLimitNote as TokenLimitNote
from .backbone_base import _position_limit
from .backbone_base import resolve_base as resolve_base
from .backbone_base import weight_files as weight_files
from .backbone_base import weights_digest as weights_digest
from .backbone_run import ModelRunner
from .errors import AlreadyExists, IntegrityError, InvalidInput, NotFound, RegistryError
from .layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FUSION_CONFIG,
    HEAD_CONFIG,
)

METHODS = layout.BOTTLENECK_METHODS

#: What the engine logs on every forward pass while adapters are loaded but none is active:
#: the registry runs the frozen base on purpose (profiles, drift), so it is noise here.
_INACTIVE_NOTICE = "There are adapters available but none are activated"


class _DropInactiveNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _INACTIVE_NOTICE not in record.getMessage()


logging.getLogger("adapters.model_mixin").addFilter(_DropInactiveNotice())


def _fusion_name(members: list[str]) -> str:
    return layout.fusion_name(members)


class Backbone(ModelRunner):
    """A base encoder plus adapters, fusion layers and classification heads."""

    def __init__(self, model: Any, tokenizer: Any, info: BaseInfo, device: str = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.device = device

    # ----------------------------------------------------------------- loading the base
    @classmethod
    def load(cls, name_or_path: str, revision: str | None = None, device: str = "cpu") -> Backbone:
        """Load a base model and its tokenizer, in eval mode with the default dtype."""
        import adapters
        from transformers import AutoTokenizer

        info = resolve_base(name_or_path, revision)
        source = info.local_path or info.name
        # Hub models load at the resolved commit, so a moving branch cannot change the weights.
        pin: dict[str, Any] = {} if info.local_path else {"revision": info.revision}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **pin)  # type: ignore[no-untyped-call]
            model = adapters.AutoAdapterModel.from_pretrained(source, **pin)
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput(
                f"Could not load base model {name_or_path}: {exc}",
                hint="The folder needs config.json, weights and tokenizer files.",
            ) from exc
        info = info.with_hub_weights()  # a Hub model's weights are in the cache now
        model.to(device)
        model.eval()
        limit = _position_limit(model.config)
        if limit is not None and not 0 < tokenizer.model_max_length <= limit:
            # Rows longer than the model's positions crash the embedding layer: the tokenizer
            # cuts there whatever max_length a caller asks for (see registry.data.make_batches).
            tokenizer.model_max_length = limit
        return cls(model, tokenizer, info, device)

    @property
    def token_limit(self) -> int:
        """The most tokens one row may have on this model (its position embeddings)."""
        return int(self.tokenizer.model_max_length)

    def length_for(self, max_length: int) -> int:
        """Return ``max_length`` clamped to :attr:`token_limit`, warning when it is cut."""
        if max_length <= self.token_limit:
            return max_length
        warnings.warn(
            TokenLimitNote(
                f"--max-length {max_length} is above the {self.token_limit} positions of base "
                f"model {self.info.name}: rows are cut at {self.token_limit} tokens."
            ),
            stacklevel=2,
        )
        return self.token_limit

    # ----------------------------------------------------------------- adding modules
    def add_adapter(
        self,
        name: str,
        method: str = "seq_bn",
        reduction_factor: float = 16,
        leave_out: list[int] | None = None,
    ) -> dict[str, Any]:
        """Add a bottleneck adapter and return its config as a JSON-able dict."""
        import adapters

        configs = {"seq_bn": adapters.SeqBnConfig, "double_seq_bn": adapters.DoubleSeqBnConfig}
        if method not in configs:
            raise InvalidInput(
                f"Unknown adapter method {method!r}; valid choices: {', '.join(METHODS)}.",
                hint="Use seq_bn (Pfeiffer) or double_seq_bn (Houlsby).",
            )
        if reduction_factor <= 0:
            raise InvalidInput(
                f"reduction_factor must be positive, got {reduction_factor}.",
                hint="e.g. --reduction-factor 16",
            )
        bad = [i for i in leave_out or [] if not 0 <= i < self.info.num_layers]
        if bad:
            raise InvalidInput(
                f"leave_out layers {bad} are outside 0..{self.info.num_layers - 1}.",
                hint="Leave out only layers the base model has (--leave-out).",
            )
        if name in self.model.adapters_config.adapters:
            raise AlreadyExists(
                f"An adapter named {name!r} is already loaded.",
                hint="Load it under another name, or unload it first.",
            )
        config = configs[method](reduction_factor=reduction_factor, leave_out=list(leave_out or []))
        self.model.add_adapter(name, config=config)
        saved: dict[str, Any] = _jsonable(config.to_dict())
        return saved

    def add_head(self, name: str, label_names: list[str], layers: int = 2) -> None:
        """Add a classification head whose class ids map to ``label_names`` in order."""
        if len(label_names) < 2 or len(set(label_names)) != len(label_names):
            raise InvalidInput(
                f"A classification head needs at least two distinct labels, got {label_names}.",
                hint="Give data with two or more labels.",
            )
        if name in self.model.heads:
            raise AlreadyExists(
                f"A head named {name!r} is already loaded.", hint="Add the head under another name."
            )
        self.model.add_classification_head(
            name,
            num_labels=len(label_names),
            layers=layers,
            id2label=dict(enumerate(label_names)),
        )
        self.model.to(self.device)

    def add_fusion(self, members: list[str], dynamic: bool = True) -> dict[str, Any]:
        """Add an AdapterFusion layer over loaded adapters and return its config dict."""
        import adapters

        self._require_adapters(members)
        if len(set(members)) != len(members):
            raise InvalidInput(
                f"Fusion members must be distinct, got {members}.",
                hint="Name each member adapter once.",
            )
        name = _fusion_name(members)
        if name in self.model.adapters_config.fusions:
            raise AlreadyExists(
                f"A fusion over {members} is already loaded.",
                hint="Load it under its own name (load_fusion(name=...)).",
            )
        self.model.add_adapter_fusion(adapters.Fuse(*members), "dynamic" if dynamic else "static")
        self.model.to(self.device)
        config, _ = self.model.adapters_config.get_fusion(name)
        saved: dict[str, Any] = _jsonable(config.to_dict())
        return saved

    def copy_head(self, source: str, target: str) -> bool:
        """Copy ``source`` head's weights into ``target``; return False if their shapes differ."""
        self._require_head(source)
        self._require_head(target)
        if self.head_labels(source) != self.head_labels(target):
            return False
        try:
            self.model.heads[target].load_state_dict(self.model.heads[source].state_dict())
        except RuntimeError:
            return False
        return True

    def unfreeze_all(self) -> None:
        """Make every parameter trainable (full fine-tuning, for benchmarks)."""
        for param in self.model.parameters():
            param.requires_grad = True
        self.model.train()

    # ----------------------------------------------------------------- training setups
    def train_adapter(self, name: str) -> None:
        """Freeze everything except adapter ``name`` and the head of the same name."""
        self._require_adapters([name])
        self._require_head(name)
        self.model.train_adapter(name)
        # adapters calls train() on the base model only, leaving the head's dropout in eval mode.
        self.model.train()
        # adapters' train_adapter freezes only base_model; heads live outside it and stay
        # trainable, so every other head must be frozen here.
        self._freeze_heads_except(name)
        self.model.active_head = name
        self._check_trainable(lambda n: f"adapters.{name}." in n or n.startswith(f"heads.{name}."))

    def train_fusion(self, members: list[str], head: str) -> None:
        """Freeze everything except the fusion layer over ``members`` and ``head``."""
        import adapters

        self._require_fusion(members)
        self._require_head(head)
        # unfreeze_adapters=False keeps member adapters frozen: the registry never changes them.
        self.model.train_adapter_fusion(adapters.Fuse(*members), unfreeze_adapters=False)
        self.model.train()  # as in train_adapter: adapters sets only the base model to train
        self._freeze_heads_except(head)
        self.model.active_head = head
        fusion = _fusion_name(members)
        self._check_trainable(
            lambda n: layout.fusion_key_prefix(fusion) in n or n.startswith(f"heads.{head}.")
        )

    def activate(
        self, adapter_or_members: str | list[str], head: str, fusion_name: str | None = None
    ) -> None:
        """Use one adapter (a name) or a fusion (a list of names) with ``head`` in forward.

        ``fusion_name`` picks a fusion loaded under its own name (see :meth:`load_fusion`).
        """
        import adapters

        self._require_head(head)
        if isinstance(adapter_or_members, str):
            self._require_adapters([adapter_or_members])
            self.model.set_active_adapters(adapter_or_members)
        else:
            self._require_fusion(adapter_or_members, fusion_name)
            self.model.set_active_adapters(adapters.Fuse(*adapter_or_members, name=fusion_name))
        self.model.active_head = head

    # ----------------------------------------------------------------- save / load
    def save_adapter(self, name: str, folder: Path) -> None:
        """Write adapter ``name`` and its head (configs + safetensors) into ``folder``."""
        self._require_adapters([name])
        self._require_head(name)
        folder = self._fresh_folder(folder)
        with self._portable_model_name():
            self.model.save_adapter(str(folder), name, with_head=True, use_safetensors=True)
        self._check_saved(folder, list(layout.ADAPTER_FILES))

    def load_adapter(self, folder: Path, name: str) -> str:
        """Load an adapter (and its head, when the folder has one) under ``name``."""
        folder = Path(folder)
        # Adapters published without a head (e.g. on AdapterHub) can still be fused.
        with_head = (folder / HEAD_CONFIG).is_file()
        head_files = list(layout.HEAD_FILES) if with_head else []
        self._check_loadable(folder, [ADAPTER_CONFIG, ADAPTER_WEIGHTS, *head_files])
        if name in self.model.adapters_config.adapters or name in self.model.heads:
            raise AlreadyExists(
                f"An adapter or head named {name!r} is already loaded.",
                hint="Load it under another name.",
            )
        with self._loading(folder, "adapter") as loading_info:
            loaded = self.model.load_adapter(
                str(folder),
                load_as=name,
                with_head=with_head,
                use_safetensors=True,
                loading_info=loading_info,
            )
        return str(loaded)

    def save_fusion(self, members: list[str], folder: Path, head: str) -> None:
        """Write the fusion layer over ``members`` and ``head`` (configs + safetensors).

        Member adapters are not included: store and load them separately, under the same names.
        """
        self._require_fusion(members)
        self._require_head(head)
        folder = self._fresh_folder(folder)
        with self._portable_model_name():
            self.model.save_adapter_fusion(
                str(folder), _fusion_name(members), with_head=head, use_safetensors=True
            )
        self._check_saved(folder, list(layout.FUSION_FILES))

    def load_fusion(
        self, folder: Path, members: list[str], head: str, name: str | None = None
    ) -> None:
        """Load a fusion layer and its head saved by :meth:`save_fusion`; members must be loaded.

        With ``name`` the layer is loaded under that name, so several fusions over the same
        members can live in one model (activate them with ``fusion_name``).
        """
        import json

        folder = Path(folder)
        self._check_loadable(folder, list(layout.FUSION_FILES))
        self._require_adapters(members)
        saved = json.loads((folder / FUSION_CONFIG).read_text(encoding="utf-8"))
        if list(saved.get("adapter_names", [])) != list(members):
            raise InvalidInput(
                f"The fusion in {folder} is over {saved.get('adapter_names')}, not {members}.",
                hint="Load the member adapters under the names the fusion was saved with.",
            )
        fusion = name or _fusion_name(members)
        if fusion in self.model.adapters_config.fusions:
            raise AlreadyExists(
                f"A fusion over {members} named {fusion!r} is already loaded.",
                hint="Load it under another name.",
            )
        if head in self.model.heads:
            raise AlreadyExists(
                f"A head named {head!r} is already loaded.",
                hint="Load the fusion's head under another name.",
            )
        with self._loading(folder, "fusion") as loading_info:
            self.model.load_adapter_fusion(
                str(folder),
                load_as=name,
                use_safetensors=True,
                with_head=False,
                loading_info=loading_info,
            )
            self.model.load_head(str(folder), load_as=head, use_safetensors=True)

    def unload(
        self,
        adapters: Sequence[str] = (),
        *,
        fusion: str | None = None,
        heads: Sequence[str] = (),
    ) -> None:
        """Remove adapters, a fusion layer (by its name) and heads from the live model.

        Whatever is not loaded is skipped, so unloading is idempotent. The caller decides what
        no other loaded entity still uses.
        """
        if fusion is not None and fusion in self.model.adapters_config.fusions:
            self.model.delete_adapter_fusion(fusion)
        for head in heads:
            if head in self.model.heads:
                self.model.delete_head(head)
        for name in adapters:
            if name in self.model.adapters_config.adapters:
                self.model.delete_adapter(name)

    def parameter_bytes(self) -> tuple[int, int]:
        """Return (all parameter bytes, bytes of the base encoder alone)."""
        total = base = 0
        for name, p in self.model.named_parameters():
            size = p.numel() * p.element_size()
            total += size
            if "adapter" not in name and "heads." not in name:
                base += size
        return total, base

    # ----------------------------------------------------------------- helpers
    def _freeze_heads_except(self, head: str) -> None:
        for name, module in self.model.heads.items():
            for param in module.parameters():
                param.requires_grad = name == head

    def _check_trainable(self, allowed: Any) -> None:
        # The registry's promise is that nothing registered changes; check it, not just trust it.
        stray = [n for n, _ in self.trainable_parameters() if not allowed(n)]
        if stray:
            raise IntegrityError(
                f"Parameters outside the training target are trainable: {stray[:5]}.",
                hint="This is a bug in registry.backbone; please report it.",
            )
        if not self.trainable_parameters():
            raise IntegrityError(
                "Nothing is trainable after setting up training.",
                hint="This is a bug in registry.backbone; please report it.",
            )

    @staticmethod
    def _fresh_folder(folder: Path) -> Path:
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise AlreadyExists(
                f"{folder} already exists and is not an empty folder.",
                hint="Save into a new folder.",
            )
        # adapters creates only the last level with os.mkdir.
        folder.parent.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def _portable_model_name(self) -> Iterator[None]:
        # adapters writes config.name_or_path as model_name; swap in the portable name meanwhile.
        original = self.model.config.name_or_path
        self.model.config.name_or_path = self.info.portable_name
        try:
            yield
        finally:
            self.model.config.name_or_path = original

    @staticmethod
    def _check_saved(folder: Path, expected: list[str]) -> None:
        missing = [f for f in expected if not (folder / f).is_file()]
        pickles = [p.name for p in folder.iterdir() if layout.is_pickle(p.name)]
        if missing or pickles:
            raise RegistryError(
                f"Saving into {folder} wrote an unexpected set of files "
                f"(missing {missing}, pickle files {pickles}).",
                hint="This is a bug in registry.backbone; please report it.",
            )

    @staticmethod
    def _check_loadable(folder: Path, expected: list[str]) -> None:
        if not folder.is_dir():
            raise NotFound(
                f"Folder {folder} does not exist.",
                hint="Check the path; list artifacts with: adapter-registry verify",
            )
        missing = [f for f in expected if not (folder / f).is_file()]
        if missing:
            pickles = sorted(p.name for p in folder.iterdir() if layout.is_pickle(p.name))
            extra = f"; pickle weights ({', '.join(pickles)}) are refused" if pickles else ""
            raise InvalidInput(
                f"Folder {folder} lacks {', '.join(missing)}{extra}.",
                hint="Only folders written with safetensors (Backbone.save_*) can be loaded.",
            )

    @contextlib.contextmanager
    def _loading(self, folder: Path, what: str) -> Iterator[dict[str, list[str]]]:
        """Around one load by the engine: yield its ``loading_info`` to fill, turn the engine's
        errors into :class:`InvalidInput`, check the keys loaded, move the model to the device."""
        loading_info: dict[str, list[str]] = {}
        try:
            yield loading_info
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise InvalidInput(
                f"Could not load the {what} in {folder}: {exc}",
                hint=f"Was it trained on base model {self.info.name}?",
            ) from exc
        self._check_loading_info(folder, loading_info)
        self.model.to(self.device)

    @staticmethod
    def _check_loading_info(folder: Path, info: dict[str, list[str]]) -> None:
        missing = info.get("missing_keys", [])
        unexpected = info.get("unexpected_keys", [])
        if missing or unexpected:
            raise IntegrityError(
                f"Weights in {folder} do not match the module they load into "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}).",
                hint="Check that the artifact was saved from the same base model.",
            )


def _jsonable(value: Any) -> Any:
    """Return ``value`` with tuples, sets and mappings turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
