"""Stage a pulled repo: download, check and convert its files into a folder ready to register.

Two kinds of repo pull: one pushed by adapter-registry (``registry.json`` lists every file with
its sha256) and one published with the ``adapters`` library (AdapterHub: configs and weights,
perhaps as pickles; staged in :mod:`.adapterhub`). Either way every JSON document is checked
against its schema, every safetensors file is opened, and pickles become safetensors only after
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from .. import layout
from ..artifacts import tree_digest
from ..errors import IntegrityError, InvalidInput, NotFound
from .common import (
    _PICKLE_SUFFIXES,
    ADAPTER_CONFIG,
    FORMAT,
    FUSION_CONFIG,
    FUSION_MANIFEST,
    FUSION_WEIGHTS,
    HEAD_CONFIG,
    REGISTRY_FILE,
    printable,
)
from .safety import (
    ADAPTER_CONFIG_SCHEMA,
    HEAD_CONFIG_SCHEMA,
    REGISTRY_SCHEMA,
    Downloaded,
    _check_paths,
    _check_safetensors,
    check_labels,
    check_listing,
    check_schema,
    read_json,
)

if TYPE_CHECKING:
    from ..store import Registry

#: The most members a pulled fusion may list (each missing one is another repo to fetch).
MAX_MEMBERS = 64
#: Downloads one file of the repo (at the pinned commit) into the private download folder.
Fetch = Callable[[str], Downloaded]


@dataclass
class _Staged:
    """A verified artifact folder and everything needed to register it."""

    folder: Path
    kind: str  # adapter | fusion
    source: str
    name: str
    task: str
    task_kind: str
    label_names: list[str]
    text_fields: list[str]
    base: dict[str, Any]
    method: str
    config: dict[str, Any]
    trainable_params: int
    training_run: dict[str, Any]
    metrics: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    members: list[E.AdapterVersion | _Staged]
    head: dict[str, Any]
    #: The artifact sha256 the pushing registry recorded (a renamed fusion gets another here).
    upstream_sha: str = ""
    #: The pushing registry's lineage graph, and its member refs -> artifact sha256.
    lineage: dict[str, Any] = field(default_factory=dict)
    ref_shas: dict[str, str] = field(default_factory=dict)
    #: (repo_id, commit sha, revision) this was pulled from; set for fusion members.
    origin: tuple[str, str, str] | None = None


def check_registry_header(repo_id: str, meta: dict[str, Any]) -> None:
    """Refuse a ``registry.json`` of another format or kind, or that breaks its schema."""
    label = f"{REGISTRY_FILE} of {repo_id}"
    if meta.get("format") != FORMAT or meta.get("kind") not in ("adapter", "fusion"):
        raise InvalidInput(
            f"{label} has format {printable(repr(meta.get('format')))}, kind "
            f"{printable(repr(meta.get('kind')))}; this version reads {FORMAT} adapters and "
            "fusions.",
            hint="Upgrade adapter-registry, or pull an older revision of the repo.",
        )
    check_schema(meta, REGISTRY_SCHEMA, label)


# long: one linear sequence of checks on an untrusted repo, each with its own refusal
def _stage_registry_repo(
    registry: Registry,
    repo_id: str,
    files: list[str],
    meta: dict[str, Any],
    fetch: Fetch,
    art: Path,
    name: str | None,
    task: str | None,
) -> _Staged:
    label = f"{REGISTRY_FILE} of {repo_id}"
    check_registry_header(repo_id, meta)
    listing = list(meta["artifact"]["files"])
    expected_sha = str(meta["artifact"]["sha256"])
    task_meta = meta["task"]
    base_meta = meta["base_model"]
    check_listing(label, listing)
    check_labels(label, [str(x) for x in task_meta["label_names"]])
    paths = [str(e["path"]) for e in listing]
    _check_paths(repo_id, paths)
    missing = [p for p in paths if p not in files]
    pickles = [p for p in paths if p.endswith(_PICKLE_SUFFIXES)]
    if missing or pickles or not paths:
        raise IntegrityError(
            f"{label} lists files that are missing from the repo "
            f"({[printable(p) for p in missing]}) or pickle files "
            f"({[printable(p) for p in pickles]}).",
            hint="The repo is incomplete or was edited by hand; pull another revision.",
        )
    if tree_digest(listing) != expected_sha:
        raise IntegrityError(
            f"{label}'s file listing does not match its artifact sha256.",
            hint="The repo was edited by hand or damaged; pull another revision.",
        )
    for entry in listing:
        rel = str(entry["path"])
        got = fetch(rel)
        if got.sha256 != entry["sha256"] or got.size != int(entry["size"]):
            raise IntegrityError(
                f"{printable(rel)} in {repo_id} does not match the sha256 that "
                f"{REGISTRY_FILE} records.",
                hint="The repo was edited by hand or damaged; pull another revision.",
            )
        dst = art / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got.path, dst)
        if rel.endswith(".safetensors"):
            _check_safetensors(dst, f"{printable(rel)} in {repo_id}")
    for rel, schema in ((ADAPTER_CONFIG, ADAPTER_CONFIG_SCHEMA), (HEAD_CONFIG, HEAD_CONFIG_SCHEMA)):
        if rel in paths:
            check_schema(read_json(art / rel, f"{rel} of {repo_id}"), schema, f"{rel} of {repo_id}")
    kind = str(meta["kind"])
    run = dict(meta.get("training_run") or {})
    run.pop("created_at", None)
    run["hyperparams"] = dict(run.get("hyperparams") or {})
    run["hyperparams"]["hub_origin"] = {
        "source_ref": meta.get("ref"),
        "artifact_sha256": expected_sha,
        "lineage": meta.get("lineage"),
    }
    head: dict[str, Any] = {}
    config: dict[str, Any] = dict(meta.get("config") or {})
    if kind == "adapter":
        _check_adapter_config(repo_id, read_json(art / ADAPTER_CONFIG, f"{ADAPTER_CONFIG}"))
    if kind == "fusion":
        fusion = meta.get("fusion") or {}
        config = dict(fusion.get("config") or {})
        head = dict(fusion.get("head") or {})
    ref_shas = {str(m.get("ref")): str(m["artifact_sha256"]) for m in meta.get("members") or []}
    ref_shas[str(meta.get("ref"))] = expected_sha
    return _Staged(
        folder=art,
        kind=kind,
        source="adapter-registry",
        name=name or str(meta.get("name") or repo_id.split("/")[1]),
        task=task or str(task_meta["name"]),
        task_kind=str(task_meta.get("kind", "single")),  # the store refuses other kinds
        label_names=[str(x) for x in task_meta["label_names"]],
        text_fields=[str(x) for x in task_meta.get("text_fields", ["text"])],
        base=dict(base_meta),
        method=str(meta.get("method") or ("fusion" if kind == "fusion" else "unknown")),
        config=config,
        trainable_params=int(meta.get("trainable_params") or 0),
        training_run=run,
        metrics=list(meta.get("metrics") or []),
        datasets=list(meta.get("datasets") or []),
        members=[],
        head=head,
        upstream_sha=expected_sha,
        lineage=dict(meta.get("lineage") or {}) if isinstance(meta.get("lineage"), dict) else {},
        ref_shas=ref_shas,
    )


def plan_members(
    registry: Registry, repo_id: str, meta: dict[str, Any], *, recursive: bool
) -> list[tuple[dict[str, Any], E.AdapterVersion | None]]:
    """Pair each member a fusion's ``registry.json`` lists with the local version of it.

    A member this registry lacks pairs with None when ``recursive`` and it was pushed (it is
    pulled with the fusion); otherwise NotFound names what to pull or push first.
    """
    listed = meta.get("members") or []
    if len(listed) > MAX_MEMBERS:
        raise InvalidInput(
            f"{REGISTRY_FILE} of {repo_id} lists {len(listed)} fusion members; at most "
            f"{MAX_MEMBERS} are pulled.",
            hint="The repo is damaged or hostile; pull another revision.",
        )
    by_sha: dict[str, E.AdapterVersion] = {}
    for e in registry.list_entities(kind="adapter"):
        assert isinstance(e, E.AdapterVersion)
        by_sha.setdefault(e.artifact_sha256, e)
    plan: list[tuple[dict[str, Any], E.AdapterVersion | None]] = []
    missing: list[dict[str, Any]] = []
    for m in meta.get("members") or []:
        local = by_sha.get(str(m.get("artifact_sha256")))
        plan.append((m, local))
        if local is None and (not recursive or not m.get("hub")):
            missing.append(m)
    if missing:
        steps = []
        for m in missing:
            hub = (m.get("hub") or [])[-1:] or None
            if hub:
                steps.append(
                    f"adapter-registry pull {printable(hub[0]['repo_id'])}@"
                    f"{printable(hub[0]['commit_sha'])}"
                )
            else:
                steps.append(
                    f"push {printable(m.get('ref'))} from the source registry, then pull it"
                )
        raise NotFound(
            f"The fusion in {repo_id} needs member adapters this registry does not have: "
            + ", ".join(printable(m.get("ref")) for m in missing)
            + ".",
            hint=("Pull them first, or leave out --no-recursive: " if not recursive else "")
            + "; ".join(steps),
        )
    if not plan:
        raise InvalidInput(
            f"{REGISTRY_FILE} of {repo_id} lists no fusion members.",
            hint="Pull a fusion pushed by adapter-registry push.",
        )
    return plan


def upstream_names(art: Path, count: int) -> list[str]:
    """The member module names a staged fusion's layer was saved with (refused if odd)."""
    config = read_json(art / FUSION_CONFIG, FUSION_CONFIG)
    names = config.get("adapter_names")
    if (
        not isinstance(names, list)
        or len(names) != count
        or len(set(map(str, names))) != count
        or not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9_]{1,200}", n) for n in names)
    ):
        raise InvalidInput(
            f"{FUSION_CONFIG} names members {printable(repr(names))}; expected {count} distinct "
            "module names.",
            hint="The repo is damaged; pull another revision.",
        )
    return [str(n) for n in names]


