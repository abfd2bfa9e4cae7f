"""Rebuild adapters and fusions from the registry into a live model, verified on the way.

Members of a fusion are loaded under their registry identities (:func:`module_name`), so a
fusion's saved weights always meet the same adapter names they were trained with; this is what
keeps reloaded fusions exact (the failure mode of adapter-hub/adapters #188 and #477).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import entities as E
from . import layout
from .errors import IntegrityError, InvalidInput, NotFound

if TYPE_CHECKING:
    from .backbone import Backbone
    from .store import Registry

HEAD_PREFIX = "head_"


def module_name(entity: E.Entity) -> str:
    """Return the name an adapter version or fusion head is loaded under inside the model."""
    return layout.module_name(entity.name, entity.version)


@dataclass
class Loaded:
    """A live model with one adapter or one fusion active, ready for inference or eval."""

    backbone: Backbone
    entity: E.Entity
    head: str
    setup: str | list[str]
    label_names: list[str]
    #: the fusion layer's own name when it was loaded under one (``load_entity(named=True)``)
    fusion_name: str | None = None

    def activate(self) -> None:
        """Make this adapter or fusion the one the backbone's forward runs."""
        self.backbone.activate(self.setup, self.head, self.fusion_name)


def base_source(registry: Registry, entity: E.Entity) -> tuple[str, str]:
    """Return (name or path, revision) of the base model an entity was trained on."""
    base = registry.get_base_model(entity.base_model_id)
    return base.name, base.revision


def load_backbone_for(registry: Registry, entity: E.Entity, device: str = "cpu") -> Backbone:
    """Load the entity's base model and check that its revision is the recorded one."""
    from .backbone import Backbone

    base = registry.get_base_model(entity.base_model_id)
    name, revision = base.name, base.revision
    local = _is_local(name)
    if not local and _names_a_folder(base):
        raise NotFound(
            f"The base model folder {name} of {entity.ref} is gone (moved or deleted).",
            hint=f"Point the registry at its new place: adapter-registry base relink "
            f"{base.id} NEW_FOLDER",
        )
    backbone = Backbone.load(name, revision=None if local else revision, device=device)
    if backbone.info.revision != revision:
        raise InvalidInput(
            f"The base model at {name} has changed since {entity.ref} was trained "
            f"(revision {backbone.info.revision[:12]}, recorded {revision[:12]}).",
            hint="Restore the original base model files, or re-train the adapter on the new base.",
        )
    return backbone


def _is_local(name: str) -> bool:
    return Path(name).expanduser().exists()


def _names_a_folder(base: E.BaseModel) -> bool:
    """True when a base model was registered from a local folder (not loaded by Hub id)."""
    if base.hub_id is not None and base.hub_id == base.name:
        return False
    return base.weights_sha256 is not None or len(base.revision) == 64


def attach_adapter(registry: Registry, backbone: Backbone, version: E.AdapterVersion) -> str:
    """Load an adapter version (+ its head) from its verified artifact; return its module name."""
    name = module_name(version)
    if name not in backbone.adapter_names:
        backbone.load_adapter(registry.artifact_path(version), name)
    return name


def load_entity(
    registry: Registry,
    entity: E.Entity,
    device: str = "cpu",
    backbone: Backbone | None = None,
    named: bool = False,
) -> Loaded:
    """Build a model with ``entity`` (adapter version or fusion) active, from verified files.

    With ``named`` a fusion's layer is loaded under the fusion's own module name, so fusions
    over the same members (two versions, or two tasks) can share one backbone.
    """
    backbone = backbone or load_backbone_for(registry, entity, device)
    task = registry.get_task_by_id(entity.task_id)
    if isinstance(entity, E.AdapterVersion):
        name = attach_adapter(registry, backbone, entity)
        backbone.activate(name, name)
        return Loaded(backbone, entity, name, name, backbone.head_labels(name))
    versions = [registry.get_adapter_version(mid) for mid in entity.member_ids]
    folder = registry.artifact_path(entity)
    _check_manifest(folder, entity, versions)
    members = [attach_adapter(registry, backbone, v) for v in versions]
    head = HEAD_PREFIX + module_name(entity)
    fusion_name = module_name(entity) if named else None
    backbone.load_fusion(folder, members, head, name=fusion_name)
    backbone.activate(members, head, fusion_name)
    labels = backbone.head_labels(head)
    if labels != list(task.label_names):
        raise InvalidInput(
            f"The head of {entity.ref} has labels {labels}, task has {task.label_names}.",
            hint="Run: adapter-registry verify",
        )
    return Loaded(backbone, entity, head, members, labels, fusion_name)


def _check_manifest(folder: Path, fusion: E.Fusion, versions: list[E.AdapterVersion]) -> None:
    """Refuse a fusion whose manifest names other member artifacts than its rows do."""
    manifest = layout.read_manifest(folder)
    if manifest is None:  # saved before manifests existed, or by another tool
        return
    saved = [m.get("artifact_sha256") for m in manifest.get("members", [])]
    expected = [v.artifact_sha256 for v in versions]
    if saved != expected:
        raise IntegrityError(
            f"The manifest of {fusion.ref} names other member adapters than the registry "
            f"({[m.get('ref') for m in manifest.get('members', [])]} vs "
            f"{[v.ref for v in versions]}).",
            hint="Run: adapter-registry verify",
        )
