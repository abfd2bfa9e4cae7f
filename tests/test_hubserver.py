"""The test Hub server (tests/hubserver.py) against the real huggingface_hub client (0.36)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

# Registers the fixtures here (pytest goes by the fixture's own name) until conftest.py imports
# them. huggingface_hub is deliberately imported first: hub_server copes with that.
from tests._hubfixture import hub_server_fixture, hub_server_session_fixture  # noqa: F401
from tests.hubserver import HubServer

REPO = "test-user/adapters"
WEIGHTS = bytes(range(256)) * 64  # 16 KiB, binary


def _folder(tmp_path: Path, config: str = '{"r": 8}\n', weights: bytes = WEIGHTS) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(config)
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def api(hub_server: HubServer) -> HfApi:
    return HfApi(endpoint=hub_server.url, token=False)


def test_create_repo_and_exist_ok(api: HfApi, hub_server: HubServer) -> None:
    url = api.create_repo(REPO)
    assert url.repo_id == REPO
    assert url == f"{hub_server.url}/{REPO}"
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(REPO)
    assert e.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    info = api.model_info(REPO)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]  # the Hub's initial commit
    assert info.sha == hub_server.head(REPO)


def test_upload_folder_lfs_and_regular(api: HfApi, hub_server: HubServer, tmp_path: Path) -> None:
    api.create_repo(REPO)
    commit = api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path), commit_message="v1")
    assert len(commit.oid) == 40
    assert commit.oid == hub_server.head(REPO)
    assert commit.repo_url.repo_id == REPO
    assert hashlib.sha256(WEIGHTS).hexdigest() in hub_server.lfs_objects(REPO)
    paths = [r.path for r in hub_server.requests_log]
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/lfs-upload/") for p in paths)
    assert any(p.startswith("/lfs-verify/") for p in paths)

    info = api.model_info(REPO, files_metadata=True)
    by_name = {s.rfilename: s for s in info.siblings}
    assert by_name["adapter_model.safetensors"].lfs is not None
    assert by_name["adapter_model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert by_name["adapter_config.json"].lfs is None
    assert by_name["adapter_config.json"].size == len('{"r": 8}\n')

    # Same content again: the client sees equal oids in preupload and skips the commit.
    again = api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path))
    assert again.oid == commit.oid

    files = sorted(api.list_repo_files(REPO))
    assert files == [".gitattributes", "adapter_config.json", "adapter_model.safetensors"]
    assert [c.title for c in api.list_repo_commits(REPO)] == ["v1", "initial commit"]


def test_refs_revisions_and_downloads(api: HfApi, hub_server: HubServer, tmp_path: Path) -> None:
    api.create_repo(REPO)
    v1 = api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path)).oid
    api.create_tag(REPO, tag="v1", tag_message="first")
    api.create_branch(REPO, branch="stable", revision=v1)
    v2 = api.upload_file(
        path_or_fileobj=b'{"r": 16}\n', path_in_repo="adapter_config.json", repo_id=REPO
    ).oid
    assert v2 != v1

    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v2, "stable": v1}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": v1}
    for rev, sha in (("main", v2), ("v1", v1), ("stable", v1), (v1, v1)):
        assert api.repo_info(REPO, revision=rev).sha == sha

    def get(rev: str) -> bytes:
        return Path(
            hf_hub_download(REPO, "adapter_config.json", revision=rev, endpoint=hub_server.url)
        ).read_bytes()

    assert get("main") == b'{"r": 16}\n'
    assert get("v1") == b'{"r": 8}\n'
    assert get(v1) == b'{"r": 8}\n'  # an older commit sha gets the older bytes
    weights = hf_hub_download(REPO, "adapter_model.safetensors", revision=v2)
    assert Path(weights).read_bytes() == WEIGHTS

    snap = Path(snapshot_download(REPO, revision=v1, local_dir=tmp_path / "snap"))
    assert (snap / "adapter_config.json").read_bytes() == b'{"r": 8}\n'
    assert (snap / "adapter_model.safetensors").read_bytes() == WEIGHTS

    api.delete_branch(REPO, branch="stable")
    api.delete_tag(REPO, tag="v1")
    refs = api.list_repo_refs(REPO)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []


def test_direct_helpers_and_tree(api: HfApi, hub_server: HubServer) -> None:
    hub_server.create_repo_direct(REPO)
    sha = hub_server.commit_files_direct(REPO, {"a/b/c.txt": b"c", "a/d.bin": b"\x00d"})
    tree = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO, recursive=True)}
    assert tree == {
        ".gitattributes": "RepoFile",
        "a": "RepoFolder",
        "a/b": "RepoFolder",
        "a/b/c.txt": "RepoFile",
        "a/d.bin": "RepoFile",
    }
    assert {e.path for e in api.list_repo_tree(REPO, path_in_repo="a", revision=sha)} == {
        "a/b",
        "a/d.bin",
    }
    assert api.file_exists(REPO, "a/d.bin") and not api.file_exists(REPO, "nope")
    assert hub_server.files_at(REPO, sha)["a/b/c.txt"] == b"c"


def test_errors(api: HfApi, hub_server: HubServer) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("test-user/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-user/missing", "x.txt")
    hub_server.create_repo_direct(REPO)
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, ".gitattributes", revision="f" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, revision="dev")


def test_token_required(hub_server: HubServer) -> None:
    hub_server.set_token("hf_good")
    good = HfApi(endpoint=hub_server.url, token="hf_good")
    good.create_repo(REPO, private=True)
    good.upload_file(path_or_fileobj=b"hi", path_in_repo="x.txt", repo_id=REPO)

    bad = HfApi(endpoint=hub_server.url, token="hf_bad")
    with pytest.raises(HfHubHTTPError) as e:
        bad.upload_file(path_or_fileobj=b"no", path_in_repo="x.txt", repo_id=REPO)
    assert e.value.response.status_code == 401
    assert not isinstance(e.value, RepositoryNotFoundError)
    with pytest.raises(HfHubHTTPError) as e:
        hf_hub_download(REPO, "x.txt", token="hf_bad")
    assert e.value.response.status_code == 401

    anonymous = HfApi(endpoint=hub_server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):  # a private repo is hidden, as on the Hub
        anonymous.model_info(REPO)
    with pytest.raises(HfHubHTTPError) as e:
        anonymous.create_repo("test-user/other")
    assert e.value.response.status_code == 401
    assert Path(hf_hub_download(REPO, "x.txt", token="hf_good")).read_bytes() == b"hi"


def test_interrupted_lfs_upload_leaves_branch(
    api: HfApi, hub_server: HubServer, tmp_path: Path
) -> None:
    api.create_repo(REPO)
    before = hub_server.head(REPO)
    hub_server.fail_next("/lfs-upload/", 403)
    with pytest.raises(RuntimeError, match="Error while uploading"):
        api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path))
    assert hub_server.head(REPO) == before
    assert hub_server.lfs_objects(REPO) == set()
    assert not any("/commit/" in r.path for r in hub_server.requests_log)
    # The next attempt goes through.
    assert api.upload_folder(repo_id=REPO, folder_path=_folder(tmp_path)).oid != before


def test_dropped_commit_connection_and_stale_parent(
    api: HfApi, hub_server: HubServer, tmp_path: Path
) -> None:
    api.create_repo(REPO)
    before = hub_server.head(REPO)
    hub_server.fail_next("/commit/main", 0)
    with pytest.raises(OSError):  # requests' ConnectionError is an OSError
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert hub_server.head(REPO) == before

    hub_server.commit_files_direct(REPO, {"y.txt": b"y"})
    with pytest.raises(HfHubHTTPError) as e:
        api.upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, parent_commit=before
        )
    assert e.value.response.status_code == 412


def test_ranged_download(hub_server: HubServer) -> None:
    import requests

    hub_server.commit_files_direct(REPO, {"w.bin": WEIGHTS})
    url = f"{hub_server.url}/{REPO}/resolve/main/w.bin"
    head = requests.head(url, timeout=5)
    assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert head.headers["X-Repo-Commit"] == hub_server.head(REPO)
    part = requests.get(url, headers={"Range": "bytes=10-"}, timeout=5)
    assert part.status_code == 206 and part.content == WEIGHTS[10:]
