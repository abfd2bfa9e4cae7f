"""Base encoder, adapters, fusion layers and heads: the only module that imports ``adapters``.

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
import hashlib
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import layout
from .errors import AlreadyExists, IntegrityError, InvalidInput, NotFound, RegistryError
from .layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FUSION_CONFIG,
    HEAD_CONFIG,
)

METHODS = layout.BOTTLENECK_METHODS

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BaseInfo:
    """Identity of a base model: name as given, pinned revision, and its shape."""

    name: str
    revision: str
    architecture: str
    hidden_size: int
    num_layers: int
    local_path: str | None

    @property
    def portable_name(self) -> str:
        """Return the name to write into saved files: never an absolute path of this machine."""
        if self.local_path is None:
            return self.name
        if Path(self.name).is_absolute() or self.name.startswith("~"):
            return Path(self.local_path).name
        return self.name


def weight_files(folder: Path) -> list[Path]:
    """Return the base-model weight files of a folder (single or sharded), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and layout.BASE_WEIGHT_FILE.fullmatch(p.name) is not None
    )


def weights_digest(folder: Path) -> str:
    """Return a sha256 over the names and bytes of a folder's weight files, streamed."""
    files = weight_files(folder)
    if not files:
        raise InvalidInput(
            f"Model folder {folder} has no weight files "
            "(model.safetensors, pytorch_model.bin or shards of either).",
            hint="Save the model with `model.save_pretrained(folder)` first.",
        )
    h = hashlib.sha256()
    for path in files:
        # Name and size go in before the bytes, so no two listings can hash alike.
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def resolve_base(name_or_path: str, revision: str | None = None) -> BaseInfo:
    """Resolve a local model folder or a Hub model id to a pinned :class:`BaseInfo`.

    Args:
        name_or_path: a local folder (with ``config.json`` and weights) or a Hub id.
        revision: for a Hub id, the branch, tag or commit to pin (default: the main branch);
            for a local folder, the expected weights digest, checked if given.
    """
    from transformers import AutoConfig

    path = Path(name_or_path).expanduser()
    if path.exists() or _looks_like_path(name_or_path):
        if not path.is_dir():
            raise NotFound(
                f"Base model folder {name_or_path} does not exist or is not a folder.",
                hint="Give a folder saved with `save_pretrained`, or a Hub id such as owner/name.",
            )
        folder = path.resolve()
        if not (folder / "config.json").is_file():
            raise InvalidInput(
                f"Model folder {folder} has no config.json.",
                hint="Save the model with `model.save_pretrained(folder)` first.",
            )
        digest = weights_digest(folder)
        if revision is not None and revision != digest:
            raise IntegrityError(
                f"Weights in {folder} changed: expected revision {revision}, found {digest}.",
                hint="Restore the original weights, or register the changed folder as a new base.",
            )
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"Model folder {folder} has an unreadable config.json: {exc}",
                hint="Re-save the model with `model.save_pretrained(folder)`.",
            ) from exc
        return _info(name_or_path, digest, config, str(folder))

    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as exc:
        raise NotFound(
            f"Base model {name_or_path!r} is not a local folder and could not be loaded "
            f"from the Hugging Face Hub{f' at revision {revision}' if revision else ''}: {exc}",
            hint="Check the name and your network, or give a local folder.",
        ) from exc
    commit = getattr(config, "_commit_hash", None)
    if not commit:
        if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
            commit = revision
        else:
            raise InvalidInput(
                f"Could not determine the Hub commit of {name_or_path!r}.",
                hint="Pass the full 40-character commit sha as the revision.",
            )
    return _info(name_or_path, commit, config, None)


def _info(name: str, revision: str, config: Any, local_path: str | None) -> BaseInfo:
    architectures = getattr(config, "architectures", None) or [config.model_type]
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    if hidden is None or layers is None:
        raise InvalidInput(
            f"Base model {name} ({config.model_type}) is not a transformer encoder with "
            "hidden_size and num_hidden_layers.",
            hint="Use an encoder such as BERT, RoBERTa or MiniLM.",
        )
    return BaseInfo(
        name=name,
        revision=revision,
        architecture=str(architectures[0]),
        hidden_size=int(hidden),
        num_layers=int(layers),
        local_path=local_path,
    )


