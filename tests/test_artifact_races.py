"""Reuse, staging and ``gc`` against each other, on a registry over either store (the home's
folder, or S3 on the local S3-compatible server of tests/_s3.py) and either database: issue #16,
findings 8 (``gc`` removing an old orphan that a running write reuses) and 18 (staging folders
left by a SIGKILL where ``gc`` never looked). Kept apart from tests/test_artifact_store.py, whose
fast unit tests ``make mutants`` runs for every mutant."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import artifacts
from registry.artifact_store import RemoteArtifactStore
from registry.store import Registry
from tests._util import add_version, make_artifact, seed_task


# ---------------------------------------------------------------------- a registry on either store
@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (the home's own folder) or an S3 URL on the local S3-compatible server."""
    yield None if request.param == "local" else request.getfixturevalue("s3_url")


def _age_out(reg: Registry, sha: str) -> None:
    """Make an artifact look published two hours ago."""
    store = reg.artifacts
    if isinstance(store, RemoteArtifactStore):
        store.fs.pipe_file(f"{store._key('leases', sha)}", json.dumps({"at": 1.0}).encode())
    else:
        old = time.time() - 7200
        os.utime(store.path_for(sha), (old, old))
    assert store.age(sha) > 3600


def test_registry_verify_and_gc_on_either_store(
    store_url: str | None, backend_url: str | None, tmp_path: Path
) -> None:
    reg = Registry.init(tmp_path / "home", backend_url, artifacts=store_url)
    try:
        seed_task(reg)
        keep = add_version(reg, tmp_path, "books", b"keep")
        orphan = reg.artifacts.put(make_artifact(tmp_path / "orphan", b"nobody"))
        assert reg.verify().ok and reg.verify().orphans == [orphan.sha256]
        assert reg.gc() == []  # young
        _age_out(reg, orphan.sha256)
        _age_out(reg, keep.artifact_sha256)
        assert reg.gc(dry_run=True) == [reg.artifacts.location(orphan.sha256)]
        assert reg.gc() == [reg.artifacts.location(orphan.sha256)]
        assert not reg.artifacts.exists(orphan.sha256)
        assert reg.artifacts.all_ids() == [keep.artifact_sha256]
        assert reg.artifact_path(keep).is_dir() and reg.verify().ok
    finally:
        reg.close()


@pytest.mark.parametrize("grace", [3600.0, 0.0])
def test_gc_never_takes_an_orphan_that_a_write_is_reusing(
    store_url: str | None,
    backend_url: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    grace: float,
) -> None:
    """Issue #16, finding 8: an old orphan, a write whose put() reuses it, and a gc (from
    another registry handle, as another process would) that runs after the put and before the
    row is committed. With the grace period the refreshed age keeps it; with none (or a slower
    writer), the check under the write lock publishes it again. Either way the version that is
    registered has its files."""
    reg = Registry.init(tmp_path / "home", backend_url, artifacts=store_url)
    other = Registry.open(tmp_path / "home", backend_url, artifacts=store_url)
    try:
        seed_task(reg)
        payload_dir = make_artifact(tmp_path / "again", b"reused")
        orphan = reg.artifacts.put(payload_dir)
        _age_out(reg, orphan.sha256)
        removed: list[str] = []
        real_put = reg.artifacts.put

        def put_then_gc(source: Path) -> artifacts.StoredArtifact:
            stored = real_put(source)
            if not removed:  # only the first put: the race happens once
                removed.append(";".join(other.gc(grace_seconds=grace)) or "-")
            return stored

        monkeypatch.setattr(reg.artifacts, "put", put_then_gc)
        version = add_version(reg, tmp_path, "again", b"reused")
        assert version.artifact_sha256 == orphan.sha256
        expected = "-" if grace else other.artifacts.location(orphan.sha256)
        assert removed == [expected]  # with grace 0 the gc really removed it meanwhile
        monkeypatch.setattr(reg.artifacts, "put", real_put)
        report = reg.verify()
        assert report.ok, report.problems
        assert reg.artifact_path(version).is_dir()
    finally:
        other.close()
        reg.close()


