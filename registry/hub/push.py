"""Push an adapter version or fusion to the Hub, pinned by the commit it lands at."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..errors import HubError, InvalidInput, RegistryError
from .card_text import model_card
from .cards import build_metadata, check_license, local_paths
from .common import _SHA, CARD_FILE, REGISTRY_FILE, PushResult, _hub_errors, validate_repo_id
from .safety import DEFAULT_TIMEOUT_S

#: The most bytes read back to compare a pushed card and registry.json with the staged ones.
_CHECK_BYTES = 64 * 1024 * 1024

if TYPE_CHECKING:
    from ..store import Registry


def stage_push(registry: Registry, entity: E.Entity, dest: Path) -> list[str]:
    """Write the files a push uploads into ``dest``; return their names, sorted."""
    folder = registry.artifact_path(entity)
    meta = build_metadata(registry, entity, folder)
    dest.mkdir(parents=True, exist_ok=True)
    for entry in meta["artifact"]["files"]:
        rel = str(entry["path"])
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, target)
    (dest / REGISTRY_FILE).write_text(
        json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def _write_card(dest: Path, repo_id: str, license_id: str | None, endpoint: str) -> None:
    meta = json.loads((dest / REGISTRY_FILE).read_text(encoding="utf-8"))
    card = model_card(meta, repo_id, license_id=license_id, endpoint=endpoint)
    (dest / CARD_FILE).write_text(card, encoding="utf-8")


def _refuse_local_paths(registry: Registry, entity: E.Entity, dest: Path) -> None:
    """Refuse to push when a staged file names a path of this machine (defence in depth)."""
    needles = [(p, p.encode()) for p in local_paths(registry, entity)]
    for path in sorted(dest.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for text, needle in needles:
            if needle in data:
                rel = path.relative_to(dest).as_posix()
                raise InvalidInput(
                    f"{rel} of {entity.ref} names the local path {text}; a push publishes no "
                    "paths of this machine, so nothing was pushed.",
                    hint="Retrain or re-fuse it with the current version of adapter-registry "
                    "(older artifacts recorded absolute paths), then push again.",
                )


def _unchanged(
    staged: Path, folder: Path, repo_id: str, head: str, endpoint: str | None, token: Any
) -> bool:
    """True when the repo's card and registry.json at ``head`` equal the staged ones.

    They change while the artifact does not: after a re-``eval``, another ``--license``, or a
    fusion member's first push. Any failure to read them counts as changed (push again).
    """
    from .fetch import _Fetcher

    fetch = _Fetcher(repo_id, head, folder, endpoint, token, DEFAULT_TIMEOUT_S, _CHECK_BYTES)
    try:
        return all(
            fetch(name).path.read_bytes() == (staged / name).read_bytes()
            for name in (REGISTRY_FILE, CARD_FILE)
        )
    except RegistryError:
        return False


# long: the public API's docstring is a third of it; the no-op check and upload read top down
def push(
    registry: Registry,
    ref: str,
    repo_id: str,
    *,
    private: bool = False,
    branch: str = "main",
    endpoint: str | None = None,
    token: str | bool | None = None,
    license_id: str | None = None,
) -> PushResult:
    """Upload an adapter version or fusion to ``repo_id`` on ``branch`` and record the commit.

    Pushing an artifact that was already pushed to that repo and branch, whose head is still
    that commit with the same card and ``registry.json``, is a no-op. The repo is created when
    missing (``private`` applies then).

    Args:
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` / huggingface.co).
        token: default None lets huggingface_hub find ``HF_TOKEN`` or the login token.
        license_id: the card's ``license`` (a Hub licence id such as ``apache-2.0``).

    Raises:
        HubError: the Hub is unreachable, refused the token, or the upload failed
            (nothing is recorded then).
        InvalidInput: a bad repo, branch or licence, or a file that names a local path.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    validate_repo_id(repo_id)
    if license_id is not None:
        check_license(license_id)
    if not branch or branch.startswith("/") or ".." in branch:
        raise InvalidInput(f"Invalid branch name {branch!r}.", hint="e.g. --branch main")
    entity = registry.resolve(ref)
    api = HfApi(endpoint=endpoint, token=token)
    pushed = [
        h
        for h in registry.hub_links(entity, repo_id=repo_id)
        if h.direction == "push"
        and h.revision == branch
        and h.artifact_sha256 == entity.artifact_sha256
    ]
    with registry.artifacts.staging("push") as tmp:
        staged = Path(tmp) / "repo"
        files = stage_push(registry, entity, staged)
        _write_card(staged, repo_id, license_id, api.endpoint)
        _refuse_local_paths(registry, entity, staged)
        files = sorted([*files, CARD_FILE])
        meta = json.loads((staged / REGISTRY_FILE).read_text(encoding="utf-8"))
        alone = tuple(str(m["ref"]) for m in meta.get("members") or [] if not m["hub"])
        if pushed:
            head = None
            with _hub_errors(repo_id, f"reading {repo_id}@{branch}", endpoint, branch):
                try:
                    head = api.repo_info(repo_id, revision=branch).sha
                except (RepositoryNotFoundError, RevisionNotFoundError):
                    head = None  # deleted since: push again
            if (
                head is not None
                and head == pushed[-1].commit_sha
                and _unchanged(staged, Path(tmp) / "head", repo_id, head, endpoint, token)
            ):
                return PushResult(entity, repo_id, branch, head, True, files, alone)
        with _hub_errors(repo_id, f"pushing {entity.ref} to {repo_id}@{branch}", endpoint, branch):
            api.create_repo(repo_id, private=private, exist_ok=True)
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            try:
                info = api.upload_folder(
                    repo_id=repo_id,
                    folder_path=str(staged),
                    revision=branch,
                    commit_message=f"Push {entity.ref} ({entity.kind}) from adapter-registry",
                    commit_description=f"Artifact sha256 {entity.artifact_sha256}.",
                    delete_patterns="*",
                )
            except ValueError as err:  # CommitInfo could not parse the commit URL
                raise HubError(
                    f"The Hub client could not read the answer to the commit: {err}",
                    hint="Set HF_ENDPOINT before starting the program "
                    "(huggingface_hub reads it once, at import).",
                ) from err
        commit = str(info.oid)
    if not _SHA.match(commit):
        raise HubError(
            f"The Hub answered with an invalid commit id {commit!r}.",
            hint="Try again; if it persists, check the Hub endpoint (HF_ENDPOINT).",
        )
    registry.record_hub_link(
        entity, repo_id=repo_id, commit_sha=commit, revision=branch, direction="push"
    )
    return PushResult(entity, repo_id, branch, commit, False, files, alone)
