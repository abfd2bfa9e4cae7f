"""Push to and pull from the Hugging Face Hub, pinned by commit: the only module that imports
``huggingface_hub``.

A pushed repository holds, at its root, exactly the files the ``adapters`` library reads (the
artifact folder as :mod:`registry.backbone` saved it: ``adapter_config.json``,
``adapter.safetensors``, ``head_config.json``, ``model_head.safetensors``; for a fusion its fusion
config and weights, head and any other files of its artifact), plus:

* ``registry.json``: what the registry knows (entity, task and labels, base model and revision,
  artifact file listing with sha256, metrics, dataset fingerprints, training run, lineage graph,
  and for a fusion its members with the Hub commits they were pushed to);
* ``README.md``: a model card with YAML front matter (``library_name: adapters``).

The artifact's ``.artifact.json`` integrity manifest is *not* uploaded: it is the local store's
bookkeeping, and ``registry.json`` carries the same listing, which :func:`pull` checks every
downloaded byte against (and which reproduces the same artifact id in the pulling registry).

:func:`pull` resolves a branch, tag or sha to a commit sha first and downloads at that sha only,
so a moving branch cannot change what is registered. It checks the repo's file list before it
downloads anything (no ``..``, no absolute paths), accepts safetensors, and turns a pickle
``.bin`` (AdapterHub's default) into safetensors only after ``torch.load(weights_only=True)``.
All network work and checks happen before the first database write, so a failure leaves the
registry as it was. A pulled version is linked to a ``hub`` lineage node (its ``hub_links`` row)
by a ``pulled_from_hub`` edge; the lineage graph it had in the pushing registry is kept in its
training run's ``hyperparams["hub_origin"]["lineage"]`` (those nodes do not exist here), and its
metrics are re-recorded, pointing at re-recorded dataset snapshots (same fingerprints).

The endpoint and token are found the usual ``huggingface_hub`` way (``HF_ENDPOINT``, ``HF_TOKEN``
or ``huggingface-cli login``); nothing here sets global state, stores or prints the token.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from . import entities as E
from .artifacts import MANIFEST, file_sha256, tree_digest
from .errors import HubError, IntegrityError, InvalidInput, NotFound, RegistryError
from .store import EdgeIn, MetricIn, validate_name

if TYPE_CHECKING:
    from .store import Registry

FORMAT = "adapter-registry/1"
REGISTRY_FILE = "registry.json"
CARD_FILE = "README.md"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "model_head.safetensors"
FUSION_CONFIG = "adapter_fusion_config.json"
FUSION_WEIGHTS = "model_adapter_fusion.safetensors"
FUSION_MANIFEST = "fusion_manifest.json"  # written by registry.composer
#: AdapterHub's pickle weight files and the safetensors names they are converted to.
PICKLE_TO_SAFETENSORS = {
    "pytorch_adapter.bin": ADAPTER_WEIGHTS,
    "pytorch_model_head.bin": HEAD_WEIGHTS,
    "pytorch_model_adapter_fusion.bin": FUSION_WEIGHTS,
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HUB_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_AUTH_HINT = "Check HF_TOKEN / huggingface-cli login (a push needs a token with write access)."


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did: the commit the entity now sits at, or that nothing changed."""

    entity: E.Entity
    repo_id: str
    branch: str
    commit_sha: str
    noop: bool
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "ref": self.entity.ref,
            "kind": self.entity.kind,
            "id": self.entity.uid,
            "repo_id": self.repo_id,
            "branch": self.branch,
            "commit_sha": self.commit_sha,
            "noop": self.noop,
            "files": self.files,
        }


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` registered (or found already registered) from one Hub commit."""

    entity: E.Entity
    repo_id: str
    revision: str
    commit_sha: str
    noop: bool
    source: str  # "adapter-registry" (a registry.json) or "adapterhub" (adapters' files only)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "ref": self.entity.ref,
            "kind": self.entity.kind,
            "id": self.entity.uid,
            "task": self.entity.task,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit_sha": self.commit_sha,
            "noop": self.noop,
            "source": self.source,
        }


# ---------------------------------------------------------------------- names
def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is ``OWNER/NAME``, else raise InvalidInput."""
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InvalidInput(
            f"Invalid Hub repository {repo_id!r}: expected OWNER/NAME "
            "(letters, digits, '.', '_' or '-').",
            hint="e.g. --repo my-org/sentiment-books",
        )
    return repo_id


def parse_repo_spec(spec: str) -> tuple[str, str | None]:
    """Split ``OWNER/NAME[@REVISION]`` into the repo id and the revision (None: main)."""
    repo_id, sep, revision = spec.strip().partition("@")
    validate_repo_id(repo_id)
    if sep and not revision:
        raise InvalidInput(
            f"Empty revision in {spec!r}.", hint=f"e.g. {repo_id}@main, {repo_id}@v1 or a sha"
        )
    return repo_id, revision or None


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _scrub(text: str) -> str:
    """Remove the token from text that may be shown (defence in depth; it should not be there)."""
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "***") if token else text


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return _scrub(text[0]) if text else type(err).__name__


# ---------------------------------------------------------------------- error translation
@contextlib.contextmanager
def _hub_errors(
    repo_id: str, action: str, endpoint: str | None, revision: str | None = None
) -> Iterator[None]:
    """Turn huggingface_hub / network failures into HubError with the next step to take."""
    import requests
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint(endpoint)
    try:
        yield
    except RegistryError:
        raise
    except LocalEntryNotFoundError as err:  # a download that could not reach the server
        raise HubError(
            f"Could not reach the Hub at {where} while {action}: {_first_line(err)}",
            hint="Check your network and HF_ENDPOINT, then run the same command again.",
        ) from err
    except RepositoryNotFoundError as err:
        raise HubError(
            f"Repository {repo_id} was not found at {where} "
            "(or it is private and the token in use cannot see it).",
            hint="Check the repo name (OWNER/NAME); for a private repo check HF_TOKEN / "
            "huggingface-cli login.",
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(
            f"Repository {repo_id} has no revision {revision!r}.",
            hint="Give a branch or tag that exists, or a full 40-character commit sha.",
        ) from err
    except EntryNotFoundError as err:
        raise HubError(
            f"A file is missing from {repo_id}"
            f"{f' at {revision}' if revision else ''}: {_first_line(err)}",
            hint="The repo changed while it was read, or is incomplete; check it on the Hub.",
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise HubError(
                f"The Hub at {where} refused the credentials (HTTP {status}) while {action}.",
                hint=_AUTH_HINT,
            ) from err
        raise HubError(
            f"The Hub at {where} answered HTTP {status} while {action}: {_first_line(err)}",
            hint="Run the same command again; if it keeps failing, check the Hub's status.",
        ) from err
    except OfflineModeIsEnabled as err:
        raise HubError(
            f"Cannot talk to the Hub while {action}: HF_HUB_OFFLINE is set.",
            hint="Unset HF_HUB_OFFLINE (or set it to 0) and run the command again.",
        ) from err
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as err:
        raise HubError(
            f"Could not reach the Hub at {where} while {action}.",
            hint="Check your network and HF_ENDPOINT, then run the same command again.",
        ) from err
    except RuntimeError as err:  # huggingface_hub wraps failed LFS uploads in RuntimeError
        raise HubError(
            f"The transfer was interrupted while {action}: {_first_line(err)}. "
            "Nothing was committed or recorded.",
            hint="Run the same command again.",
        ) from err


def _refs_text(api: Any, repo_id: str) -> str:
    try:
        refs = api.list_repo_refs(repo_id)
    except Exception:  # the hint is best effort; the original error is what matters
        return ""
    branches = ", ".join(b.name for b in refs.branches) or "none"
    tags = ", ".join(t.name for t in refs.tags) or "none"
    return f" Branches: {branches}. Tags: {tags}."


# ---------------------------------------------------------------------- metadata & model card
def build_metadata(registry: Registry, entity: E.Entity, folder: Path) -> dict[str, Any]:
    """Return the ``registry.json`` document for an entity whose verified artifact is ``folder``."""
    from . import __version__
    from .loader import module_name

    task = registry.get_task_by_id(entity.task_id)
    base = registry.get_base_model(entity.base_model_id)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    metrics = registry.metrics(entity)
    dataset_ids = sorted({m.dataset_id for m in metrics if m.dataset_id is not None})
    datasets = {i: registry.get_dataset(i) for i in dataset_ids}
    run = (
        registry.training_run(entity.training_run_id).to_dict()
        if entity.training_run_id is not None
        else None
    )
    if run is not None:
        run.pop("id", None)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "registry_version": __version__,
        "kind": entity.kind,
        "name": entity.name,
        "version": entity.version,
        "ref": entity.ref,
        "module_name": module_name(entity),
        "created_at": entity.to_dict()["created_at"],
        "trainable_params": entity.trainable_params,
        "task": {
            "name": task.name,
            "kind": task.kind,
            "label_names": task.label_names,
            "text_fields": task.text_fields,
        },
        "base_model": {
            "name": base.name,
            "revision": base.revision,
            "architecture": base.architecture,
            "hidden_size": base.hidden_size,
            "num_layers": base.num_layers,
        },
        "artifact": {
            "sha256": entity.artifact_sha256,
            "size": entity.artifact_size,
            "files": manifest["files"],
        },
        "metrics": [
            {
                "name": m.name,
                "value": m.value,
                "split": m.split,
                "step": m.step,
                "dataset_fingerprint": datasets[m.dataset_id].fingerprint
                if m.dataset_id is not None
                else None,
            }
            for m in metrics
        ],
        "datasets": [
            {
                "source": d.source,
                "split": d.split,
                "row_count": d.row_count,
                "fingerprint": d.fingerprint,
                "label_distribution": d.label_distribution,
            }
            for d in datasets.values()
        ],
        "training_run": run,
        "lineage": registry.lineage(entity),
    }
    if isinstance(entity, E.AdapterVersion):
        meta["method"] = entity.method
        meta["config"] = entity.config
        meta["config_hash"] = entity.config_hash
    else:
        meta["fusion"] = {"config": entity.config, "head": entity.head}
        members = []
        for mid in entity.member_ids:
            member = registry.get_adapter_version(mid)
            links = [
                {"repo_id": h.repo_id, "commit_sha": h.commit_sha, "revision": h.revision}
                for h in registry.hub_links(member)
                if h.artifact_sha256 == member.artifact_sha256
            ]
            members.append(
                {
                    "ref": member.ref,
                    "module_name": module_name(member),
                    "artifact_sha256": member.artifact_sha256,
                    "hub": links,
                }
            )
        meta["members"] = members
    return meta


def _yaml(value: Any) -> str:
    # JSON scalars are valid YAML and quote anything odd, so the front matter needs no yaml lib.
    return json.dumps(value, ensure_ascii=False)


def _is_hub_name(name: str) -> bool:
    return bool(_HUB_LIKE.match(name)) and not Path(name).expanduser().exists()


def model_card(meta: dict[str, Any], repo_id: str) -> str:
    """Return a README.md model card with YAML front matter for a ``registry.json`` document.

    ``base_model`` and ``datasets`` name Hub ids only (the Hub validates them); local paths are
    described in the body instead, by folder name and fingerprint.
    """
    task = meta["task"]
    base = meta["base_model"]
    is_fusion = meta["kind"] == "fusion"
    method = "adapter-fusion" if is_fusion else str(meta.get("method") or "adapter")
    tags = list(dict.fromkeys(["adapters", "adapter-registry", task["name"], method]))
    sources = list(dict.fromkeys(d["source"] for d in meta["datasets"]))
    hub_sources = [s for s in sources if _is_hub_name(s) and "/" in s]
    lines = ["---", "library_name: adapters", "tags:"]
    lines += [f"- {_yaml(t)}" for t in tags]
    if _is_hub_name(base["name"]):
        lines += [f"base_model: {_yaml(base['name'])}", "base_model_relation: adapter"]
    if hub_sources:
        lines += ["datasets:"] + [f"- {_yaml(s)}" for s in hub_sources]
    final = [
        m
        for m in meta["metrics"]
        if m["split"] in ("validation", "test")
        and m["step"] is None
        and isinstance(m["value"], int | float)
    ]
    if final:
        by_fp = {(d["fingerprint"], d["split"]): d for d in meta["datasets"]}
        lines += ["model-index:", f"- name: {_yaml(meta['ref'])}", "  results:"]
        groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        for m in final:
            groups.setdefault((m["split"], m["dataset_fingerprint"]), []).append(m)
        for (split, fp), ms in groups.items():
            ds = by_fp.get((fp, split))
            source = ds["source"] if ds else task["name"]
            ds_name = source if _is_hub_name(source) else Path(source).name or task["name"]
            lines += [
                "  - task:",
                "      type: text-classification",
                f"      name: {_yaml(task['name'])}",
                "    dataset:",
                f"      name: {_yaml(ds_name)}",
                f"      type: {_yaml(source if _is_hub_name(source) else task['name'])}",
                f"      split: {_yaml(split)}",
                "    metrics:",
            ]
            for m in ms:
                label = f"{split} {m['name']}"
                lines += [
                    f"    - type: {_yaml(m['name'])}",
                    f"      value: {_yaml(round(float(m['value']), 6))}",
                    f"      name: {_yaml(label)}",
                ]
    lines.append("---")
    what = "AdapterFusion layer" if is_fusion else f"`{method}` adapter"
    body = [
        "",
        f"# {meta['ref']}",
        "",
        f"A {what} with a classification head for the task **{task['name']}** "
        f"(labels: {', '.join(task['label_names'])}), trained with "
        "adapter-registry on a frozen "
        f"`{base['name'] if _is_hub_name(base['name']) else Path(base['name']).name}` "
        f"(revision `{base['revision'][:12]}`, {base['num_layers']} layers, "
        f"hidden size {base['hidden_size']}).",
        "",
        "## Usage",
        "",
    ]
    if is_fusion:
        members = ", ".join(f"`{m['ref']}`" for m in meta.get("members", []))
        body += [
            f"This fusion combines {members}; load those adapters (under the module names in "
            "`registry.json`) before the fusion. With adapter-registry, pull the members first:",
            "",
        ]
    else:
        body += [
            "```python",
            "from adapters import AutoAdapterModel",
            "",
            f"model = AutoAdapterModel.from_pretrained({base['name']!r})",
            f'name = model.load_adapter("{repo_id}", source="hf", use_safetensors=True)',
            "model.set_active_adapters(name)",
            "```",
            "",
            "With adapter-registry (pinned by commit):",
            "",
        ]
    body += ["```", f"adapter-registry pull {repo_id}@<commit>", "```", ""]
    body += ["## Data", ""]
    if meta["datasets"]:
        for d in meta["datasets"]:
            src = d["source"] if _is_hub_name(d["source"]) else Path(d["source"]).name
            body.append(
                f"- `{src}` ({d['split']}, {d['row_count']} rows, "
                f"fingerprint `{d['fingerprint'][:16]}`)"
            )
    else:
        body.append("- not recorded")
    body += [
        "",
        f"Artifact sha256 `{meta['artifact']['sha256']}`; lineage, metrics and the training "
        "run are in `registry.json`.",
        "",
    ]
    return "\n".join(lines + body)


