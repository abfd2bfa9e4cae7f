"""Pull an adapter or fusion from the Hub, pinned by commit, and register it as a new version.

:func:`pull` resolves a branch, tag or sha to a commit sha first (refusing anything that is not
a full commit id) and downloads at that sha only, so a moving branch cannot change what is
registered. It checks the repo's file list before it downloads anything, streams each file into
a private folder under a name chosen here (the server's ETag or file name never becomes a path),
hashes the bytes itself and caps what it downloads and decompresses (``max_bytes``). Every
answer has a timeout. Before the first database write the staged adapter (or fusion, over its
members) is loaded on its base model and its head's labels are compared with the task's.

Registering is one database transaction: base model, task, dataset snapshots, the version, its
metrics, the ``hub_links`` row and the ``pulled_from_hub`` edge commit together or not at all,
and the "already pulled" check runs inside that transaction (under a lock on PostgreSQL), so
concurrent pulls of one commit register one version.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..store import validate_name
from .adapterhub import _stage_adapterhub_repo
from .common import (
    REGISTRY_FILE,
    PullResult,
    parse_repo_spec,
)
from .fetch import _Fetcher, _resolve, _resolve_base, _same_base, _stage_member
from .importing import _already_pulled, _check_loads, _precheck, _register_once
from .safety import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
    read_json,
)
from .stage import (
    _stage_registry_repo,
    _Staged,
    check_registry_header,
    plan_members,
)

if TYPE_CHECKING:
    from ..store import Registry

_LOADING = threading.Lock()


# long: the public API's docstring (arguments, every refusal) is half of it; the flow reads top down
def pull(
    registry: Registry,
    spec: str,
    *,
    name: str | None = None,
    task: str | None = None,
    base: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT_S,
    recursive: bool = True,
) -> PullResult:
    """Register the adapter or fusion at ``OWNER/NAME[@REVISION]`` as a new version.

    The revision (branch, tag or sha; default main) is resolved to a commit sha first; pulling
    the same sha again returns the version registered the first time. A fusion's members that
    this registry lacks are pulled with it, each at the commit its ``registry.json`` records
    (``recursive``), and the lineage edges between pulled versions and versions already here
    are imported; everything registers in one transaction.

    Args:
        name: register under this name (default: the name in registry.json, else the repo's).
        task: the task (default: registry.json's; for AdapterHub repos the repo's name). A
            headless adapter needs an existing task here.
        base: the base model folder or Hub id. Default: registry.json's Hub base model, or a
            base model this registry knows with the recorded revision (weights sha256); a
            local base model of the pushing machine must be given. Its revision must match.
        max_bytes: the most bytes this pull downloads and decompresses, in all.
        timeout: seconds to wait for the Hub (to connect, and between bytes of an answer).
        recursive: pull a fusion's missing members too (else refuse, naming them).

    Raises:
        HubError: unreachable or stalled Hub, bad token, missing repo or revision, or an answer
            that is not a commit id.
        InvalidInput: unsafe file names, malformed JSON documents, too many bytes, pickle
            weights that fail ``weights_only=True``, an adapter that does not load on its base,
            or a task / base model / labels that do not match.
        NotFound: the base model is not known here (give ``base``), or a fusion member is
            missing and cannot be pulled.
        IntegrityError: downloaded bytes differ from registry.json's listing.
    """
    from huggingface_hub import HfApi

    repo_id, revision = parse_repo_spec(spec)
    if name is not None:
        validate_name(name, "name")
    if task is not None:
        validate_name(task, "task name")
    if max_bytes <= 0 or not timeout > 0:
        raise InvalidInput(
            "max_bytes and timeout must be positive.", hint="e.g. --max-size 2GB --timeout 60"
        )
    rev = revision or "main"
    api = HfApi(endpoint=endpoint, token=token)
    sha, files = _resolve(api, repo_id, rev, endpoint, timeout)
    done = _already_pulled(registry, repo_id, sha)
    if done is not None:
        return PullResult(done, repo_id, rev, sha, True, "already pulled")

    with registry.artifacts.staging("pull") as tmp:
        root = Path(tmp)
        fetch = _Fetcher(repo_id, sha, root / "downloads", endpoint, token, timeout, max_bytes)
        art = root / "artifact"
        art.mkdir()
        if REGISTRY_FILE in files:
            meta = read_json(fetch(REGISTRY_FILE).path, f"{REGISTRY_FILE} of {repo_id}")
            check_registry_header(repo_id, meta)
            plan = (
                plan_members(registry, repo_id, meta, recursive=recursive)
                if meta["kind"] == "fusion"
                else []
            )
            local = [m for _, m in plan if m is not None]
            resolved = _resolve_base(registry, repo_id, dict(meta["base_model"]), base, local)
            staged = _stage_registry_repo(registry, repo_id, files, meta, fetch, art, name, task)
            staged.base = resolved
            staged.members = [
                m if m is not None else _stage_member(registry, api, repo_id, i, info, root, fetch)
                for i, (info, m) in enumerate(plan)
            ]
            for member in staged.members:
                if isinstance(member, _Staged):
                    _same_base(repo_id, member, resolved)
                    member.base = resolved
        else:
            staged = _stage_adapterhub_repo(
                registry, repo_id, files, fetch, art, name, task, base, fetch.budget
            )
        origin = staged.training_run.setdefault("hyperparams", {}).setdefault("hub_origin", {})
        origin.update(repo_id=repo_id, revision=rev, commit_sha=sha)
        for member in staged.members:
            if isinstance(member, _Staged):
                _precheck(registry, member)
        _precheck(registry, staged)
        with _LOADING:  # transformers' model loading is not thread-safe (global init hooks)
            _check_loads(registry, repo_id, staged)
        entity, noop, pulled = _register_once(registry, staged, repo_id, sha, rev, root)
    source = "already pulled" if noop else staged.source
    return PullResult(entity, repo_id, rev, sha, noop, source, tuple(e.ref for e in pulled))