# ---------------------------------------------------------------------- staging left by a SIGKILL
_KILLED_TRAIN = """
import sys, time
from pathlib import Path
from registry import trainer
from registry.store import Registry
from registry.trainer import TrainConfig

def stop_here(*args, **kwargs):  # the adapter is saved in its staging folder: hang there
    print("staged", flush=True)
    time.sleep(600)

trainer._register = stop_here
reg = Registry.open(sys.argv[1], artifacts=sys.argv[4] or None)
cfg = TrainConfig(epochs=1, batch_size=16, threads=1)
trainer.train(reg, "sentiment", sys.argv[2], sys.argv[3], config=cfg, progress=False)
"""


def test_a_sigkilled_train_leaves_its_staging_where_gc_finds_it(
    store_url: str | None, tiny_base_dir: Path, tmp_path: Path
) -> None:
    """Issue #16, finding 18: ``train`` built its files in the system's temp dir, where a
    SIGKILL left them and ``gc`` never looked. Now the staging folder is the registry's own: a
    live one is left alone (its process holds its lock), a dead one is reported and removed."""
    import signal
    import subprocess
    import sys

    from tests._util import sentiment_data

    home = tmp_path / "home"
    Registry.init(home, artifacts=store_url).close()
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    env = {**os.environ, "TMPDIR": str(systmp), "PYTHONPATH": str(Path.cwd())}
    args = [str(home), str(sentiment_data(tmp_path / "d")), str(tiny_base_dir), store_url or ""]
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_TRAIN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "staged", child.stderr.read() if child.stderr else ""
        reg = Registry.open(home, artifacts=store_url)
        try:
            cache_tmp = (
                reg.artifacts.cache.root if store_url else reg.settings.artifact_root
            ) / "tmp"
            (staging,) = [p for p in cache_tmp.iterdir() if p.name.startswith("train-")]
            assert (staging / "adapter").is_dir()
            assert reg.gc(grace_seconds=0) == [] and staging.is_dir()  # alive: not a leftover
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            assert reg.verify().orphans == [str(staging)]
            assert reg.gc(grace_seconds=0) == [str(staging)]
            assert not staging.exists() and reg.verify().orphans == []
        finally:
            reg.close()
        assert [p.name for p in systmp.iterdir()] == []  # nothing in the system's temp dir
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_gc_removing_under_its_lock_makes_the_writer_publish_again(
    backend_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock ordering itself, with two threads: gc holds its lock (exclusive) while it removes
    an old orphan that a writer's put() has just reused. The writer's commit waits for that lock,
    then finds the files gone and publishes them again. Without the lock, the writer commits
    first and gc then deletes the files under the new row."""
    import threading

    reg = Registry.init(tmp_path / "home", backend_url)
    other = Registry.open(tmp_path / "home", backend_url)
    try:
        seed_task(reg)
        orphan = reg.artifacts.put(make_artifact(tmp_path / "again", b"reused"))
        _age_out(reg, orphan.sha256)
        in_removal, writer_done = threading.Event(), threading.Event()
        real_remove = other.artifacts.remove

        def slow_remove(sha: str) -> int:
            in_removal.set()
            writer_done.wait(timeout=3)  # a writer not held back by the lock finishes meanwhile
            return real_remove(sha)

        monkeypatch.setattr(other.artifacts, "remove", slow_remove)
        removed: list[list[str]] = []
        gc = threading.Thread(target=lambda: removed.append(other.gc(grace_seconds=0)))
        gc.start()
        assert in_removal.wait(timeout=60)
        version = add_version(reg, tmp_path, "again", b"reused")
        writer_done.set()
        gc.join(timeout=60)
        assert removed == [[other.artifacts.location(orphan.sha256)]]
        report = reg.verify()
        assert report.ok, report.problems
        assert reg.artifact_path(version).is_dir()
    finally:
        other.close()
        reg.close()