def _fusion_name(members: list[str]) -> str:
    return layout.fusion_name(members)


class TokenLimitNote(UserWarning):
    """A requested token limit was above the model's positions and was lowered."""


def _position_limit(config: Any) -> int | None:
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    kind = str(getattr(config, "model_type", ""))
    if "roberta" in kind or kind == "camembert":
        positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after pad
    return max(positions, 8)


class Backbone:
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
        loading_info: dict[str, list[str]] = {}
        try:
            loaded = self.model.load_adapter(
                str(folder),
                load_as=name,
                with_head=with_head,
                use_safetensors=True,
                loading_info=loading_info,
            )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise InvalidInput(
                f"Could not load the adapter in {folder}: {exc}",
                hint=f"Was it trained on base model {self.info.name}?",
            ) from exc
        self._check_loading_info(folder, loading_info)
        self.model.to(self.device)
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
        loading_info: dict[str, list[str]] = {}
        try:
            self.model.load_adapter_fusion(
                str(folder),
                load_as=name,
                use_safetensors=True,
                with_head=False,
                loading_info=loading_info,
            )
            self.model.load_head(str(folder), load_as=head, use_safetensors=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise InvalidInput(
                f"Could not load the fusion in {folder}: {exc}",
                hint=f"Was it trained on base model {self.info.name}?",
            ) from exc
        self._check_loading_info(folder, loading_info)
        self.model.to(self.device)

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

    @contextlib.contextmanager
    def base_only(self) -> Iterator[None]:
        """Run the frozen base encoder alone (no adapter active) inside the block."""
        import logging

        previous = self.model.active_adapters
        self.model.set_active_adapters(None)
        # adapters warns on every forward that loaded adapters are inactive; here that is the point.
        quiet = logging.getLogger("adapters")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            yield
        finally:
            quiet.setLevel(level)
            if previous is not None:
                self.model.set_active_adapters(previous)

    # ----------------------------------------------------------------- running
    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor]:
        """Run the active setup with gradients; return (loss if labels given, logits)."""
        out = self.model(**self._inputs(batch, with_labels=True))
        return getattr(out, "loss", None), out.logits

    def forward_context(self, batch: dict[str, Tensor]) -> contextlib.AbstractContextManager[Any]:
        """Return adapters' ForwardContext for a batch, for code that runs model parts by hand.

        The model's own ``forward`` enters it (``@ForwardContext.wrap``); adapter layers read the
        active setup from it, so running layers outside ``forward`` needs it too.
        """
        from adapters.context import ForwardContext

        inputs = self._inputs(batch, with_labels=False)
        context: contextlib.AbstractContextManager[Any] = ForwardContext(self.model, **inputs)
        return context

    def set_training(self, mode: bool) -> None:
        """Switch the whole model to training (dropout on) or evaluation mode."""
        self.model.train(mode)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Return the base encoder's last hidden states (no head; see :meth:`base_only`)."""
        inputs = self._inputs(batch, with_labels=False)
        hidden: Tensor = self.model.base_model(**inputs).last_hidden_state
        return hidden

    # ----------------------------------------------------------------- encoder parts
    def encoder_parts(self) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
        """Return (embeddings, encoder layers) of a BERT-style encoder with flexible heads.

        For code that runs the encoder layer by layer (the frozen-prefix cache).

        Raises:
            InvalidInput: the model is not laid out that way.
        """
        base = self.model.base_model
        stack = getattr(getattr(base, "encoder", None), "layer", None)
        if (
            stack is None
            or not hasattr(base, "embeddings")
            or not hasattr(self.model, "forward_head")
        ):
            raise InvalidInput(
                f"The frozen-prefix cache supports BERT-style encoders (embeddings, encoder.layer, "
                f"flexible heads); {type(self.model).__name__} is not one.",
                hint="Train without --cache-prefix.",
            )
        return base.embeddings, list(stack)

    @contextlib.contextmanager
    def capture_layer(self, index: int) -> Iterator[dict[str, Any]]:
        """Inside the block, record encoder layer ``index``'s output and the attention mask it
        was given (``hidden``, ``mask``; detached) on every forward."""
        captured: dict[str, Any] = {}

        def hook(
            _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            hidden = output[0] if isinstance(output, tuple | list) else output
            mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
            captured["hidden"] = hidden.detach()
            captured["mask"] = mask.detach() if mask is not None else None

        _, layers = self.encoder_parts()
        handle = layers[index].register_forward_hook(hook, with_kwargs=True)
        try:
            yield captured
        finally:
            handle.remove()

    def run_from_layer(
        self, k: int, hidden: Tensor, mask: Tensor | None, batch: dict[str, Tensor]
    ) -> Tensor:
        """Run layers ``k..L-1``, the pooler and the active head on layer ``k-1``'s output
        (``mask``: the extended attention mask the encoder passes its layers), as the model's
        own ``forward`` does; return the logits."""
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        base = self.model.base_model
        _, layers = self.encoder_parts()
        with self.forward_context(batch):
            out: Any = hidden
            for layer in layers[k:]:
                # BertEncoder passes hidden states and the extended mask positionally.
                out = layer(out, mask)[0]
            pooler = getattr(base, "pooler", None)
            pooled = pooler(out) if pooler is not None else None
            outputs = BaseModelOutputWithPoolingAndCrossAttentions(
                last_hidden_state=out, pooler_output=pooled
            )
            attention = batch.get("attention_mask")
            result = self.model.forward_head(
                outputs,
                attention_mask=attention.to(self.device) if attention is not None else None,
                return_dict=True,
                pooled_output=pooled,
            )
        logits: Tensor = result.logits
        return logits

    def active_module_names(self) -> set[str]:
        """Return the names of the adapter modules the active setup runs."""
        active = self.model.active_adapters
        return set(active.flatten()) if active is not None else set()

    def embedding_side_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Return the parameters of adapter parts that act on the embeddings (invertible
        adapters, prompt tuning), named ``part.parameter``."""
        base = self.model.base_model
        out: list[tuple[str, torch.nn.Parameter]] = []
        for attr in ("invertible_adapters", "prompt_tuning"):
            sub = getattr(base, attr, None)
            if sub is not None:
                out += [(f"{attr}.{n}", p) for n, p in sub.named_parameters()]
        return out

    def model_id(self) -> int:
        """Return an id of the live model object (it changes only if the model is replaced)."""
        return id(self.model)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Return the active setup's logits for a batch, in eval mode without gradients."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits: Tensor = self.model(**self._inputs(batch, with_labels=False)).logits
                return logits
        finally:
            # Restore the mode so evaluating mid-training does not switch dropout off for good.
            self.model.train(was_training)

    def fusion_attention(self, batch: dict[str, Tensor], members: list[str]) -> np.ndarray:
        """Return the mean attention each fusion member gets per layer, shape [layers, members].

        Averaged over real (unpadded) tokens, the batch and, for double_seq_bn, both adapter
        positions in a layer. Layers without the fusion (``leave_out``) are omitted.
        """
        self._require_fusion(members)
        name = _fusion_name(members)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(
                    **self._inputs(batch, with_labels=False),
                    output_adapter_fusion_attentions=True,
                )
        finally:
            self.model.train(was_training)
        per_layer = out["adapter_fusion_attentions"].get(name, {})
        mask = batch.get("attention_mask")
        rows = []
        for layer in sorted(per_layer):
            positions = []
            for probs in per_layer[layer].values():
                arr = np.asarray(probs, dtype=np.float64)  # [batch, seq, members]
                if mask is not None:
                    weights = mask.cpu().numpy().astype(np.float64)[..., None]
                    positions.append((arr * weights).sum(axis=(0, 1)) / weights.sum())
                else:
                    positions.append(arr.mean(axis=(0, 1)))
            rows.append(np.mean(positions, axis=0))
        return np.stack(rows) if rows else np.zeros((0, len(members)))

    def fusion_regularization_loss(self) -> Tensor | None:
        """Return the dynamic-fusion value regulariser to add to the loss (None if not used)."""
        loss = self.model.get_fusion_regularization_loss()
        return loss if isinstance(loss, Tensor) else None

    # ----------------------------------------------------------------- inspection
    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Return (name, parameter) for every parameter that requires a gradient."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def count_parameters(self, trainable_only: bool = True) -> int:
        """Return the number of (trainable) parameters."""
        return sum(
            p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only
        )

    def named_tensors(self, prefix_filter: str | None = None) -> dict[str, Tensor]:
        """Return a cloned snapshot of the state dict, optionally only names containing a string."""
        return {
            n: t.detach().clone()
            for n, t in self.model.state_dict().items()
            if prefix_filter is None or prefix_filter in n
        }

    @property
    def adapter_names(self) -> list[str]:
        """Return the names of the loaded adapters."""
        return list(self.model.adapters_config.adapters)

    @property
    def head_names(self) -> list[str]:
        """Return the names of the loaded heads."""
        return list(self.model.heads)

    def head_labels(self, head: str) -> list[str]:
        """Return a head's label names in class-id order."""
        self._require_head(head)
        id2label = self.model.get_labels_dict(head)
        return [str(id2label[i]) for i in sorted(id2label)]

    # ----------------------------------------------------------------- helpers
    def _inputs(self, batch: dict[str, Tensor], *, with_labels: bool) -> dict[str, Tensor]:
        keys = ["input_ids", "attention_mask", "token_type_ids"]
        if with_labels:
            keys.append("labels")
        # Asynchronous when the batch is in pinned memory and the device is a GPU.
        return {k: batch[k].to(self.device, non_blocking=True) for k in keys if k in batch}

    def compiled_logits(self) -> Callable[[dict[str, Tensor]], Tensor]:
        """Return a training forward pass (batch → logits) through ``torch.compile``."""
        compiled = torch.compile(self.model, dynamic=True)
        return lambda batch: compiled(**self._inputs(batch, with_labels=False)).logits  # type: ignore[no-untyped-call]

    def data_parallel_logits(self) -> Callable[[dict[str, Tensor]], Tensor]:
        """Return a training forward pass through DistributedDataParallel (needs a process
        group): gradients are averaged over the ranks in the backward pass."""
        from torch.nn.parallel import DistributedDataParallel

        gpu = self.device.startswith("cuda")
        index = int(self.device.split(":", 1)[1]) if ":" in self.device else 0
        ddp = DistributedDataParallel(self.model, device_ids=[index] if gpu else None)
        return lambda batch: ddp(**self._inputs(batch, with_labels=False)).logits

    def model_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return a batch's model inputs (no labels) on the model's device."""
        return self._inputs(batch, with_labels=False)

    def _require_adapters(self, names: list[str]) -> None:
        if not names:
            raise InvalidInput("No adapter names given.", hint="Name one or more loaded adapters.")
        missing = [n for n in names if n not in self.model.adapters_config.adapters]
        if missing:
            raise NotFound(
                f"Adapter(s) {missing} are not loaded; loaded: {self.adapter_names or 'none'}.",
                hint="Load them with Backbone.load_adapter(folder, name) first.",
            )

    def _require_head(self, name: str) -> None:
        if name not in self.model.heads:
            raise NotFound(
                f"Head {name!r} is not loaded; loaded: {self.head_names or 'none'}.",
                hint="Add it with Backbone.add_head(name, label_names).",
            )

    def _require_fusion(self, members: list[str], name: str | None = None) -> None:
        self._require_adapters(members)
        if (name or _fusion_name(members)) not in self.model.adapters_config.fusions:
            raise NotFound(
                f"No fusion over {members} is loaded.",
                hint="Add it with Backbone.add_fusion(members) or load it with load_fusion.",
            )

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
