"""Names, constants, results and error translation shared by push and pull."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import entities as E
from .. import layout
from ..errors import HubError, InvalidInput, RegistryError

FORMAT = "adapter-registry/1"
REGISTRY_FILE = "registry.json"
CARD_FILE = "README.md"
# The artifact format (file names, pickle suffixes): registry.layout is its one home.
ADAPTER_CONFIG = layout.ADAPTER_CONFIG
ADAPTER_WEIGHTS = layout.ADAPTER_WEIGHTS
HEAD_CONFIG = layout.HEAD_CONFIG
HEAD_WEIGHTS = layout.HEAD_WEIGHTS
FUSION_CONFIG = layout.FUSION_CONFIG
FUSION_WEIGHTS = layout.FUSION_WEIGHTS
FUSION_MANIFEST = layout.FUSION_MANIFEST
PICKLE_TO_SAFETENSORS = layout.PICKLE_TO_SAFETENSORS
_PICKLE_SUFFIXES = layout.PICKLE_SUFFIXES
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HUB_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_AUTH_HINT = "Check HF_TOKEN / huggingface-cli login (a push needs a token with write access)."
#: Control characters (C0, DEL, C1) and the Unicode marks that reorder or hide text on a terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Return ``text`` with control characters escaped (``\\n``, ``\\x1b``), safe to print.

    Everything a Hub server chose (names, labels, messages, revisions) goes through this before
    it reaches a terminal or an error message.
    """

    def escape(match: re.Match[str]) -> str:
        return match.group().encode("unicode_escape").decode("ascii")

    return _UNPRINTABLE.sub(escape, str(text))


def printable_list(items: list[str]) -> str:
    """Return ``['a', 'b']`` for a list of server-chosen strings, control characters escaped."""
    return "[" + ", ".join(f"'{printable(x)}'" for x in items) + "]"


def has_unprintable(text: str) -> bool:
    """Return True when ``text`` holds a character :func:`printable` would escape."""
    return _UNPRINTABLE.search(text) is not None


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did: the commit the entity now sits at, or that nothing changed."""

    entity: E.Entity
    repo_id: str
    branch: str
    commit_sha: str
    noop: bool
    files: list[str]
    #: A fusion's members that are not on the Hub (its card cannot link them; pull cannot
    #: fetch them with it).
    members_not_on_hub: tuple[str, ...] = ()

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
            "members_not_on_hub": list(self.members_not_on_hub),
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
    members: tuple[str, ...] = ()  # refs of a fusion's members pulled with it

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
            "members_pulled": list(self.members),
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
    return printable(_scrub(text[0])) if text else type(err).__name__


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


def _refs_text(api: Any, repo_id: str, timeout: float) -> str:
    """`` Branches: ... Tags: ...`` of a repo for a hint (best effort, empty on any failure)."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]
        build_hf_headers,
        get_session,
    )

    url = f"{api.endpoint.rstrip('/')}/api/models/{repo_id}/refs"
    try:
        response = get_session().get(
            url, headers=build_hf_headers(token=api.token), timeout=timeout
        )
        response.raise_for_status()
        refs = response.json()
        branches = ", ".join(printable(b["name"]) for b in refs["branches"]) or "none"
        tags = ", ".join(printable(t["name"]) for t in refs["tags"]) or "none"
    except Exception:  # the hint is best effort; the original error is what matters
        return ""
    return f" Branches: {branches}. Tags: {tags}."
