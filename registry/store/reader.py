"""What the read-only commands need of a registry: the full store or the fast SQLite reader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .. import entities as E

if TYPE_CHECKING:
    from ..artifact_store import ArtifactBackend


class RegistryReader(Protocol):
    """The read side shared by :class:`registry.store.Registry` and
    :class:`registry.store.fastread.SqliteReader` (``list``, ``show``, ``lineage``)."""

    @property
    def artifacts(self) -> ArtifactBackend: ...

    def resolve(self, ref: str) -> E.Entity: ...

    def list_entities(
        self,
        task: str | None = None,
        kind: str | None = None,
        include_deprecated: bool = True,
        limit: int | None = None,
    ) -> list[E.Entity]: ...

    def get_base_model(self, base_model_id: int) -> E.BaseModel: ...

    def get_dataset(self, dataset_id: int) -> E.Dataset: ...

    def training_run(self, run_id: int) -> E.TrainingRun: ...

    def metrics(self, entity: E.Entity) -> list[E.Metric]: ...

    def hub_links(self, entity: E.Entity) -> list[E.HubLink]: ...

    def aliases(self) -> list[E.Alias]: ...

    def promotion_of(self, entity: E.Entity) -> E.Promotion | None: ...

    def tags(self, entity: E.Entity) -> list[str]: ...

    def description(self, entity: E.Entity) -> str | None: ...

    def lineage(self, entity: E.Entity, max_depth: int = 1000) -> dict[str, Any]: ...
