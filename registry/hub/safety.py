"""Checks on what a Hub server sends: commit ids, file names, JSON shapes, byte counts, weights.

A server is not trusted: nothing it answers names a path on this machine (downloads go into a
private folder under names chosen here, and their sha256 is computed here), every answer is
checked against the shape this code expects before it is used, and the bytes downloaded and
decompressed are capped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import HubError, IntegrityError, InvalidInput
from .common import _SHA, has_unprintable, printable, printable_list

#: What one pull may download and decompress in all, unless ``max_bytes`` raises it.
DEFAULT_MAX_BYTES = 1 << 30
#: Seconds to wait for the Hub to answer (connect, and between bytes), unless raised.
DEFAULT_TIMEOUT_S = 30.0
#: JSON files are small; a bigger one is refused before it is parsed.
MAX_JSON_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DAMAGED = "The repo is damaged or was not written by a known tool; pull another revision."


# ---------------------------------------------------------------------- commit ids & names
def check_commit_sha(repo_id: str, sha: object) -> str:
    """Return ``sha`` if it is a full 40-hex commit id, else raise HubError."""
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise HubError(
            f"The Hub answered with {printable(repr(sha))} as the commit of {repo_id}, "
            "which is not a full 40-character commit id: refusing to pull from it.",
            hint="Check HF_ENDPOINT points at a real Hub, then run the same command again.",
        )
    return sha


def _check_paths(repo_id: str, files: list[str]) -> None:
    bad = []
    for name in files:
        parts = PurePosixPath(name).parts
        if (
            not isinstance(name, str)
            or not name
            or name.startswith(("/", "~"))
            or "\\" in name
            or re.match(r"^[A-Za-z]:", name)
            or ".." in parts
            or has_unprintable(name)
        ):
            bad.append(printable(name))
    if bad:
        raise InvalidInput(
            f"Repository {repo_id} has unsafe file names {bad[:5]} (absolute paths, '..' or "
            "control characters): refusing to download anything from it.",
            hint="Only pull repos you trust; ask the owner to rename those files.",
        )


# ---------------------------------------------------------------------- byte budget & download
@dataclass
class Budget:
    """The bytes a pull may still download or decompress."""

    limit: int
    used: int = 0

    def take(self, n: int, what: str) -> None:
        """Count ``n`` more bytes for ``what``; raise InvalidInput past the limit."""
        self.used += n
        if self.used > self.limit:
            raise InvalidInput(
                f"{what} takes the pull past its limit of {self.limit:,} bytes: refused "
                "before storing anything.",
                hint="If you trust the repo and expect it to be this big, raise the limit, "
                "e.g. adapter-registry pull REPO --max-size 4GiB",
            )


def parse_size(text: str) -> int:
    """Parse ``500MB``, ``2GiB``, ``1048576`` into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise InvalidInput(f"Not a size: {text!r}.", hint="e.g. --max-size 2GiB or 500MB")
    number, unit, binary = match.groups()
    base = 1024 if binary or not unit else 1000
    power = "KMGT".find(unit.upper()) + 1 if unit else 0
    value = int(float(number) * base**power)
    if value <= 0:
        raise InvalidInput(f"The size must be positive, not {text!r}.", hint="e.g. --max-size 2GB")
    return value


@dataclass(frozen=True)
class Downloaded:
    """A file fetched into the private download folder, hashed while it was written."""

    path: Path
    sha256: str
    size: int


def download(
    get: Callable[[str], Any], url: str, dest: Path, budget: Budget, label: str
) -> Downloaded:
    """Stream ``url`` (through ``get``, which returns a streaming response) into ``dest``.

    Nothing the server answers (ETag, Content-Disposition, redirects) names the file; the bytes
    are counted against ``budget`` as they arrive and hashed here.
    """
    digest = hashlib.sha256()
    size = 0
    with get(url) as response, open(dest, "xb") as out:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and budget.used + int(declared) > budget.limit:
            budget.take(int(declared), label)
        for chunk in response.iter_content(chunk_size=1 << 20):
            if not chunk:
                continue
            budget.take(len(chunk), label)
            size += len(chunk)
            digest.update(chunk)
            out.write(chunk)
    return Downloaded(dest, digest.hexdigest(), size)


