"""The artifact store is recorded in the database (#18): a teammate whose
ADAPTER_REGISTRY_ARTIFACTS names another store, or none, is told which store the registry uses.

Real SQLite and PostgreSQL databases; the remote stores are fsspec ``memory://`` stores (the
real S3 one is in tests/test_team.py, end to end).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.errors import WrongArtifactStore
from registry.store import Registry
from registry.store.store_record import recorded_store


def _url() -> str:
    return f"memory://team-{uuid.uuid4().hex[:8]}/adapters"


def _cli(home: Path, db: str | None, store: str | None, *args: str) -> tuple[int, str]:
    root = ["--home", str(home), *(["--db", db] if db else [])]
    root += ["--artifacts", store] if store else []
    result = CliRunner().invoke(cli, [*root, *args])
    return result.exit_code, result.output


def test_a_remote_store_is_recorded_and_another_one_is_refused(
    backend_url: str | None, tmp_path: Path
) -> None:
    home, store = tmp_path / "alice", _url()
    reg = Registry.init(home, backend_url, artifacts=store + "/")  # a trailing slash is the same
    assert recorded_store(reg) == store
    reg.close()
    Registry.open(home, backend_url, artifacts=store).close()

    other = _url()
    for wrong, says in ((other, other), (None, f"the local folder {home / 'artifacts'}")):
        with pytest.raises(WrongArtifactStore) as err:
            Registry.open(home, backend_url, artifacts=wrong)
        assert err.value.message == (
            f"This registry's artifacts are in {store} (recorded in its database), but this "
            f"command would use {says}."
        )
        assert err.value.hint == (
            f"export ADAPTER_REGISTRY_ARTIFACTS={store} (or --artifacts {store}); if the store "
            "itself was moved there: adapter-registry init --store-moved"
        )
        with pytest.raises(WrongArtifactStore):
            Registry.init(home, backend_url, artifacts=wrong)

    # The command line says the same (list and show take the fast reader on SQLite: it defers).
    for args in (["list"], ["show", "x@1"], ["tag", "x@1", "t"]):
        code, out = _cli(home, backend_url, other, *args)
        assert code == 1 and f"This registry's artifacts are in {store}" in out, out
        assert f"Hint: export ADAPTER_REGISTRY_ARTIFACTS={store}" in out

    # The store was moved: init --store-moved records the new one, and the old one is refused.
    code, out = _cli(home, backend_url, other, "init", "--store-moved", "--json")
    assert code == 0, out
    Registry.open(home, backend_url, artifacts=other).close()
    with pytest.raises(WrongArtifactStore, match=f"are in {other}"):
        Registry.open(home, backend_url, artifacts=store)


def test_a_local_store_records_nothing_and_the_home_can_move(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = Registry.init(home)
    assert recorded_store(reg) is None
    reg.close()
    moved = tmp_path / "moved"
    shutil.copytree(home, moved)
    code, out = _cli(moved, None, None, "list", "--json")
    assert (code, out.strip()) == (0, "[]")
    # the first open with a remote store records it; the local folder is refused afterwards
    store = _url()
    Registry.open(moved, artifacts=store).close()
    code, out = _cli(moved, None, None, "list")
    assert code == 1 and f"artifacts are in {store}" in out, out
