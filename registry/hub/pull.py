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

import contextlib
import hashlib
import itertools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..errors import HubError, IntegrityError, InvalidInput, NotFound, RegistryError
from ..store import EdgeIn, MetricIn, validate_name
from .cards import is_local_path, portable
from .common import (
    REGISTRY_FILE,
    PullResult,
    _hub_errors,
    _refs_text,
    parse_repo_spec,
    printable,
    printable_list,
    validate_repo_id,
)
from .safety import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
    Budget,
    Downloaded,
    _check_paths,
    check_commit_sha,
    download,
    read_json,
)
from .stage import (
    _stage_adapterhub_repo,
    _stage_registry_repo,
    _Staged,
    check_registry_header,
    plan_members,
    rename_fusion_members,
    upstream_names,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..backbone import Backbone
    from ..store import Registry

_LOADING = threading.Lock()


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
        }

    if base is not None:
        info = resolve_base(base)
        if info.revision != revision:
            raise InvalidInput(
                f"--base {base} is at revision {info.revision[:12]}, but {repo_id} was trained "
                f"on {printable(recorded['name'])} at revision {printable(revision[:12])}.",
                hint="Give the same base model files, or leave out --base.",
            )
        return described(info.name, info.revision, info)
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


def _already_pulled(registry: Registry, repo_id: str, sha: str) -> E.Entity | None:
    for link in registry.hub_links(repo_id=repo_id):
        if link.direction == "pull" and link.commit_sha == sha:
            return registry.get_entity(link.entity_kind, link.entity_id)
    return None


def _precheck(registry: Registry, staged: _Staged) -> None:
    """Refuse, before any write, what registering would refuse half-way."""
    validate_name(staged.name, f"{staged.kind} name")
    validate_name(staged.task, "task name")
    labels = staged.label_names
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidInput(
            f"The pulled task needs at least two distinct labels, got {labels}.",
            hint="Pull an adapter with a classification head of two or more labels.",
        )
    try:
        existing = registry.get_task(staged.task)
    except NotFound:
        existing = None
    if existing is not None:
        if list(existing.label_names) != labels or existing.kind != staged.task_kind:
            raise InvalidInput(
                f"Task {staged.task!r} here has labels {existing.label_names} "
                f"({existing.kind}-text); the pulled one has {labels} ({staged.task_kind}-text).",
                hint="Pull it into another task: --task NEW_TASK",
            )
        if existing.base_model_id is not None:
            here = registry.get_base_model(existing.base_model_id)
            if here.revision != staged.base["revision"]:
                raise InvalidInput(
                    f"Task {staged.task!r} here is on base model {here.name} (revision "
                    f"{here.revision[:12]}); the pulled {staged.kind} is on "
                    f"{staged.base['name']} (revision {str(staged.base['revision'])[:12]}).",
                    hint="Pull it into another task: --task NEW_TASK",
                )
    try:
        clash = registry.resolve(f"{staged.name}@1")
    except NotFound:
        clash = None
    if clash is not None and (clash.kind != staged.kind or clash.task != staged.task):
        raise InvalidInput(
            f"{staged.name!r} is already the name of a {clash.kind} of task {clash.task!r}.",
            hint="Register it under another name: --as NAME",
        )
    bases = {m.base_model_id for m in staged.members if isinstance(m, E.AdapterVersion)}
    if len(bases) > 1:
        raise InvalidInput(
            "The fusion's members here are on different base models.",
            hint="Pull fusions whose members share one base model.",
        )


def _check_loads(registry: Registry, repo_id: str, staged: _Staged) -> None:
    """Load the staged adapter (or fusion, over its members) on its base; compare head labels.

    Junk weights, configs the library cannot build, heads whose labels contradict the task and
    weights that compute NaN are refused here, before anything is written. A fusion loads over
    its members under the module names it was saved with (renamed when it is registered).
    """
    from ..backbone import Backbone
    from ..loader import HEAD_PREFIX

    what = f"The {staged.kind} in {repo_id}"
    base = staged.base
    local = Path(str(base["name"])).expanduser().exists()
    backbone: Backbone = Backbone.load(str(base["name"]), None if local else str(base["revision"]))
    if backbone.info.revision != base["revision"]:
        raise InvalidInput(
            f"The base model {printable(base['name'])} here is at revision "
            f"{backbone.info.revision[:12]}, but {what} records "
            f"{printable(str(base['revision'])[:12])}.",
            hint="Give the base model it was trained on with --base.",
        )
    if staged.members:
        names = upstream_names(staged.folder, len(staged.members))
        with _refused_unless_loads(what):
            for member, module in zip(staged.members, names, strict=True):
                if isinstance(member, _Staged):
                    backbone.load_adapter(member.folder, module)
                else:
                    backbone.load_adapter(registry.artifact_path(member), module)
        for member, module in zip(staged.members, names, strict=True):
            if isinstance(member, _Staged) and module in backbone.head_names:
                _same_labels(backbone.head_labels(module), member, f"A member of {what}")
        with _refused_unless_loads(what):
            head = HEAD_PREFIX + "pulled"
            backbone.load_fusion(staged.folder, names, head)
            backbone.activate(names, head)
    else:
        with _refused_unless_loads(what):
            head = backbone.load_adapter(staged.folder, "pulled")
            if head not in backbone.head_names:
                return  # a headless adapter: loading it is the check
            backbone.activate(head, head)
    _same_labels(backbone.head_labels(head), staged, what)
    import torch

    with _refused_unless_loads(what):
        batch = backbone.tokenizer(["a short test sentence"], return_tensors="pt")
        with torch.no_grad():
            logits = backbone.logits(dict(batch))
    if not bool(torch.isfinite(logits).all()):
        raise InvalidInput(f"{what} computes NaN or infinite scores.", hint="Refused.")


