"""#16 pins on the read path, on a real registry with real files:

- loading an entity re-hashes its artifact: a flipped byte in a registered version's files is
  refused (``Registry.artifact_path``/``profile_path``, which the loader and ``serve`` use);
- a fusion's manifest is compared with its member rows: a manifest naming other member
  artifacts than the registry's rows is refused before anything loads.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry import layout, loader
from registry.errors import IntegrityError
from registry.store import Registry
from tests._util import add_version, make_artifact, seed_task


def _flip_a_byte(folder: Path, name: str) -> None:
    target = folder / name
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    target.write_bytes(bytes(data))


def test_loading_a_version_rehashes_its_files(tmp_path: Path) -> None:
    reg = Registry.init(tmp_path / "home")
    seed_task(reg)
    version = add_version(reg, tmp_path, "books", b"weights of books")
    folder = reg.artifact_path(version)  # intact: loads
    _flip_a_byte(folder, "weights.bin")
    with pytest.raises(IntegrityError, match=r"books@1.*does not match its sha256|weights\.bin"):
        reg.artifact_path(version)
    with pytest.raises(IntegrityError):
        reg.artifact_path(reg.resolve("books@1"))


def _fusion_folder(tmp_path: Path, members: list[object], shas: list[str]) -> Path:
    folder = make_artifact(tmp_path / f"fusion-{shas[0][:8]}", b"fusion weights")
    manifest = layout.fusion_manifest(
        name="both",
        task="sentiment",
        members=[
            {"ref": m.ref, "adapter_version_id": m.id, "artifact_sha256": sha}
            for m, sha in zip(members, shas, strict=True)
        ],
        dynamic=False,
        fusion_config={},
        head_labels=["negative", "positive"],
        head_layers=2,
        base_name="tiny-bert",
        base_revision="r" * 40,
    )
    layout.write_manifest(folder, manifest)
    return folder


def test_a_fusion_manifest_must_name_its_member_rows(tmp_path: Path) -> None:
    reg = Registry.init(tmp_path / "home")
    base_id, _ = seed_task(reg)
    a = add_version(reg, tmp_path, "books", b"books")
    b = add_version(reg, tmp_path, "movies", b"movies")
    registered = []
    for shas in ([a.artifact_sha256, b.artifact_sha256], [b.artifact_sha256, a.artifact_sha256]):
        registered.append(
            reg.register_fusion(
                name="both",
                task="sentiment",
                base_model_id=base_id,
                member_ids=[a.id, b.id],
                config={},
                head={"labels": ["negative", "positive"]},
                artifact_dir=_fusion_folder(tmp_path, [a, b], shas),
                trainable_params=1,
            )
        )
    good, swapped = registered
    members = [reg.get_adapter_version(i) for i in good.member_ids]
    loader._check_manifest(reg.artifact_path(good), good, members)  # rows and manifest agree
    with pytest.raises(IntegrityError) as err:
        loader._check_manifest(reg.artifact_path(swapped), swapped, members)
    assert err.value.message == (
        "The manifest of both@2 names other member adapters than the registry "
        "(['books@1', 'movies@1'] vs ['books@1', 'movies@1'])."
    )
    assert err.value.hint == "Run: adapter-registry verify"
    # A manifest that lists no members at all is refused too (the rows name two).
    bare = tmp_path / "bare"
    bare.mkdir()
    layout.write_manifest(bare, {"format": "fusion"})
    with pytest.raises(IntegrityError) as err:
        loader._check_manifest(bare, good, members)
    assert err.value.message.endswith("([] vs ['books@1', 'movies@1']).")
    # No manifest (saved before manifests existed, or by another tool): nothing to compare.
    loader._check_manifest(tmp_path / "no-manifest", good, members)
