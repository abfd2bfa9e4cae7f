"""Identity of a base model: resolving a local folder or Hub id to a pinned :class:`BaseInfo`
(name, revision, shape), the weights digest of a local folder, and the model's token limit.

No ``adapters`` here: :mod:`registry.backbone` loads the model itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import layout
from .errors import IntegrityError, InvalidInput, NotFound

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
    #: A Hub model's weights digest: the sha256 of its weight files in the local cache, as
    #: :func:`weights_digest` takes it of a folder (None until they are downloaded).
    hub_weights_sha256: str | None = None

    @property
    def portable_name(self) -> str:
        """Return the name to write into saved files: never an absolute path of this machine."""
        if self.local_path is None:
            return self.name
        if Path(self.name).is_absolute() or self.name.startswith("~"):
            return Path(self.local_path).name
        return self.name

    @property
    def weights_sha256(self) -> str | None:
        """Return the sha256 of the weight files: a local folder's (its revision), or a Hub
        model's cached snapshot's once downloaded (else None)."""
        return self.revision if self.local_path is not None else self.hub_weights_sha256

    def with_hub_weights(self) -> BaseInfo:
        """Return this Hub model's info with the digest of its cached weights filled in (after
        a download); a local folder's, or one already known, unchanged."""
        if self.local_path is not None or self.hub_weights_sha256 is not None:
            return self
        return replace(self, hub_weights_sha256=hub_weights_digest(self.name, self.revision))

    @property
    def location(self) -> str:
        """Return where the base loads from in any working directory: the absolute folder, or
        the Hub id."""
        return self.local_path or self.name


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


def hub_weights_digest(hub_id: str, commit: str) -> str | None:
    """Return :func:`weights_digest` of a Hub model's snapshot in the local cache at ``commit``,
    or None when its weights are not (all) downloaded there. Never downloads."""
    from transformers.utils.hub import cached_file

    try:
        config = cached_file(
            hub_id,
            "config.json",
            revision=commit,
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return None
    if config is None:
        return None
    folder = Path(config).parent
    files = weight_files(folder)
    if not files or not _all_shards(folder):
        return None
    return weights_digest(folder)


def _all_shards(folder: Path) -> bool:
    """False when a shard index names a weight file the folder lacks (a partial download)."""
    import json

    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        if not all((folder / name).is_file() for name in shards):
            return False
    return True


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
    return _info(name_or_path, commit, config, None).with_hub_weights()


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