def _same_labels(labels: list[str], staged: _Staged, what: str) -> None:
    if labels != staged.label_names:
        raise InvalidInput(
            f"{what} has a head with labels {printable_list(labels)}, but its task "
            f"{staged.task!r} has {printable_list(staged.label_names)}.",
            hint="The repo contradicts itself; pull another revision.",
        )


@contextlib.contextmanager
def _refused_unless_loads(what: str) -> Iterator[None]:
    """Turn any failure to build or run the pulled weights into one clear InvalidInput."""
    hint = "The repo is damaged or not for this base model; pull another one."
    try:
        yield
    except RegistryError as err:
        raise InvalidInput(
            f"{what} does not load on its base model: {printable(err.message)}",
            hint=err.hint or hint,
        ) from err
    except Exception as err:  # the adapters library fails in many ways on junk configs
        first = str(err).splitlines()[0] if str(err) else ""
        raise InvalidInput(
            f"{what} does not load on its base model: {type(err).__name__}: {printable(first)}",
            hint=hint,
        ) from err


def _register_once(
    registry: Registry, staged: _Staged, repo_id: str, sha: str, rev: str, workdir: Path
) -> tuple[E.Entity, bool, list[E.Entity]]:
    """Register ``staged`` (with any members pulled with it) and hub links in one transaction.

    Returns (entity, False, the members registered with it). When another pull registered this
    commit first, nothing is written: (its entity, True, []). Artifacts are published before
    the rows that use them and removed again if the transaction fails and no row uses them.
    """
    from ..artifacts import file_listing_digest

    published: list[str] = []
    attempts = itertools.count()

    def publish(folder: Path) -> None:
        digest = file_listing_digest(folder)
        if not registry.artifacts.exists(digest):
            published.append(digest)
        registry.artifacts.put(folder)

    for member in staged.members:
        if isinstance(member, _Staged):
            publish(member.folder)
    if not staged.members:
        publish(staged.folder)

    def unit(session: Session) -> tuple[E.Entity, bool, list[E.Entity]]:
        if session.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(f"{repo_id}@{sha}".encode()).digest()[:8], "big")
            session.execute(_advisory_lock(), {"key": key - (1 << 63)})
        done = _already_pulled(registry, repo_id, sha)
        if done is not None:
            return done, True, []
        pulled: list[tuple[_Staged, E.Entity]] = []
        members: list[E.AdapterVersion] = []
        for member in staged.members:
            if not isinstance(member, _Staged):
                members.append(member)
                continue
            assert member.origin is not None
            m_repo, m_sha, m_rev = member.origin
            earlier = _already_pulled(registry, m_repo, m_sha)
            if isinstance(earlier, E.AdapterVersion):
                members.append(earlier)
                continue
            version = _register(registry, member)
            assert isinstance(version, E.AdapterVersion)
            _link(registry, version, m_repo, m_sha, m_rev)
            pulled.append((member, version))
            members.append(version)
        folder = staged.folder
        if staged.members:
            folder = workdir / f"fusion-{next(attempts)}"
            shutil.copytree(staged.folder, folder)
            rename_fusion_members(folder, members)
            publish(folder)
        entity = _register(registry, staged, members, folder)
        _link(registry, entity, repo_id, sha, rev)
        _import_lineage(registry, [*pulled, (staged, entity)])
        return entity, False, [e for _, e in pulled]

    try:
        return registry.transaction(unit, is_conflict=_is_race)
    except BaseException:
        referenced = registry.referenced_artifacts()
        for digest in dict.fromkeys(published):
            if digest not in referenced:
                with contextlib.suppress(OSError, RegistryError):
                    registry.artifacts.remove(digest)
        raise


def _link(registry: Registry, entity: E.Entity, repo_id: str, sha: str, rev: str) -> None:
    link = registry.record_hub_link(
        entity, repo_id=repo_id, commit_sha=sha, revision=rev, direction="pull"
    )
    registry.add_edge("hub", link.id, entity.kind, entity.id, "pulled_from_hub")