# ---------------------------------------------------------------------- JSON documents
def read_json(path: Path, label: str) -> dict[str, Any]:
    """Parse a small JSON object, refusing huge, deeply nested or non-object documents."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InvalidInput(f"{label} is larger than {MAX_JSON_BYTES:,} bytes.", hint=_DAMAGED)
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as err:
        raise InvalidInput(f"{label} is nested too deeply to read.", hint=_DAMAGED) from err
    except (OSError, ValueError) as err:
        raise InvalidInput(f"{label} is not valid JSON: {printable(err)}", hint=_DAMAGED) from err
    if not isinstance(data, dict):
        raise InvalidInput(f"{label} is not a JSON object.", hint=_DAMAGED)
    if _depth(data) > MAX_JSON_DEPTH:
        raise InvalidInput(f"{label} is nested deeper than {MAX_JSON_DEPTH} levels.", hint=_DAMAGED)
    return data


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, depth + 1) for child in children)
    return deepest


# A schema is a type (str, int, float: any number, bool, dict, list, object: anything), a
# tuple of schemas (any of them), a list holding one schema (a list of those), a Map(schema)
# (an object with string keys), or a dict of key -> schema (keys ending in "?" are optional).
@dataclass(frozen=True)
class Map:
    """An object whose keys are strings and whose values all match ``values``."""

    values: Any


def _describe(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, list):
        return "a list"
    if isinstance(schema, dict | Map):
        return "an object"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return "null" if schema is None else names.get(schema, schema.__name__)


def _matches_type(value: Any, schema: Any) -> bool:
    if schema is None:
        return value is None
    if schema is object:
        return True
    if schema is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(schema, list):
        return isinstance(value, list)
    if isinstance(schema, dict | Map):
        return isinstance(value, dict)
    return isinstance(value, schema)


def check_schema(value: Any, schema: Any, label: str, where: str = "") -> None:
    """Raise InvalidInput naming the first place where ``value`` does not match ``schema``."""
    options = schema if isinstance(schema, tuple) else (schema,)
    match = next((s for s in options if _matches_type(value, s)), _NO_MATCH)
    if match is _NO_MATCH:
        raise InvalidInput(
            f"{label}: {where or 'the document'} should be {_describe(schema)}, "
            f"not {type(value).__name__}.",
            hint=_DAMAGED,
        )
    if isinstance(match, list):
        for i, item in enumerate(value):
            check_schema(item, match[0], label, f"{where}[{i}]")
    elif isinstance(match, Map):
        for key, item in value.items():
            check_schema(item, match.values, label, f"{where}.{printable(key)}")
    elif isinstance(match, dict):
        for key, sub in match.items():
            name = key.rstrip("?")
            if name in value:
                check_schema(value[name], sub, label, f"{where}.{name}" if where else name)
            elif not key.endswith("?"):
                raise InvalidInput(
                    f"{label}: {where + '.' if where else ''}{name} is missing.", hint=_DAMAGED
                )


_NO_MATCH = object()
_STR_OR_NULL = (str, None)
_HUB_LINK = {"repo_id": str, "commit_sha": str, "revision?": _STR_OR_NULL}
REGISTRY_SCHEMA = {
    "format": str,
    "kind": str,
    "name": str,
    "version?": int,
    "ref?": str,
    "trainable_params?": (int, None),
    "method?": _STR_OR_NULL,
    "config?": (Map(object), None),
    "task": {"name": str, "kind?": str, "label_names": [str], "text_fields?": [str]},
    "base_model": {
        "name": str,
        "revision": str,
        "architecture?": str,
        "hidden_size?": int,
        "num_layers?": int,
        "hub_id?": _STR_OR_NULL,
        "hub_revision?": _STR_OR_NULL,
    },
    "artifact": {"sha256": str, "size?": int, "files": [{"path": str, "size": int, "sha256": str}]},
    "metrics?": [
        {
            "name": str,
            "value": float,
            "split?": _STR_OR_NULL,
            "step?": (int, None),
            "dataset_fingerprint?": _STR_OR_NULL,
        }
    ],
    "datasets?": [
        {
            "source": str,
            "split": str,
            "row_count": int,
            "fingerprint": str,
            "hub_id?": _STR_OR_NULL,
            "label_distribution?": (Map(int), None),
        }
    ],
    "training_run?": (Map(object), None),
    "lineage?": object,
    "fusion?": {"config?": (Map(object), None), "head?": (Map(object), None)},
    "members?": [{"ref?": str, "module_name?": str, "artifact_sha256": str, "hub?": [_HUB_LINK]}],
}
ADAPTER_CONFIG_SCHEMA = {
    "config": Map(object),
    "model_name?": _STR_OR_NULL,
    "hidden_size?": (int, None),
    "version?": object,
}
HEAD_CONFIG_SCHEMA = {
    "config?": {"label2id?": (Map(int), None), "id2label?": (Map(str), None)},
    "id2label?": (Map(str), None),
}


def check_listing(label: str, files: list[dict[str, Any]]) -> None:
    """Refuse a file listing with duplicate paths, a path that is also a folder, or bad sizes."""
    paths = [str(f["path"]) for f in files]
    seen: set[str] = set()
    for entry, path in zip(files, paths, strict=True):
        if path in seen:
            raise InvalidInput(f"{label} lists {printable(path)} twice.", hint=_DAMAGED)
        seen.add(path)
        if entry["size"] < 0 or not _SHA256.match(str(entry["sha256"])):
            raise InvalidInput(
                f"{label} gives {printable(path)} a negative size or a malformed sha256.",
                hint=_DAMAGED,
            )
    for path in paths:
        parents = PurePosixPath(path).parents
        clash = next((str(p) for p in parents if str(p) in seen), None)
        if clash is not None:
            raise InvalidInput(
                f"{label} lists both {printable(clash)} and {printable(path)} (one file cannot "
                "also be a folder).",
                hint=_DAMAGED,
            )


def check_labels(label: str, labels: list[str]) -> None:
    """Refuse label names that are empty, repeated, padded, or carry control characters."""
    bad = [x for x in labels if not x or x != x.strip() or has_unprintable(x)]
    if bad:
        raise InvalidInput(
            f"{label} has label names that cannot be shown safely: {printable_list(bad[:5])} "
            "(empty, padded "
            "with spaces, or holding control characters).",
            hint="Ask the publisher to fix the labels; they are refused as they are.",
        )
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidInput(
            f"{label} needs at least two distinct labels, got {printable_list(labels)}.",
            hint=_DAMAGED,
        )


# ---------------------------------------------------------------------- weights
def _check_safetensors(path: Path, label: str) -> int:
    """Open a safetensors file (header + every tensor); return its number of elements."""
    from safetensors import SafetensorError, safe_open

    try:
        total = 0
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += int(fh.get_tensor(key).numel())
        return total
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(
            f"{label} is not a valid safetensors file: {printable(err)}",
            hint="The repo is damaged or not an adapter; pull another revision.",
        ) from err


def _convert_pickle(src: Path, dst: Path, label: str, budget: Budget) -> None:
    """Load a pickle weights file with ``weights_only=True`` and save it as safetensors.

    A zip-format checkpoint is measured first: the sizes its entries expand to count against
    ``budget``, so a small compressed file cannot expand into a huge one.
    """
    import pickle
    import zipfile

    import torch
    from safetensors.torch import save_file

    if zipfile.is_zipfile(src):
        try:
            with zipfile.ZipFile(src) as archive:
                expanded = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise InvalidInput(
                f"{label} is a damaged archive: {printable(err)}",
                hint="Pull again; if it persists the repository's file is broken.",
            ) from err
        budget.take(expanded, f"{label} (expanded)")
    try:
        state = torch.load(str(src), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as err:
        lines = [x.strip() for x in str(err).splitlines() if x.strip()] or [repr(err)]
        first = next((x for x in lines if "Unsupported" in x or "error:" in x), lines[0])
        raise InvalidInput(
            f"{label} is a pickle that does not load with torch.load(weights_only=True) "
            f"(it may run code when loaded): {printable(first)}",
            hint="Refused. Ask the publisher for safetensors weights, or pull a revision "
            "that has them.",
        ) from err
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidInput(
            f"{label} is not a plain mapping of tensor names to tensors.",
            hint="Refused. Ask the publisher for safetensors weights.",
        )
    budget.take(sum(v.numel() * v.element_size() for v in state.values()), f"{label} (tensors)")
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(dst))