# ---------------------------------------------------------------------- push
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


def _write_card(dest: Path, repo_id: str) -> None:
    meta = json.loads((dest / REGISTRY_FILE).read_text(encoding="utf-8"))
    (dest / CARD_FILE).write_text(model_card(meta, repo_id), encoding="utf-8")


def push(
    registry: Registry,
    ref: str,
    repo_id: str,
    *,
    private: bool = False,
    branch: str = "main",
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> PushResult:
    """Upload an adapter version or fusion to ``repo_id`` on ``branch`` and record the commit.

    Pushing an artifact that was already pushed to that repo and branch, whose head is still
    that commit, is a no-op. The repo is created when missing (``private`` applies then).

    Args:
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` / huggingface.co).
        token: default None lets huggingface_hub find ``HF_TOKEN`` or the login token.

    Raises:
        HubError: the Hub is unreachable, refused the token, or the upload failed
            (nothing is recorded then).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    validate_repo_id(repo_id)
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
    with tempfile.TemporaryDirectory(prefix="adapter-registry-push-") as tmp:
        staged = Path(tmp) / "repo"
        files = stage_push(registry, entity, staged)
        _write_card(staged, repo_id)
        files = sorted([*files, CARD_FILE])
        if pushed:
            head = None
            with _hub_errors(repo_id, f"reading {repo_id}@{branch}", endpoint, branch):
                try:
                    head = api.repo_info(repo_id, revision=branch).sha
                except (RepositoryNotFoundError, RevisionNotFoundError):
                    head = None  # deleted since: push again
            if head is not None and head == pushed[-1].commit_sha:
                return PushResult(entity, repo_id, branch, head, True, files)
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
        raise HubError(f"The Hub answered with an invalid commit id {commit!r}.")
    registry.record_hub_link(
        entity, repo_id=repo_id, commit_sha=commit, revision=branch, direction="push"
    )
    return PushResult(entity, repo_id, branch, commit, False, files)


# ---------------------------------------------------------------------- pull: checks
def _check_paths(repo_id: str, files: list[str]) -> None:
    bad = []
    for name in files:
        parts = PurePosixPath(name).parts
        if (
            not name
            or name.startswith(("/", "~"))
            or "\\" in name
            or re.match(r"^[A-Za-z]:", name)
            or ".." in parts
            or "\0" in name
        ):
            bad.append(name)
    if bad:
        raise InvalidInput(
            f"Repository {repo_id} has unsafe file names {bad[:5]} (absolute paths or '..'): "
            "refusing to download anything from it.",
            hint="Only pull repos you trust; ask the owner to rename those files.",
        )


def _check_safetensors(path: Path, label: str) -> int:
    """Open a safetensors file (header + every tensor); return its number of elements."""
    from safetensors import SafetensorError, safe_open

    try:
        total = 0
        with safe_open(str(path), framework="pt") as fh:  # type: ignore[no-untyped-call]
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += int(fh.get_tensor(key).numel())
        return total
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(
            f"{label} is not a valid safetensors file: {err}",
            hint="The repo is damaged or not an adapter; pull another revision.",
        ) from err


def _convert_pickle(src: Path, dst: Path, label: str) -> None:
    """Load a pickle weights file with ``weights_only=True`` and save it as safetensors."""
    import pickle

    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(str(src), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as err:
        raise InvalidInput(
            f"{label} is a pickle that does not load with torch.load(weights_only=True) "
            f"(it may run code when loaded): {str(err).splitlines()[0] if str(err) else err!r}",
            hint="Refused. Ask the publisher for safetensors weights, or pull a revision "
            "that has them.",
        ) from err
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidInput(
            f"{label} is not a plain mapping of tensor names to tensors.",
            hint="Refused. Ask the publisher for safetensors weights.",
        )
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(dst))


def _read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidInput(f"{label} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise InvalidInput(f"{label} is not a JSON object.")
    return data


def _head_labels(head_config: dict[str, Any]) -> list[str] | None:
    config = head_config.get("config") or {}
    label2id = config.get("label2id")
    if isinstance(label2id, dict) and label2id:
        return [str(k) for k, _ in sorted(label2id.items(), key=lambda kv: int(kv[1]))]
    id2label = config.get("id2label") or head_config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    return None


# ---------------------------------------------------------------------- pull
@dataclass
class _Staged:
    """A verified artifact folder and everything needed to register it."""

    folder: Path
    kind: str  # adapter | fusion
    source: str
    name: str
    task: str
    task_kind: str
    label_names: list[str]
    text_fields: list[str]
    base: dict[str, Any]
    method: str
    config: dict[str, Any]
    trainable_params: int
    training_run: dict[str, Any]
    metrics: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    members: list[E.AdapterVersion]
    head: dict[str, Any]


def pull(
    registry: Registry,
    spec: str,
    *,
    name: str | None = None,
    task: str | None = None,
    base: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
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

    Raises:
        HubError: unreachable Hub, bad token, missing repo or revision.
        InvalidInput: unsafe file names, pickle weights that fail ``weights_only=True``, or a
            task / base model that does not match.
        IntegrityError: downloaded bytes differ from registry.json's listing.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    repo_id, revision = parse_repo_spec(spec)
    if name is not None:
        validate_name(name, "name")
    if task is not None:
        validate_name(task, "task name")
    rev = revision or "main"
    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(repo_id, f"resolving {repo_id}@{rev}", endpoint, rev):
        try:
            info = api.repo_info(repo_id, revision=rev)
        except RevisionNotFoundError as err:
            raise HubError(
                f"Repository {repo_id} has no branch, tag or commit {rev!r}."
                + _refs_text(api, repo_id),
                hint=f"Pick one of them: adapter-registry pull {repo_id}@BRANCH_TAG_OR_SHA",
            ) from err
    sha = str(info.sha)
    for link in registry.hub_links(repo_id=repo_id):
        if link.direction == "pull" and link.commit_sha == sha:
            entity = registry.get_entity(link.entity_kind, link.entity_id)
            return PullResult(entity, repo_id, rev, sha, True, "already pulled")
    files = [s.rfilename for s in (info.siblings or [])]
    _check_paths(repo_id, files)

    with tempfile.TemporaryDirectory(prefix="adapter-registry-pull-") as tmp:
        cache = Path(tmp) / "cache"

        def fetch(filename: str) -> Path:
            from huggingface_hub import hf_hub_download

            with _hub_errors(repo_id, f"downloading {filename}", endpoint, sha):
                return Path(
                    hf_hub_download(
                        repo_id,
                        filename,
                        revision=sha,
                        cache_dir=str(cache),
                        endpoint=endpoint,
                        token=token,
                    )
                )

        art = Path(tmp) / "artifact"
        art.mkdir()
        if REGISTRY_FILE in files:
            meta = _read_json(fetch(REGISTRY_FILE), f"{REGISTRY_FILE} of {repo_id}")
            staged = _stage_registry_repo(registry, repo_id, files, meta, fetch, art, name, task)
        else:
            staged = _stage_adapterhub_repo(registry, repo_id, files, fetch, art, name, task, base)
        if base is not None and staged.source == "adapter-registry":
            _check_base_option(staged, base)
        origin = staged.training_run.setdefault("hyperparams", {}).setdefault("hub_origin", {})
        origin.update(repo_id=repo_id, revision=rev, commit_sha=sha)
        _precheck(registry, staged)
        entity = _register(registry, staged)
    link = registry.record_hub_link(
        entity, repo_id=repo_id, commit_sha=sha, revision=rev, direction="pull"
    )
    registry.add_edge("hub", link.id, entity.kind, entity.id, "pulled_from_hub")
    return PullResult(entity, repo_id, rev, sha, False, staged.source)


def _stage_registry_repo(
    registry: Registry,
    repo_id: str,
    files: list[str],
    meta: dict[str, Any],
    fetch: Any,
    art: Path,
    name: str | None,
    task: str | None,
) -> _Staged:
    label = f"{REGISTRY_FILE} of {repo_id}"
    if meta.get("format") != FORMAT or meta.get("kind") not in ("adapter", "fusion"):
        raise InvalidInput(
            f"{label} has format {meta.get('format')!r}, kind {meta.get('kind')!r}; this "
            f"version reads {FORMAT} adapters and fusions.",
            hint="Upgrade adapter-registry, or pull an older revision of the repo.",
        )
    try:
        listing = list(meta["artifact"]["files"])
        expected_sha = str(meta["artifact"]["sha256"])
        task_meta = meta["task"]
        base_meta = meta["base_model"]
    except (KeyError, TypeError) as err:
        raise InvalidInput(f"{label} lacks {err}.", hint="Pull another revision.") from err
    paths = [str(e["path"]) for e in listing]
    _check_paths(repo_id, paths)
    missing = [p for p in paths if p not in files]
    pickles = [p for p in paths if p.endswith(_PICKLE_SUFFIXES)]
    if missing or pickles or not paths:
        raise IntegrityError(
            f"{label} lists files that are missing from the repo ({missing}) or pickle "
            f"files ({pickles}).",
            hint="The repo is incomplete or was edited by hand; pull another revision.",
        )
    for entry in listing:
        rel = str(entry["path"])
        src = fetch(rel)
        if file_sha256(src) != entry["sha256"] or src.stat().st_size != int(entry["size"]):
            raise IntegrityError(
                f"{rel} in {repo_id} does not match the sha256 that {REGISTRY_FILE} records.",
                hint="The repo was edited by hand or damaged; pull another revision.",
            )
        dst = art / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        if rel.endswith(".safetensors"):
            _check_safetensors(dst, f"{rel} in {repo_id}")
    if tree_digest(listing) != expected_sha:
        raise IntegrityError(
            f"{label}'s file listing does not match its artifact sha256.",
            hint="The repo was edited by hand or damaged; pull another revision.",
        )
    kind = str(meta["kind"])
    run = dict(meta.get("training_run") or {})
    run.pop("created_at", None)
    run["hyperparams"] = dict(run.get("hyperparams") or {})
    run["hyperparams"]["hub_origin"] = {
        "source_ref": meta.get("ref"),
        "artifact_sha256": expected_sha,
        "lineage": meta.get("lineage"),
    }
    members: list[E.AdapterVersion] = []
    head: dict[str, Any] = {}
    config: dict[str, Any] = dict(meta.get("config") or {})
    if kind == "fusion":
        members = _local_members(registry, repo_id, meta)
        fusion = meta.get("fusion") or {}
        config = dict(fusion.get("config") or {})
        head = dict(fusion.get("head") or {})
        _rename_fusion_members(art, members)
    return _Staged(
        folder=art,
        kind=kind,
        source="adapter-registry",
        name=name or str(meta.get("name") or repo_id.split("/")[1]),
        task=task or str(task_meta["name"]),
        task_kind=str(task_meta.get("kind", "single")),
        label_names=[str(x) for x in task_meta["label_names"]],
        text_fields=[str(x) for x in task_meta.get("text_fields", ["text"])],
        base=dict(base_meta),
        method=str(meta.get("method") or ("fusion" if kind == "fusion" else "unknown")),
        config=config,
        trainable_params=int(meta.get("trainable_params") or 0),
        training_run=run,
        metrics=list(meta.get("metrics") or []),
        datasets=list(meta.get("datasets") or []),
        members=members,
        head=head,
    )


def _local_members(
    registry: Registry, repo_id: str, meta: dict[str, Any]
) -> list[E.AdapterVersion]:
    by_sha: dict[str, E.AdapterVersion] = {}
    for e in registry.list_entities(kind="adapter"):
        assert isinstance(e, E.AdapterVersion)
        by_sha.setdefault(e.artifact_sha256, e)
    found: list[E.AdapterVersion] = []
    missing: list[dict[str, Any]] = []
    for m in meta.get("members") or []:
        local = by_sha.get(str(m.get("artifact_sha256")))
        if local is None:
            missing.append(m)
        else:
            found.append(local)
    if missing:
        steps = []
        for m in missing:
            hub = (m.get("hub") or [])[-1:] or None
            if hub:
                steps.append(f"adapter-registry pull {hub[0]['repo_id']}@{hub[0]['commit_sha']}")
            else:
                steps.append(f"push {m.get('ref')} from the source registry, then pull it")
        raise NotFound(
            f"The fusion in {repo_id} needs member adapters this registry does not have: "
            + ", ".join(str(m.get("ref")) for m in missing)
            + ".",
            hint="Pull them first: " + "; ".join(steps),
        )
    if not found:
        raise InvalidInput(f"{REGISTRY_FILE} of {repo_id} lists no fusion members.")
    return found


def _rename_fusion_members(art: Path, members: list[E.AdapterVersion]) -> None:
    """Point a fusion's saved files at the module names its members get in this registry.

    Members load under ``name_vN`` (:func:`registry.loader.module_name`); when the pulled members
    got other names or versions here, the fusion layer's config and weight keys (and the module
    names in ``fusion_manifest.json``) are renamed, so the tensors stay byte-identical but the
    file bytes (and artifact id) differ.
    """
    from safetensors.torch import load_file, save_file

    from .loader import module_name

    config_path = art / FUSION_CONFIG
    if not config_path.is_file():
        return
    config = _read_json(config_path, FUSION_CONFIG)
    old = [str(n) for n in config.get("adapter_names", [])]
    new = [module_name(m) for m in members]
    if old == new:
        return
    if len(old) != len(new):
        raise InvalidInput(
            f"The fusion is over {len(old)} adapters, but {len(new)} members are recorded."
        )
    old_name, new_name = ",".join(old), ",".join(new)
    config["adapter_names"] = new
    config["name"] = new_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    weights_path = art / FUSION_WEIGHTS
    tensors = load_file(str(weights_path))
    marker = f"adapter_fusion_layer.{old_name}."
    renamed = {
        k.replace(marker, f"adapter_fusion_layer.{new_name}."): v for k, v in tensors.items()
    }
    save_file(renamed, str(weights_path))
    manifest_path = art / FUSION_MANIFEST
    if manifest_path.is_file():  # the composer's member listing: keep its module names true
        manifest = _read_json(manifest_path, FUSION_MANIFEST)
        for entry, module in zip(manifest.get("members") or [], new, strict=False):
            if isinstance(entry, dict):
                entry["module_name"] = module
        manifest_path.write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def _stage_adapterhub_repo(
    registry: Registry,
    repo_id: str,
    files: list[str],
    fetch: Any,
    art: Path,
    name: str | None,
    task: str | None,
    base: str | None,
) -> _Staged:
    from .backbone import resolve_base

    if ADAPTER_CONFIG not in files:
        what = "a fusion without registry.json" if FUSION_CONFIG in files else "not an adapter"
        raise InvalidInput(
            f"Repository {repo_id} is {what}: it has no {ADAPTER_CONFIG}"
            f"{' and no ' + REGISTRY_FILE if FUSION_CONFIG not in files else ''}.",
            hint="Pull a repo pushed by adapter-registry push or the adapters library "
            "(fusions need registry.json to name their members).",
        )
    adapter_config = _read_json(fetch(ADAPTER_CONFIG), f"{ADAPTER_CONFIG} of {repo_id}")
    shutil.copyfile(fetch(ADAPTER_CONFIG), art / ADAPTER_CONFIG)
    params = _fetch_weights(repo_id, files, fetch, art, ADAPTER_WEIGHTS, required=True)
    labels: list[str] | None = None
    if HEAD_CONFIG in files:
        head_config = _read_json(fetch(HEAD_CONFIG), f"{HEAD_CONFIG} of {repo_id}")
        shutil.copyfile(fetch(HEAD_CONFIG), art / HEAD_CONFIG)
        params += _fetch_weights(repo_id, files, fetch, art, HEAD_WEIGHTS, required=True)
        labels = _head_labels(head_config)
        if labels is None:
            raise InvalidInput(
                f"The head in {repo_id} has no label names (label2id).",
                hint="Only classification heads can be pulled.",
            )
    repo_name = repo_id.split("/")[1]
    task_name = task or _safe_name(repo_name)
    try:
        existing = registry.get_task(task_name)
    except NotFound:
        existing = None
    if labels is None:
        if existing is None:
            raise InvalidInput(
                f"The adapter in {repo_id} has no head, so its labels are unknown, and there is "
                f"no task {task_name!r} to take them from.",
                hint=f"Give an existing task: adapter-registry pull {repo_id} --task TASK",
            )
        labels = list(existing.label_names)
    base_name = base or str(adapter_config.get("model_name") or "")
    if not base_name:
        raise InvalidInput(
            f"{ADAPTER_CONFIG} of {repo_id} names no base model.",
            hint=f"Give one: adapter-registry pull {repo_id} --base MODEL",
        )
    try:
        info = resolve_base(base_name)
    except RegistryError as err:
        raise type(err)(
            f"Cannot resolve the base model {base_name!r} of {repo_id}: {err.message}",
            hint=f"Give a local folder or Hub id: adapter-registry pull {repo_id} --base MODEL",
        ) from err
    hidden = adapter_config.get("hidden_size")
    if isinstance(hidden, int) and hidden != info.hidden_size:
        raise InvalidInput(
            f"The adapter in {repo_id} is for hidden size {hidden}, but {base_name} has "
            f"{info.hidden_size}.",
            hint="Give the base model it was trained on with --base.",
        )
    config = dict(adapter_config.get("config") or {})
    return _Staged(
        folder=art,
        kind="adapter",
        source="adapterhub",
        name=name or _safe_name(repo_name),
        task=task_name,
        task_kind=existing.kind if existing else "single",
        label_names=labels,
        text_fields=list(existing.text_fields) if existing else ["text"],
        base={
            "name": info.name,
            "revision": info.revision,
            "architecture": info.architecture,
            "hidden_size": info.hidden_size,
            "num_layers": info.num_layers,
        },
        method=_method_of(config),
        config=config,
        trainable_params=params,
        training_run={
            "hyperparams": {"hub_origin": {"adapter_config": adapter_config}},
            "library_versions": {"adapters": str(adapter_config.get("version", "unknown"))},
        },
        metrics=[],
        datasets=[],
        members=[],
        head={},
    )


def _method_of(config: dict[str, Any]) -> str:
    """Name a bottleneck config the way the trainer does (seq_bn, double_seq_bn)."""
    arch = config.get("architecture")
    if arch not in (None, "bottleneck"):
        return str(arch)
    mh, out = bool(config.get("mh_adapter")), bool(config.get("output_adapter"))
    if mh and out:
        return "double_seq_bn"
    if out:
        return "seq_bn"
    return "bottleneck"


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip(".-_") or "pulled"
    return validate_name(cleaned[:128].replace("..", "."))


def _fetch_weights(
    repo_id: str, files: list[str], fetch: Any, art: Path, safe_name: str, *, required: bool
) -> int:
    """Download ``safe_name`` (or convert its pickle twin); return its number of parameters."""
    label = f"{safe_name} in {repo_id}"
    if safe_name in files:
        shutil.copyfile(fetch(safe_name), art / safe_name)
        return _check_safetensors(art / safe_name, label)
    pickle_name = next(p for p, s in PICKLE_TO_SAFETENSORS.items() if s == safe_name)
    if pickle_name in files:
        _convert_pickle(fetch(pickle_name), art / safe_name, f"{pickle_name} in {repo_id}")
        return _check_safetensors(art / safe_name, label)
    if required:
        raise InvalidInput(
            f"Repository {repo_id} has neither {safe_name} nor {pickle_name}.",
            hint="It is not a complete adapter; pull another revision.",
        )
    return 0


def _check_base_option(staged: _Staged, base: str) -> None:
    from .backbone import resolve_base

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
