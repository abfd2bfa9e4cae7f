"""Which artifact store a registry uses, recorded in its database (``registry_settings``).

A team shares one database and one remote store (``ADAPTER_REGISTRY_ARTIFACTS=s3://…``). The
first time the registry is opened with a remote store, its URL is recorded; afterwards a
command whose store differs (another URL, or none: the local folder) is refused before it
reads or writes anything, with the recorded URL in the hint, instead of finding every artifact
"missing" or publishing where no teammate looks. A registry with a local store records nothing:
its home may be copied or moved. ``init --store-moved`` records the current store when the
store itself was moved.
"""

from __future__ import annotations

from sqlalchemy import delete, exc, select
from sqlalchemy.orm import Session

from ..errors import WrongArtifactStore
from ..orm import SqlRegistrySetting
from ..settings import ARTIFACTS_ENV, STORE_SETTING, Settings
from .session import Plumbing


def recorded_store(store: Plumbing) -> str | None:
    """Return the store URL recorded in the database, if any."""
    return store._read(
        lambda s: s.scalar(
            select(SqlRegistrySetting.value).where(SqlRegistrySetting.name == STORE_SETTING)
        )
    )


def check_artifact_store(store: Plumbing, settings: Settings, *, moved: bool = False) -> None:
    """Record a remote store the first time; refuse a store other than the recorded one.

    ``moved``: record the current store instead (``init --store-moved``; a local one clears it).

    Raises:
        WrongArtifactStore: the database records another store than this command's.
    """
    current = settings.remote_store_url
    if moved:
        store._write(lambda s: _set(s, current))
        return
    recorded = recorded_store(store)
    if recorded is None and current is not None:
        store._write(
            lambda s: _set(s, current, only_if_unset=True),
            is_conflict=lambda e: isinstance(e, exc.IntegrityError),  # two first opens at once
        )
        recorded = recorded_store(store)
    if recorded is None or recorded == current:
        return
    here = current or f"the local folder {settings.artifact_root}"
    raise WrongArtifactStore(
        f"This registry's artifacts are in {recorded} (recorded in its database), but this "
        f"command would use {here}.",
        hint=f"export {ARTIFACTS_ENV}={recorded} (or --artifacts {recorded}); if the store "
        "itself was moved there: adapter-registry init --store-moved",
    )


def _set(s: Session, url: str | None, *, only_if_unset: bool = False) -> None:
    row = s.get(SqlRegistrySetting, STORE_SETTING)
    if row is not None and only_if_unset:
        return
    if url is None:
        s.execute(delete(SqlRegistrySetting).where(SqlRegistrySetting.name == STORE_SETTING))
    elif row is None:
        s.add(SqlRegistrySetting(name=STORE_SETTING, value=url))
    else:
        row.value = url
