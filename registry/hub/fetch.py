"""Fetching from the Hub for :func:`registry.hub.pull`: resolving a revision to a checked commit,
downloading files into a private folder under names chosen here (capped and timed out), staging a
fusion's members, and finding the recorded base model here."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..errors import HubError, IntegrityError, InvalidInput, NotFound
from .cards import is_local_path, portable
from .common import (
    REGISTRY_FILE,
    _hub_errors,
    _refs_text,
    printable,
    validate_repo_id,
)
from .safety import (
    Budget,
    Downloaded,
    _check_paths,
    check_commit_sha,
    download,
    read_json,
)
from .stage import (
    _stage_registry_repo,
    _Staged,
    check_registry_header,
)

if TYPE_CHECKING:
    from ..store import Registry


def _resolve(
    api: Any, repo_id: str, rev: str, endpoint: str | None, timeout: float
) -> tuple[str, list[str]]:
    """Resolve ``rev`` of ``repo_id`` to a commit sha; return it and the repo's (checked) files."""
    from huggingface_hub.errors import RevisionNotFoundError

    shown_rev = printable(rev)
    with _hub_errors(repo_id, f"resolving {repo_id}@{shown_rev}", endpoint, shown_rev):
        try:
            info = api.repo_info(repo_id, revision=rev, timeout=timeout)
        except RevisionNotFoundError as err:
            raise HubError(
                f"Repository {repo_id} has no branch, tag or commit '{shown_rev}'."
                + _refs_text(api, repo_id, timeout),
                hint=f"Pick one of them: adapter-registry pull {repo_id}@BRANCH_TAG_OR_SHA",
            ) from err
    sha = check_commit_sha(repo_id, info.sha)
    files = [str(s.rfilename) for s in (info.siblings or [])]
    _check_paths(repo_id, files)
    return sha, files


def _stage_member(
    registry: Registry,
    api: Any,
    fusion_repo: str,
    index: int,
    member: dict[str, Any],
    root: Path,
    parent: _Fetcher,
) -> _Staged:
    """Download and verify a fusion member from the repo and commit the fusion records."""
    link = member["hub"][-1]
    what = f"member {printable(member.get('ref'))} of the fusion in {fusion_repo}"
    try:
        repo_id = validate_repo_id(str(link["repo_id"]))
    except InvalidInput as err:
        raise InvalidInput(
            f"The {what} is recorded at {printable(repr(link['repo_id']))}, not a Hub repo.",
            hint="The fusion's registry.json is damaged; pull another revision.",
        ) from err
    commit = check_commit_sha(repo_id, link["commit_sha"])
    sha, files = _resolve(api, repo_id, commit, parent.endpoint, parent.timeout)
    if sha != commit:
        raise HubError(
            f"{repo_id} answered commit {sha} for commit {commit}.",
            hint="Pin another commit, or check the Hub endpoint (HF_ENDPOINT).",
        )
    fetch = _Fetcher(
        repo_id,
        sha,
        root / f"member-{index}-downloads",
        parent.endpoint,
        parent.token,
        parent.timeout,
        budget=parent.budget,
    )
    if REGISTRY_FILE not in files:
        raise InvalidInput(
            f"The {what} at {repo_id}@{sha[:12]} has no {REGISTRY_FILE}.",
            hint="Pull a fusion whose members were pushed by adapter-registry.",
        )
    meta = read_json(fetch(REGISTRY_FILE).path, f"{REGISTRY_FILE} of {repo_id}")
    check_registry_header(repo_id, meta)
    if meta["kind"] != "adapter":
        raise InvalidInput(
            f"The {what} at {repo_id}@{sha[:12]} is not an adapter.",
            hint="Pull an adapter or fusion repository (adapter-registry push writes one).",
        )
    art = root / f"member-{index}"
    art.mkdir()
    staged = _stage_registry_repo(registry, repo_id, files, meta, fetch, art, None, None)
    if staged.upstream_sha != str(member["artifact_sha256"]):
        raise IntegrityError(
            f"The {what} at {repo_id}@{sha[:12]} is artifact "
            f"{printable(staged.upstream_sha)[:12]}, not the "
            f"{printable(str(member['artifact_sha256']))[:12]} the fusion records.",
            hint="The repos were edited by hand; pull the members by hand, then the fusion "
            "with --no-recursive.",
        )
    rev = str(link.get("revision") or sha)
    staged.origin = (repo_id, sha, rev)
    hub_origin = staged.training_run.setdefault("hyperparams", {}).setdefault("hub_origin", {})
    hub_origin.update(repo_id=repo_id, revision=rev, commit_sha=sha)
    return staged


