"""The artifact store behind its interface: the local folder and an S3 store on a real
S3-compatible server (tests/_s3.py starts it on 127.0.0.1), with the same promises: content-
addressed layout, sha256 verified on every read, atomic publication, no overwrite; leases and
locked staging. The registry-level races with ``gc`` are in tests/test_artifact_races.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from registry import artifacts
from registry.artifact_store import RemoteArtifactStore, open_artifact_store
from registry.errors import IntegrityError, InvalidInput, NotFound
from registry.settings import load_settings
from tests._util import make_artifact


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
    with pytest.raises(InvalidInput, match="Not a leftover") as err:
        store.remove_leftover(str(tmp_path))
    assert err.value.hint == "List the leftovers with: adapter-registry gc --dry-run"
    store.remove_leftover(str(dead))
    assert store.leftovers() == [] and tmp_path.is_dir()
    # One that is gone (another gc removed it while this one looked) is infinitely old.
    assert store.age("0" * 64) == float("inf")


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
    monkeypatch.setattr(store.fs, "pipe_file", real)
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
