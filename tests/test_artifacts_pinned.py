"""The artifact store's exact promises, pinned one by one (``make mutants`` measures them).

Error messages and hints are part of the contract (a user acts on them), so they are compared
whole; the manifest's bytes and the id's canonical form are pinned, as are the permission bits
of a published folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from registry import artifacts
from registry.artifacts import MANIFEST, ArtifactStore, file_sha256, tree_digest
from registry.errors import IntegrityError, InvalidInput, NotFound
from tests._util import make_artifact

VERIFY = "Run: adapter-registry verify"


def _nested(folder: Path) -> Path:
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "deep.bin").write_bytes(b"deep")
    (folder / "top.json").write_text('{"x": 1}')
    return folder


def test_the_id_is_sha256_of_the_compact_sorted_listing() -> None:
    entries = [{"path": "w.bin", "size": 3, "sha256": "ab" * 32}]
    canonical = '[{"path":"w.bin","sha256":"' + "ab" * 32 + '","size":3}]'
    assert tree_digest(entries) == hashlib.sha256(canonical.encode()).hexdigest()


def test_file_sha256_streams_files_larger_than_one_chunk(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = os.urandom((1 << 20) * 2 + 17)
    big.write_bytes(data)
    assert file_sha256(big) == hashlib.sha256(data).hexdigest()


def test_put_publishes_nested_folders_with_an_exact_manifest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "not-yet" / "art")  # the root does not exist yet
    art = store.put(_nested(tmp_path / "src"))
    assert (art.path / "a" / "b" / "deep.bin").read_bytes() == b"deep"
    entries = [
        {"path": "a/b/deep.bin", "sha256": hashlib.sha256(b"deep").hexdigest(), "size": 4},
        {"path": "top.json", "sha256": hashlib.sha256(b'{"x": 1}').hexdigest(), "size": 8},
    ]
    expected = json.dumps({"files": entries, "sha256": art.sha256}, indent=1, sort_keys=True)
    assert (art.path / MANIFEST).read_text(encoding="utf-8") == expected
    assert art.sha256 == tree_digest(entries) and art.size == 12
    again = store.put(tmp_path / "src")
    assert (again.sha256, again.path, again.size) == (art.sha256, art.path, art.size)
    assert store.open(art.sha256) == art.path


def test_published_modes_are_exact_at_every_depth(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    art = store.put(_nested(tmp_path / "src"))
    for path in (art.path / "top.json", art.path / "a" / "b" / "deep.bin", art.path / MANIFEST):
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    for path in (art.path, art.path / "a", art.path / "a" / "b"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o550, path
    manifest_size = (art.path / MANIFEST).stat().st_size
    assert store.remove(art.sha256) == 12 + manifest_size  # read-only at every depth, removed
    assert not art.path.exists()


def test_two_artifacts_can_share_an_id_prefix(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    by_prefix: dict[str, str] = {}
    for i in range(400):
        src = make_artifact(tmp_path / f"src{i}", f"payload {i}".encode())
        digest = artifacts.file_listing_digest(src)
        if digest[:2] in by_prefix:
            first = store.put(tmp_path / by_prefix[digest[:2]])
            second = store.put(src)
            assert first.path.parent == second.path.parent
            assert store.all_ids() == sorted([first.sha256, second.sha256])
            return
        by_prefix[digest[:2]] = f"src{i}"
    raise AssertionError("no shared prefix in 400 ids")


def test_all_ids_skips_stray_files_and_folders(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    assert store.all_ids() == []
    art = store.put(make_artifact(tmp_path / "src", b"x"))
    (store.root / "ab").write_text("a stray file with a two-letter name")
    (store.root / "abc").mkdir()
    (store.root / "abc" / ("c" * 64)).mkdir()
    assert store.all_ids() == [art.sha256]


def test_temp_leftovers_are_listed_and_removable(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    assert store.temp_leftovers() == []  # no tmp folder at all
    left = store.root / "tmp" / "abc-123"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "f").write_text("x")
    (left / "sub").chmod(0o500)
    assert store.temp_leftovers() == [left]
    store.remove_path(left)
    assert store.temp_leftovers() == []


def test_ids_must_be_64_lowercase_hex(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    for bad in ("a" * 63, "A" * 64, "X" * 64, "g" * 64, "../" + "a" * 61, "a" * 65):
        with pytest.raises(InvalidInput) as err:
            store.path_for(bad)
        assert err.value.message == f"Not an artifact id: {bad!r}"
        assert err.value.hint == (
            "An artifact id is 64 hex characters. Run: adapter-registry verify --json"
        )


def test_put_refusals_are_exact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    with pytest.raises(InvalidInput) as err:
        store.put(tmp_path / "missing")
    assert err.value.message == f"Artifact source is not a folder: {tmp_path / 'missing'}"
    assert err.value.hint == "Give the folder a save wrote (one adapter or fusion)."
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput) as err:
        store.put(tmp_path / "empty")
    assert err.value.message == f"Artifact source folder is empty: {tmp_path / 'empty'}"
    assert err.value.hint == (
        "Give the folder a save wrote (one adapter or fusion); it has no files."
    )


def test_an_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    store = ArtifactStore(blocker)
    with pytest.raises(InvalidInput) as err:
        store.put(make_artifact(tmp_path / "src", b"x"))
    assert err.value.message.startswith(f"Cannot write to the artifact folder {blocker}: ")
    assert err.value.message.endswith(".") and "None" not in err.value.message
    assert err.value.hint == (
        "Check the permissions and free space of the registry home (ADAPTER_REGISTRY_HOME)."
    )


def test_a_full_disk_while_copying_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "art")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.shutil, "copyfileobj", disk_full)
    with pytest.raises(InvalidInput) as err:
        store.put(make_artifact(tmp_path / "src", b"x"))
    assert err.value.message == (
        f"Cannot write to the artifact folder {store.root}: No space left on device."
    )
    assert store.temp_leftovers() == [] and store.all_ids() == []


def test_a_source_that_changes_while_stored_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"x")
    real = artifacts.file_listing_digest
    monkeypatch.setattr(artifacts, "file_listing_digest", lambda folder: "0" * 64)
    with pytest.raises(IntegrityError) as err:
        store.put(src)
    assert err.value.message == f"Artifact source changed while being stored: {src}"
    assert err.value.hint == "Nothing was stored; run the command again."
    monkeypatch.setattr(artifacts, "file_listing_digest", real)
    assert store.temp_leftovers() == [] and store.all_ids() == []


def test_a_concurrent_writer_that_published_first_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"x")
    real_rename = os.rename

    def lose_the_race(tmp: Path, final: Path) -> None:
        shutil.copytree(tmp, final)  # the other writer's identical folder lands first
        real_rename(tmp, final)  # and so this rename fails

    monkeypatch.setattr(artifacts.os, "rename", lose_the_race)
    art = store.put(src)
    assert art.path.is_dir() and store.all_ids() == [art.sha256]
    assert store.temp_leftovers() == []


def test_a_publication_interrupted_between_write_and_rename_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#16 pin: the files are complete, verified and read-only in a staging folder under tmp/
    before one rename publishes them; interrupted there, nothing exists under the id."""
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"weights")
    digest = artifacts.file_listing_digest(src)
    seen: dict[str, object] = {}

    def interrupted(tmp: Path, final: Path) -> None:
        seen["tmp"], seen["final"] = Path(tmp), Path(final)
        seen["files"] = sorted(p.name for p in Path(tmp).iterdir())
        seen["digest"] = artifacts.file_listing_digest(Path(tmp))
        seen["modes"] = {oct(stat.S_IMODE(p.stat().st_mode) & 0o222) for p in Path(tmp).iterdir()}
        seen["published"] = Path(final).exists()
        raise KeyboardInterrupt  # Ctrl-C (or a kill) right before the rename

    monkeypatch.setattr(artifacts.os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.put(src)
    assert seen["final"] == store.path_for(digest) and seen["published"] is False
    assert Path(str(seen["tmp"])).parent == store.root / "tmp"
    assert seen["files"] == [MANIFEST, "config.json", "weights.bin"] and seen["digest"] == digest
    assert seen["modes"] == {"0o0"}  # already read-only: the rename is the only step left
    assert store.all_ids() == [] and not store.exists(digest)
    with pytest.raises(NotFound):
        store.open(digest)


def test_verify_errors_are_exact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"payload")
    missing = "f" * 64
    with pytest.raises(NotFound) as nf:
        store.open(missing)
    assert nf.value.message == f"The files of artifact are missing: {store.path_for(missing)}"
    assert nf.value.hint == VERIFY

    def fresh() -> tuple[str, Path]:
        art = store.put(src)
        for p in [art.path, *art.path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return art.sha256, art.path

    sha, folder = fresh()
    (folder / MANIFEST).write_text("not json")
    with pytest.raises(IntegrityError) as err:
        store.verify(sha, "books@1")
    assert (
        err.value.message == f"The manifest of books@1 is missing or damaged: {folder / MANIFEST}"
    )
    assert err.value.hint == VERIFY
    shutil.rmtree(folder)

    sha, folder = fresh()
    (folder / "weights.bin").unlink()
    with pytest.raises(IntegrityError) as err:
        store.verify(sha, "books@1")
    assert err.value.message == f"A file of books@1 is missing: {folder / 'weights.bin'}"
    assert err.value.hint == VERIFY
    shutil.rmtree(folder)

    sha, folder = fresh()
    (folder / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(IntegrityError) as err:
        store.verify(sha, "books@1")
    assert err.value.message == (
        "A file of books@1 does not match its sha256 (damaged or tampered): "
        f"{folder / 'weights.bin'}"
    )
    assert err.value.hint == "Run: adapter-registry verify (then re-train or re-pull it)"
    shutil.rmtree(folder)

    sha, folder = fresh()
    (folder / "b-extra").write_text("1")
    (folder / "a-extra").write_text("2")
    with pytest.raises(IntegrityError) as err:
        store.verify(sha, "books@1")
    assert err.value.message == f"Unexpected files in books@1: a-extra, b-extra in {folder}"
    assert err.value.hint == VERIFY
    shutil.rmtree(folder)

    sha, folder = fresh()
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = []
    (folder / MANIFEST).write_text(json.dumps(manifest))
    for p in list(folder.iterdir()):
        if p.name != MANIFEST:
            p.unlink()
    with pytest.raises(IntegrityError) as err:
        store.verify(sha)
    assert (
        err.value.message == f"The manifest of artifact does not match its id: {folder / MANIFEST}"
    )
    assert err.value.hint == VERIFY


def test_a_write_killed_half_way_leaves_its_folder_where_gc_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a SIGKILL during the copy: no clean-up runs, and the staging folder stays behind."""
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"x")
    digest = artifacts.file_listing_digest(src)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.shutil, "copyfileobj", killed)
    monkeypatch.setattr(artifacts, "_remove_tree", lambda folder: None)
    with pytest.raises(KeyboardInterrupt):
        store.put(src)
    (left,) = store.temp_leftovers()
    assert left.parent == store.root / "tmp"
    prefix, _, token = left.name.partition("-")
    assert prefix == digest[:12] and len(token) == 32
    assert store.all_ids() == []
