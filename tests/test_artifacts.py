"""The content-addressed artifact store: atomic, read-only, verified on every load."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from registry.artifacts import MANIFEST, ArtifactStore, file_listing_digest
from registry.errors import IntegrityError, NotFound
from tests._util import make_artifact


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    src = make_artifact(tmp_path / "src", b"weights-1")
    first = store.put(src)
    again = store.put(src)
    assert first.sha256 == again.sha256 == file_listing_digest(src)
    assert first.path == tmp_path / "art" / first.sha256[:2] / first.sha256
    assert (first.path / "weights.bin").read_bytes() == b"weights-1"
    assert first.size == len(b"weights-1") + len('{"kind": "test"}')
    other = store.put(make_artifact(tmp_path / "src2", b"weights-2"))
    assert other.sha256 != first.sha256
    assert store.all_ids() == sorted([first.sha256, other.sha256])
    assert store.temp_leftovers() == []


def test_published_files_are_read_only(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    art = store.put(make_artifact(tmp_path / "src", b"x"))
    mode = (art.path / "weights.bin").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not art.path.stat().st_mode & stat.S_IWUSR


def test_flipped_byte_is_detected_and_names_the_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    art = store.put(make_artifact(tmp_path / "src", b"abcdef"))
    target = art.path / "weights.bin"
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"weights\.bin") as info:
        store.open(art.sha256, "adapter demo@1")
    assert "adapter demo@1" in str(info.value)
    assert info.value.hint and "verify" in info.value.hint


def test_missing_and_extra_files_are_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    art = store.put(make_artifact(tmp_path / "src", b"abc"))
    os.chmod(art.path, 0o755)
    (art.path / "extra.txt").write_text("sneaky")
    with pytest.raises(IntegrityError, match="Unexpected files"):
        store.verify(art.sha256)
    (art.path / "extra.txt").unlink()
    os.chmod(art.path / "config.json", 0o644)
    (art.path / "config.json").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        store.verify(art.sha256)
    (art.path / MANIFEST).chmod(0o644)
    (art.path / MANIFEST).write_text("not json")
    with pytest.raises(IntegrityError, match="manifest"):
        store.verify(art.sha256)


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    with pytest.raises(NotFound, match="missing"):
        store.open("0" * 64)


def test_remove_frees_read_only_folder(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    art = store.put(make_artifact(tmp_path / "src", b"abc"))
    assert store.remove(art.sha256) > 0
    assert not art.path.exists()
    assert store.all_ids() == []