def rename_fusion_members(art: Path, members: list[E.AdapterVersion]) -> None:
    """Point a fusion's saved files at the module names its members get in this registry.

    Members load under ``name_vN`` (:func:`registry.loader.module_name`); when the pulled members
    got other names or versions here, the fusion layer's config and weight keys (and the module
    names in ``fusion_manifest.json``) are renamed, so the tensors stay byte-identical but the
    file bytes (and artifact id) differ.
    """
    from safetensors.torch import load_file, save_file

    config_path = art / FUSION_CONFIG
    if not config_path.is_file():
        return
    config = read_json(config_path, FUSION_CONFIG)
    old = [str(n) for n in config.get("adapter_names", [])]
    new = [layout.module_name(m.name, m.version) for m in members]
    if old == new:
        return
    if len(old) != len(new):
        raise InvalidInput(
            f"The fusion is over {len(old)} adapters, but {len(new)} members are recorded.",
            hint="Pull a fusion whose registry.json lists each member the fusion layer names.",
        )
    old_name, new_name = layout.fusion_name(old), layout.fusion_name(new)
    config["adapter_names"] = new
    config["name"] = new_name
    layout.write_json(config_path, config)
    weights_path = art / FUSION_WEIGHTS
    tensors = load_file(str(weights_path))
    save_file(layout.rename_fusion_keys(tensors, old_name, new_name), str(weights_path))
    manifest_path = art / FUSION_MANIFEST
    if manifest_path.is_file():  # the composer's member listing: keep its module names true
        manifest = read_json(manifest_path, FUSION_MANIFEST)
        layout.write_json(manifest_path, layout.rename_manifest_modules(manifest, new))


def _check_adapter_config(repo_id: str, adapter_config: dict[str, Any]) -> None:
    """Refuse adapter configs this registry cannot load: only bottleneck adapters, sane sizes."""
    config = adapter_config["config"]
    label = f"{ADAPTER_CONFIG} of {repo_id}"
    arch = config.get("architecture")
    if arch not in (None, "bottleneck"):
        raise InvalidInput(
            f"{label} describes a {printable(arch)!r} adapter; this registry holds bottleneck "
            "adapters (seq_bn, double_seq_bn) only.",
            hint="Pull a bottleneck adapter, or load this one with the adapters library.",
        )
    factor = config.get("reduction_factor")
    factors = list(factor.values()) if isinstance(factor, dict) else [factor]
    if not factors or not all(
        isinstance(f, int | float) and not isinstance(f, bool) and f > 0 for f in factors
    ):
        raise InvalidInput(
            f"{label} has reduction_factor {printable(repr(factor))}; it must be a positive "
            "number (or a mapping of positive numbers).",
            hint="The repo is damaged; pull another revision.",
        )
