"""The artifact store behind its interface: the local folder and an S3 store on a real
S3-compatible server (tests/_s3.py starts it on 127.0.0.1), with the same promises: content-
addressed layout, sha256 verified on every read, atomic publication, no overwrite; and reuse
safe against ``gc`` (issue #16, finding 8) in both."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import artifacts
from registry.artifact_store import RemoteArtifactStore, open_artifact_store
from registry.errors import IntegrityError, InvalidInput, NotFound
from registry.settings import load_settings
from registry.store import Registry
from tests._util import add_version, make_artifact, seed_task


def remote(url: str, cache: Path) -> RemoteArtifactStore:
    return RemoteArtifactStore(url, cache)


def key(url: str, *parts: str) -> str:
    return "/".join([url.removeprefix("s3://"), *parts])


# ---------------------------------------------------------------------- choosing the store
def test_settings_pick_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    assert isinstance(open_artifact_store(load_settings(home)), artifacts.ArtifactStore)
    monkeypatch.setenv("ADAPTER_REGISTRY_ARTIFACTS", str(tmp_path / "elsewhere"))
    local = open_artifact_store(load_settings(home))
    assert isinstance(local, artifacts.ArtifactStore) and local.root == tmp_path / "elsewhere"
    s3 = open_artifact_store(load_settings(home, artifacts="s3://bucket/prefix/"))
    assert isinstance(s3, RemoteArtifactStore) and s3.url == "s3://bucket/prefix"
    assert s3.cache.root == home.absolute() / "cache" / "artifacts"
    assert load_settings(home, artifacts="s3://b/p").artifacts_location == "s3://b/p"


def test_an_unknown_protocol_is_a_clear_error(tmp_path: Path) -> None:
    store = remote("nosuchproto://bucket/x", tmp_path / "cache")
    with pytest.raises(InvalidInput, match="Not an artifact store URL|needs a package"):
        store.exists("a" * 64)


# ---------------------------------------------------------------------- local: leases and staging
def test_local_reuse_restarts_the_age(tmp_path: Path) -> None:
    store = artifacts.ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"abc")
    art = store.put(src)
    assert store.exists(art.sha256) and store.age(art.sha256) < 60
    old = time.time() - 7200
    os.utime(art.path, (old, old))
    assert 7100 < store.age(art.sha256) < 7300
    assert store.put(src).sha256 == art.sha256
    assert store.age(art.sha256) < 60
    store.touch("0" * 64)  # a missing one is ignored
    assert not store.exists("0" * 64) and store.location(art.sha256) == str(art.path)


def test_local_staging_is_a_leftover_only_once_its_process_let_go(tmp_path: Path) -> None:
    store = artifacts.ArtifactStore(tmp_path / "art")
    with store.staging("train") as folder:
        assert folder.parent == store.root / "tmp" and folder.name.startswith("train-")
        (folder / "f").write_text("x")
        assert store.temp_leftovers() == [] and store.leftovers() == []  # locked: alive
        dead = store.root / "tmp" / "train-dead"
        dead.mkdir()  # what a SIGKILL leaves: nobody holds its lock
        (left,) = store.leftovers()
        assert left.location == str(dead) and 0 <= left.age < 60
    assert not folder.exists()
    with pytest.raises(InvalidInput, match="Not a leftover"):
        store.remove_leftover(str(tmp_path))
    store.remove_leftover(str(dead))
    assert store.leftovers() == [] and tmp_path.is_dir()


# ---------------------------------------------------------------------- S3: the promises
def test_s3_layout_is_content_addressed_like_the_local_one(s3_url: str, tmp_path: Path) -> None:
    src = make_artifact(tmp_path / "src", b"weights")
    local = artifacts.ArtifactStore(tmp_path / "local").put(src)
    store = remote(s3_url, tmp_path / "cache")
    art = store.put(src)
    assert art.sha256 == local.sha256 and art.size == local.size
    sha = art.sha256
    files = sorted(store.fs.find(key(s3_url)))
    assert files == [
        key(s3_url, sha[:2], sha, name) for name in (".artifact.json", "config.json", "weights.bin")
    ] + [key(s3_url, "leases", sha)]
    # the manifest has the same bytes as the local store's: the layout is unchanged
    remote_manifest = store.fs.cat_file(key(s3_url, sha[:2], sha, artifacts.MANIFEST))
    assert remote_manifest == (local.path / artifacts.MANIFEST).read_bytes()
    assert store.all_ids() == [sha] and store.exists(sha) and store.leftovers() == []
    assert store.location(sha) == f"{s3_url}/{sha[:2]}/{sha}"


def test_s3_read_from_another_home_downloads_and_verifies(s3_url: str, tmp_path: Path) -> None:
    art = remote(s3_url, tmp_path / "cache-a").put(make_artifact(tmp_path / "src", b"abc"))
    other = remote(s3_url, tmp_path / "cache-b")
    assert not other.cache.exists(art.sha256)
    folder = other.open(art.sha256, "adapter x@1")
    assert folder == tmp_path / "cache-b" / art.sha256[:2] / art.sha256
    assert (folder / "weights.bin").read_bytes() == b"abc"
    other.verify(art.sha256)


def test_s3_tampered_bytes_are_caught_on_read_and_verify(s3_url: str, tmp_path: Path) -> None:
    art = remote(s3_url, tmp_path / "cache-a").put(make_artifact(tmp_path / "src", b"abc"))
    other = remote(s3_url, tmp_path / "cache-b")
    target = key(s3_url, art.sha256[:2], art.sha256, "weights.bin")
    other.fs.pipe_file(target, b"abd")
    with pytest.raises(IntegrityError, match=r"does not match its sha256.*weights\.bin"):
        other.open(art.sha256, "adapter x@1")
    with pytest.raises(IntegrityError, match="adapter x@1"):
        other.verify(art.sha256, "adapter x@1")
    assert not other.cache.exists(art.sha256)  # nothing unverified reached the cache
    # an extra file in the artifact's folder is refused too
    other.fs.pipe_file(target, b"abc")
    other.fs.pipe_file(key(s3_url, art.sha256[:2], art.sha256, "extra.bin"), b"x")
    with pytest.raises(IntegrityError, match="Unexpected files.*extra.bin"):
        other.verify(art.sha256)


def test_s3_a_damaged_cached_copy_is_replaced_by_verified_bytes(
    s3_url: str, tmp_path: Path
) -> None:
    store = remote(s3_url, tmp_path / "cache")
    art = store.put(make_artifact(tmp_path / "src", b"abc"))
    cached = store.cache.path_for(art.sha256) / "weights.bin"
    cached.chmod(0o644)
    cached.write_bytes(b"zzz")
    folder = store.open(art.sha256)
    assert (folder / "weights.bin").read_bytes() == b"abc"


def test_s3_missing_artifact_names_its_url(s3_url: str, tmp_path: Path) -> None:
    store = remote(s3_url, tmp_path / "cache")
    sha = "ab" * 32
    with pytest.raises(NotFound, match=f"missing: {s3_url}/ab/{sha}"):
        store.open(sha, "adapter x@1")


def test_s3_publication_interrupted_before_the_manifest_publishes_nothing(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = remote(s3_url, tmp_path / "cache")
    src = make_artifact(tmp_path / "src", b"abc")
    sha = artifacts.file_listing_digest(src)
    real = store.fs.pipe_file

    def killed(path: str, value: bytes, mode: str = "overwrite", **kw: object) -> None:
        if mode == "create":  # the publishing write of the manifest
            raise KeyboardInterrupt
        real(path, value, mode=mode, **kw)

    monkeypatch.setattr(store.fs, "pipe_file", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(src)
    monkeypatch.undo()
    # the data files reached their final keys, but without the manifest nothing trusts them
    assert store.fs.exists(key(s3_url, sha[:2], sha, "weights.bin"))
    assert not store.exists(sha) and store.all_ids() == []
    with pytest.raises(NotFound):
        remote(s3_url, tmp_path / "other").open(sha)
    (left,) = [x for x in store.leftovers() if "leases" not in x.location]
    assert left.location == f"{s3_url}/{sha[:2]}/{sha}"
    # gc's job: removing it, then a new put publishes completely
    store.remove_leftover(left.location)
    assert store.put(src).sha256 == sha and store.exists(sha)
    assert remote(s3_url, tmp_path / "third").open(sha)


def test_s3_staging_keys_are_written_first_and_removed(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = remote(s3_url, tmp_path / "cache")
    seen: list[str] = []
    real_copy = store.fs.copy

    def spy(path1: str, path2: str, *a: object, **kw: object) -> object:
        seen.append(path1)
        return real_copy(path1, path2, *a, **kw)

    monkeypatch.setattr(store.fs, "copy", spy)
    art = store.put(make_artifact(tmp_path / "src", b"abc"))
    assert seen and all(p.startswith(key(s3_url, "tmp", art.sha256[:12] + "-")) for p in seen)
    assert not store.fs.exists(key(s3_url, "tmp"))


def test_s3_an_existing_manifest_is_never_overwritten(s3_url: str, tmp_path: Path) -> None:
    store = remote(s3_url, tmp_path / "cache")
    src = make_artifact(tmp_path / "src", b"abc")
    art = store.put(src)
    manifest = key(s3_url, art.sha256[:2], art.sha256, artifacts.MANIFEST)
    before = store.fs.info(manifest)
    time.sleep(1.1)  # S3 times have one-second resolution
    assert remote(s3_url, tmp_path / "cache-b").put(src).sha256 == art.sha256
    store.fs.invalidate_cache()
    after = store.fs.info(manifest)
    assert after["LastModified"] == before["LastModified"] and after["ETag"] == before["ETag"]
    # the create-only write itself refuses to replace it
    with pytest.raises(OSError):
        store.fs.pipe_file(manifest, b"{}", mode="create")


def test_s3_reuse_refreshes_the_lease(s3_url: str, tmp_path: Path) -> None:
    store = remote(s3_url, tmp_path / "cache")
    src = make_artifact(tmp_path / "src", b"abc")
    art = store.put(src)
    store.fs.pipe_file(key(s3_url, "leases", art.sha256), json.dumps({"at": 0}).encode())
    assert store.age(art.sha256) > 10**9
    store.put(src)
    assert store.age(art.sha256) < 60


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
        monkeypatch.undo()
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


def test_s3_a_cached_copy_of_an_artifact_removed_elsewhere_is_a_leftover(
    s3_url: str, tmp_path: Path
) -> None:
    mine = remote(s3_url, tmp_path / "cache-a")
    art = mine.put(make_artifact(tmp_path / "src", b"abc"))
    assert mine.leftovers() == []
    remote(s3_url, tmp_path / "cache-b").remove(art.sha256)  # another home's gc
    (left,) = mine.leftovers()
    assert left.location == str(mine.cache.path_for(art.sha256))
    mine.remove_leftover(left.location)
    assert not mine.cache.exists(art.sha256) and mine.leftovers() == []