def _same_base(repo_id: str, member: _Staged, base: dict[str, Any]) -> None:
    if member.base.get("revision") != base["revision"]:
        raise InvalidInput(
            f"A member of the fusion in {repo_id} is on base revision "
            f"{printable(str(member.base.get('revision')))[:12]}, the fusion on "
            f"{str(base['revision'])[:12]}.",
            hint="The fusion's repos contradict each other; pull another revision.",
        )


def _known_bases(registry: Registry, members: list[E.AdapterVersion]) -> list[E.BaseModel]:
    """Base models this registry has: fusion members' first, then every other, oldest first."""
    from sqlalchemy import select

    from ..orm import SqlBaseModel

    ids: list[int] = [m.base_model_id for m in members]
    ids += registry.transaction(
        lambda s: list(s.scalars(select(SqlBaseModel.id).order_by(SqlBaseModel.id)))
    )
    return [registry.get_base_model(i) for i in dict.fromkeys(ids)]


def _resolve_base(
    registry: Registry,
    repo_id: str,
    recorded: dict[str, Any],
    base: str | None,
    members: list[E.AdapterVersion],
) -> dict[str, Any]:
    """Find the recorded base model here: ``base``, a Hub id, or a known base of that revision.

    Runs before any weights are downloaded. A pushed ``registry.json`` names a local base model
    by its folder's name only, so the folder must be given (``base``) unless this registry has
    a base model with the same revision (sha256 of its weight files) that it can load.
    """
    from ..backbone import resolve_base

    revision = str(recorded["revision"])

    def described(name: str, rev: str, info: Any = None) -> dict[str, Any]:
        src = info or recorded
        get = (lambda k: getattr(src, k)) if info is not None else src.get
        return {
            "name": name,
            "revision": rev,
            "architecture": str(get("architecture") or "unknown"),
            "hidden_size": int(get("hidden_size") or 0),
            "num_layers": int(get("num_layers") or 0),
            "hub_id": recorded.get("hub_id"),
            "hub_revision": recorded.get("hub_revision"),
        }

    if base is not None:
        info = resolve_base(base)
        if info.revision != revision:
            raise InvalidInput(
                f"--base {base} is at revision {info.revision[:12]}, but {repo_id} was trained "
                f"on {printable(recorded['name'])} at revision {printable(revision[:12])}.",
                hint="Give the same base model files, or leave out --base.",
            )
        return described(info.location, info.revision, info)
    name = str(recorded["name"])
    for known in _known_bases(registry, members):
        if known.revision == revision and (
            not is_local_path(known.name) or Path(known.name).expanduser().is_dir()
        ):
            return described(known.name, known.revision)
    folder = Path(name).expanduser()
    # A base loaded by Hub id is recorded with hub_id equal to its name (older pushes lack
    # hub_id: a name that is no local path is a Hub id there).
    on_hub = recorded["hub_id"] == name if "hub_id" in recorded else not is_local_path(name)
    if on_hub or (folder.is_absolute() and folder.is_dir()):
        # A Hub id (loaded at the recorded commit), or a folder an older push recorded.
        return described(name, revision)
    hub_id = recorded.get("hub_id")
    copy = f", a copy of Hub model {printable(hub_id)}" if isinstance(hub_id, str) else ""
    raise NotFound(
        f"{repo_id} was trained on the local base model {printable(portable(name))} "
        f"(sha256 of its weight files {printable(revision[:12])}{copy}), which this registry "
        "does not know.",
        hint=f"Give your copy of it: adapter-registry pull {repo_id} --base FOLDER",
    )


class _Fetcher:
    """Download files of one repo commit into a private folder, under names chosen here."""

    def __init__(
        self,
        repo_id: str,
        sha: str,
        folder: Path,
        endpoint: str | None,
        token: str | bool | None,
        timeout: float,
        max_bytes: int = 0,
        budget: Budget | None = None,
    ) -> None:
        self.repo_id, self.sha, self.folder = repo_id, sha, folder
        self.endpoint, self.token, self.timeout = endpoint, token, timeout
        self.budget = budget or Budget(max_bytes)
        self._got: dict[str, Downloaded] = {}
        folder.mkdir()

    def __call__(self, filename: str) -> Downloaded:
        if filename in self._got:
            return self._got[filename]
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import (  # type: ignore[attr-defined]
            build_hf_headers,
            get_session,
            hf_raise_for_status,
        )

        url = hf_hub_url(self.repo_id, filename, revision=self.sha, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)

        @contextlib.contextmanager
        def get(url: str) -> Any:
            response = get_session().get(url, headers=headers, stream=True, timeout=self.timeout)
            try:
                hf_raise_for_status(response)
                yield response
            finally:
                response.close()

        dest = self.folder / f"{len(self._got):04d}.download"
        label = f"{printable(filename)} in {self.repo_id}"
        with _hub_errors(
            self.repo_id, f"downloading {printable(filename)}", self.endpoint, self.sha
        ):
            got = download(get, url, dest, self.budget, label)
        self._got[filename] = got
        return got