#: Upstream lineage relations imported on pull, with the node kinds they join.
_IMPORTED = {"warm_started_from": ("adapter", "adapter"), "fused_from": ("adapter", "fusion")}


def _import_lineage(registry: Registry, pulled: list[tuple[_Staged, E.Entity]]) -> None:
    """Add the pushing registry's lineage edges that join versions present here.

    An upstream adapter or fusion node is matched here by its artifact sha256 (a fusion pulled
    over renamed members by the sha it had upstream). Only edges into a version this pull
    registered are added, so a pull never rewrites the history of versions already here.
    """
    by_sha: dict[tuple[str, str], E.Entity] = {}
    for e in registry.list_entities():
        by_sha.setdefault((e.kind, e.artifact_sha256), e)
    for s, e in pulled:
        by_sha[(e.kind, s.upstream_sha)] = e
    new = {(e.kind, e.id) for _, e in pulled}
    for s, _ in pulled:
        graph = s.lineage
        raw_nodes = graph.get("nodes")
        raw_edges = graph.get("edges")
        if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
            continue
        nodes = {str(n.get("key")): n for n in raw_nodes if isinstance(n, dict)}
        for edge in raw_edges:
            if not isinstance(edge, dict) or edge.get("relation") not in _IMPORTED:
                continue
            relation = str(edge["relation"])
            ends: list[E.Entity] = []
            for key, kind in zip(
                (edge.get("parent"), edge.get("child")), _IMPORTED[relation], strict=True
            ):
                node = nodes.get(str(key))
                if node is None or node.get("kind") != kind:
                    break
                sha = node.get("artifact_sha256") or s.ref_shas.get(str(node.get("label")))
                if key == graph.get("root"):
                    sha = s.upstream_sha
                local = by_sha.get((kind, str(sha)))
                if local is None:
                    break
                ends.append(local)
            if len(ends) != 2:
                continue
            parent, child = ends
            if (child.kind, child.id) in new and (parent.kind, parent.id) != (child.kind, child.id):
                registry.add_edge(parent.kind, parent.id, child.kind, child.id, relation)


def _is_race(err: BaseException) -> bool:
    """A lost race to create the same row (task, base model, name): the retry re-reads it."""
    from sqlalchemy import exc

    text_ = str(err.orig).lower() if isinstance(err, exc.IntegrityError) else ""
    return "unique" in text_ or "duplicate key" in text_


def _advisory_lock() -> Any:
    from sqlalchemy import text

    return text("SELECT pg_advisory_xact_lock(:key)")


def _register(
    registry: Registry,
    staged: _Staged,
    members: list[E.AdapterVersion] | None = None,
    folder: Path | None = None,
) -> E.Entity:
    if members:
        base_id = members[0].base_model_id
        base_row = registry.get_base_model(base_id)
        if base_row.revision != staged.base["revision"]:
            raise InvalidInput(
                f"The fusion's members here are on base revision {base_row.revision[:12]}, the "
                f"fusion on {str(staged.base['revision'])[:12]}.",
                hint="Pull the members trained on the fusion's base model revision.",
            )
    else:
        b = staged.base
        base_id = registry.ensure_base_model(
            str(b["name"]),
            str(b["revision"]),
            str(b.get("architecture", "unknown")),
            int(b.get("hidden_size", 0)),
            int(b.get("num_layers", 0)),
        ).id
    task_row = registry.ensure_task(
        staged.task, staged.task_kind, staged.label_names, staged.text_fields, base_id
    )
    dataset_ids: dict[tuple[str, str], int] = {}
    for d in staged.datasets:
        ds = registry.record_dataset(
            task_row.id,
            str(d["source"]),
            str(d["split"]),
            int(d["row_count"]),
            str(d["fingerprint"]),
            dict(d.get("label_distribution") or {}),
        )
        dataset_ids[(ds.fingerprint, ds.split)] = ds.id
    metrics = [
        MetricIn(
            name=str(m["name"]),
            value=float(m["value"]),
            split=m.get("split"),
            dataset_id=dataset_ids.get((str(m.get("dataset_fingerprint")), str(m.get("split")))),
            step=m.get("step"),
        )
        for m in staged.metrics
    ]
    lineage: list[EdgeIn] = []
    if staged.kind == "fusion":
        return registry.register_fusion(
            name=staged.name,
            task=staged.task,
            base_model_id=base_id,
            member_ids=[m.id for m in members or []],
            config=staged.config,
            head=staged.head,
            artifact_dir=folder or staged.folder,
            trainable_params=staged.trainable_params,
            training_run=staged.training_run,
            metrics=metrics,
            lineage=lineage,
        )
    return registry.register_adapter_version(
        name=staged.name,
        task=staged.task,
        base_model_id=base_id,
        method=staged.method,
        config=staged.config,
        artifact_dir=staged.folder,
        trainable_params=staged.trainable_params,
        training_run=staged.training_run,
        metrics=metrics,
        lineage=lineage,
    )
