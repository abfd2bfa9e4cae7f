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
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..errors import HubError, InvalidInput, NotFound, RegistryError
from ..store import EdgeIn, MetricIn, validate_name
from .common import (
    REGISTRY_FILE,
    PullResult,
    _hub_errors,
    _refs_text,
    parse_repo_spec,
    printable,
    printable_list,
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
from .stage import _stage_adapterhub_repo, _stage_registry_repo, _Staged

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
) -> PullResult:
    """Register the adapter or fusion at ``OWNER/NAME[@REVISION]`` as a new version.

    The revision (branch, tag or sha; default main) is resolved to a commit sha first; pulling
    the same sha again returns the version registered the first time.

    Args:
        name: register under this name (default: the name in registry.json, else the repo's).
        task: the task (default: registry.json's; for AdapterHub repos the repo's name). A
            headless adapter needs an existing task here.
        base: the base model (default: registry.json's, else adapter_config.json's model_name);
            with registry.json its revision must match the recorded one.
        max_bytes: the most bytes this pull downloads and decompresses, in all.
        timeout: seconds to wait for the Hub (to connect, and between bytes of an answer).

    Raises:
        HubError: unreachable or stalled Hub, bad token, missing repo or revision, or an answer
            that is not a commit id.
        InvalidInput: unsafe file names, malformed JSON documents, too many bytes, pickle
            weights that fail ``weights_only=True``, an adapter that does not load on its base,
            or a task / base model / labels that do not match.
        IntegrityError: downloaded bytes differ from registry.json's listing.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    repo_id, revision = parse_repo_spec(spec)
    if name is not None:
        validate_name(name, "name")
    if task is not None:
        validate_name(task, "task name")
    if max_bytes <= 0 or not timeout > 0:
        raise InvalidInput("max_bytes and timeout must be positive.")
    rev = revision or "main"
    shown_rev = printable(rev)
    api = HfApi(endpoint=endpoint, token=token)
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
    done = _already_pulled(registry, repo_id, sha)
    if done is not None:
        return PullResult(done, repo_id, rev, sha, True, "already pulled")
    files = [str(s.rfilename) for s in (info.siblings or [])]
    _check_paths(repo_id, files)

    with tempfile.TemporaryDirectory(prefix="adapter-registry-pull-") as tmp:
        fetch = _Fetcher(repo_id, sha, Path(tmp) / "downloads", endpoint, token, timeout, max_bytes)
        art = Path(tmp) / "artifact"
        art.mkdir()
        if REGISTRY_FILE in files:
            meta = read_json(fetch(REGISTRY_FILE).path, f"{REGISTRY_FILE} of {repo_id}")
            staged = _stage_registry_repo(registry, repo_id, files, meta, fetch, art, name, task)
        else:
            staged = _stage_adapterhub_repo(
                registry, repo_id, files, fetch, art, name, task, base, fetch.budget
            )
        if base is not None and staged.source == "adapter-registry":
            _check_base_option(staged, base)
        origin = staged.training_run.setdefault("hyperparams", {}).setdefault("hub_origin", {})
        origin.update(repo_id=repo_id, revision=rev, commit_sha=sha)
        _precheck(registry, staged)
        with _LOADING:  # transformers' model loading is not thread-safe (global init hooks)
            _check_loads(registry, repo_id, staged)
        entity, noop = _register_once(registry, staged, repo_id, sha, rev)
    return PullResult(entity, repo_id, rev, sha, noop, "already pulled" if noop else staged.source)


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
        max_bytes: int,
    ) -> None:
        self.repo_id, self.sha, self.folder = repo_id, sha, folder
        self.endpoint, self.token, self.timeout = endpoint, token, timeout
        self.budget = Budget(max_bytes)
        self._got: dict[str, Downloaded] = {}
        folder.mkdir()

    def __call__(self, filename: str) -> Downloaded:
        if filename in self._got:
            return self._got[filename]
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

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


def _check_base_option(staged: _Staged, base: str) -> None:
    from ..backbone import resolve_base

    info = resolve_base(base)
    if info.revision != staged.base["revision"]:
        raise InvalidInput(
            f"--base {base} is at revision {info.revision[:12]}, but the adapter was trained on "
            f"{staged.base['name']} at revision {str(staged.base['revision'])[:12]}.",
            hint="Give the same base model files, or leave out --base.",
        )
    staged.base = {
        "name": info.name,
        "revision": info.revision,
        "architecture": info.architecture,
        "hidden_size": info.hidden_size,
        "num_layers": info.num_layers,
    }


def _precheck(registry: Registry, staged: _Staged) -> None:
    """Refuse, before any write, what registering would refuse half-way."""
    validate_name(staged.name, f"{staged.kind} name")
    validate_name(staged.task, "task name")
    labels = staged.label_names
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidInput(f"The pulled task needs at least two distinct labels, got {labels}.")
    try:
        existing = registry.get_task(staged.task)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.label_names != labels or existing.kind != staged.task_kind:
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
    if staged.members and len({m.base_model_id for m in staged.members}) != 1:
        raise InvalidInput("The fusion's members here are on different base models.")


def _check_loads(registry: Registry, repo_id: str, staged: _Staged) -> None:
    """Load the staged adapter (or fusion, over its members) on its base; compare head labels.

    Junk weights, configs the library cannot build, heads whose labels contradict the task and
    weights that compute NaN are refused here, before anything is written.
    """
    from ..backbone import Backbone
    from ..loader import HEAD_PREFIX, attach_adapter, load_backbone_for

    what = f"The {staged.kind} in {repo_id}"
    backbone: Backbone
    if staged.members:
        backbone = load_backbone_for(registry, staged.members[0])
        with _refused_unless_loads(what):
            names = [attach_adapter(registry, backbone, m) for m in staged.members]
            head = HEAD_PREFIX + "pulled"
            backbone.load_fusion(staged.folder, names, head)
            backbone.activate(names, head)
    else:
        base = staged.base
        local = Path(str(base["name"])).expanduser().exists()
        backbone = Backbone.load(str(base["name"]), None if local else str(base["revision"]))
        if backbone.info.revision != base["revision"]:
            raise InvalidInput(
                f"The base model {printable(base['name'])} here is at revision "
                f"{backbone.info.revision[:12]}, but {what} records "
                f"{printable(str(base['revision'])[:12])}.",
                hint="Give the base model it was trained on with --base.",
            )
        with _refused_unless_loads(what):
            head = backbone.load_adapter(staged.folder, "pulled")
            if head not in backbone.head_names:
                return  # a headless adapter: loading it is the check
            backbone.activate(head, head)
    labels = backbone.head_labels(head)
    if labels != staged.label_names:
        raise InvalidInput(
            f"{what} has a head with labels {printable_list(labels)}, but its task "
            f"{staged.task!r} has {printable_list(staged.label_names)}.",
            hint="The repo contradicts itself; pull another revision.",
        )
    import torch

    with _refused_unless_loads(what):
        batch = backbone.tokenizer(["a short test sentence"], return_tensors="pt")
        with torch.no_grad():
            logits = backbone.logits(dict(batch))
    if not bool(torch.isfinite(logits).all()):
        raise InvalidInput(f"{what} computes NaN or infinite scores.", hint="Refused.")


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
    registry: Registry, staged: _Staged, repo_id: str, sha: str, rev: str
) -> tuple[E.Entity, bool]:
    """Register ``staged`` and its hub link in one transaction; (entity, False).

    When another pull registered this commit first, nothing is written: (its entity, True).
    The artifact is published before the transaction and removed again if the transaction
    fails and no row uses it.
    """
    from ..artifacts import file_listing_digest

    digest = file_listing_digest(staged.folder)
    existed = registry.artifacts.path_for(digest).exists()
    registry.artifacts.put(staged.folder)

    def unit(session: Session) -> tuple[E.Entity, bool]:
        if session.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(f"{repo_id}@{sha}".encode()).digest()[:8], "big")
            session.execute(_advisory_lock(), {"key": key - (1 << 63)})
        done = _already_pulled(registry, repo_id, sha)
        if done is not None:
            return done, True
        entity = _register(registry, staged)
        link = registry.record_hub_link(
            entity, repo_id=repo_id, commit_sha=sha, revision=rev, direction="pull"
        )
        registry.add_edge("hub", link.id, entity.kind, entity.id, "pulled_from_hub")
        return entity, False

    try:
        return registry.transaction(unit, is_conflict=_is_race)
    except BaseException:
        if not existed and digest not in registry.referenced_artifacts():
            with contextlib.suppress(OSError, RegistryError):
                registry.artifacts.remove(digest)
        raise


def _is_race(err: BaseException) -> bool:
    """A lost race to create the same row (task, base model, name): the retry re-reads it."""
    from sqlalchemy import exc

    text_ = str(err.orig).lower() if isinstance(err, exc.IntegrityError) else ""
    return "unique" in text_ or "duplicate key" in text_


def _advisory_lock() -> Any:
    from sqlalchemy import text

    return text("SELECT pg_advisory_xact_lock(:key)")


def _register(registry: Registry, staged: _Staged) -> E.Entity:
    if staged.members:
        base_id = staged.members[0].base_model_id
        base_row = registry.get_base_model(base_id)
        if base_row.revision != staged.base["revision"]:
            raise InvalidInput(
                f"The fusion's members here are on base revision {base_row.revision[:12]}, the "
                f"fusion on {str(staged.base['revision'])[:12]}."
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
            member_ids=[m.id for m in staged.members],
            config=staged.config,
            head=staged.head,
            artifact_dir=staged.folder,
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
