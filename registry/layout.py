"""The on-disk format of registry artifacts, in one place. Torch-free.

Adapter and fusion artifacts are folders in the ``adapters`` library's own layout (configs as
JSON, weights as safetensors), plus the registry's ``fusion_manifest.json`` next to a fusion's
weights. Everything that names a file, tells pickle weights apart, lists the adapter methods a
fusion combines, or renames a fusion's weight keys reads it from here: the backbone (which alone
runs the ``adapters`` library), the composer and loader, and the Hub modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import IntegrityError

T = TypeVar("T")

# ``adapters``' own file names (adapters.utils), with safetensors weights.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "model_head.safetensors"
FUSION_CONFIG = "adapter_fusion_config.json"
FUSION_WEIGHTS = "model_adapter_fusion.safetensors"

#: The files of an adapter artifact (with its head), and of a fusion artifact.
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_CONFIG, HEAD_WEIGHTS)
HEAD_FILES = (HEAD_CONFIG, HEAD_WEIGHTS)
FUSION_FILES = (FUSION_CONFIG, FUSION_WEIGHTS, HEAD_CONFIG, HEAD_WEIGHTS)

#: The file of a reference-profile artifact (drift checks compare new data with it).
PROFILE_FILE = "profile.npz"

#: The file next to a fusion's weights that names its members (written by the composer).
FUSION_MANIFEST = "fusion_manifest.json"
MANIFEST_FORMAT = 1
#: The name of a fusion's head inside the model while it trains (saved under this name).
FUSION_HEAD = "fusion_head"

#: Adapter methods the registry trains, and that AdapterFusion combines (bottleneck adapters).
BOTTLENECK_METHODS = ("seq_bn", "double_seq_bn")

#: Suffixes of pickle files: never loaded (arbitrary code), only converted or refused.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: AdapterHub's pickle weight files and the safetensors names they are converted to.
PICKLE_TO_SAFETENSORS = {
    "pytorch_adapter.bin": ADAPTER_WEIGHTS,
    "pytorch_model_head.bin": HEAD_WEIGHTS,
    "pytorch_model_adapter_fusion.bin": FUSION_WEIGHTS,
}
#: A base model's weight files: single or sharded, safetensors or (refused) pickle.
BASE_WEIGHT_FILE = re.compile(
    r"(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)"
    r"|(model\.safetensors|pytorch_model\.bin)\.index\.json"
)


def is_pickle(name: str) -> bool:
    """Return True for a file name with a pickle suffix."""
    return name.endswith(PICKLE_SUFFIXES)


def module_name(name: str, version: int) -> str:
    """Return the name an adapter version or fusion head is loaded under inside the model.

    Fusion weights are keyed by their members' module names, so these must never change.
    """
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{name}_v{version}")


def fusion_name(members: Sequence[str]) -> str:
    """Return the name ``adapters`` gives a fusion layer over ``members`` (in order)."""
    return ",".join(members)


def fusion_key_prefix(name: str) -> str:
    """Return the prefix of a fusion layer's weight keys (``name`` from :func:`fusion_name`)."""
    return f"adapter_fusion_layer.{name}."


def rename_fusion_keys(tensors: Mapping[str, T], old: str, new: str) -> dict[str, T]:
    """Return a fusion's weights with the layer name ``old`` replaced by ``new`` in every key."""
    old_prefix, new_prefix = fusion_key_prefix(old), fusion_key_prefix(new)
    return {k.replace(old_prefix, new_prefix): v for k, v in tensors.items()}


def portable_name(name: str) -> str:
    """Return a base model's name as artifacts record it: never this machine's absolute path."""
    path = Path(name)
    return path.name if path.is_absolute() or name.startswith("~") else name


def write_json(path: Path, data: Any) -> Path:
    """Write JSON as every registry format file is written (sorted keys, indent 2, newline)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def fusion_manifest(
    *,
    name: str,
    task: str,
    members: Sequence[Mapping[str, Any]],
    dynamic: bool,
    fusion_config: Mapping[str, Any],
    head_labels: Sequence[str],
    head_layers: int,
    base_name: str,
    base_revision: str,
) -> dict[str, Any]:
    """Return a fusion manifest: ordered members (ref, id, sha256, module name, method), the
    fusion config, the head and the base model."""
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "task": task,
        "members": [dict(m) for m in members],
        "fusion": {"dynamic": dynamic, "config": dict(fusion_config)},
        "head": {"name": FUSION_HEAD, "labels": list(head_labels), "layers": head_layers},
        "base_model": {"name": portable_name(base_name), "revision": base_revision},
    }


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``fusion_manifest.json`` into a fusion folder."""
    return write_json(Path(folder) / FUSION_MANIFEST, dict(manifest))


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """Return a fusion artifact's manifest, or None for fusions saved without one.

    Raises:
        IntegrityError: the manifest is not a readable JSON object.
    """
    path = Path(folder) / FUSION_MANIFEST
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


def rename_manifest_modules(manifest: dict[str, Any], modules: Sequence[str]) -> dict[str, Any]:
    """Set the members' module names in a manifest (in order); return it."""
    for entry, module in zip(manifest.get("members") or [], modules, strict=False):
        if isinstance(entry, dict):
            entry["module_name"] = module
    return manifest
