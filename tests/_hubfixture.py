"""pytest fixtures that point the ``huggingface_hub`` client at the test server in hubserver.py.

huggingface_hub 0.36 reads ``HF_ENDPOINT`` (and ``HF_HUB_DISABLE_XET``, ``HF_HUB_OFFLINE``,
``HF_HOME``, ...) once, when ``huggingface_hub.constants`` is first imported, and
``CommitInfo`` parses the commit URL the server returns against that import-time endpoint:
every ``upload_file`` / ``upload_folder`` / ``create_commit`` raises ``ValueError`` ("Unable to
retrieve user and repo ID from the passed HF ID") when the endpoint was read before the server
existed, even with ``HfApi(endpoint=...)``. Reads (``hf_hub_download(endpoint=...)``,
``snapshot_download(endpoint=...)``, ``HfApi(endpoint=...).model_info``) do honour ``endpoint=``.

So this module starts ONE server when it is imported and exports its URL to the environment
right away. Import it from ``tests/conftest.py`` before anything imports huggingface_hub
(transformers, adapters, datasets and registry modules all do)::

    # tests/conftest.py -- near the top, before imports that pull in huggingface_hub
    from tests._hubfixture import hub_server_fixture, hub_server_session_fixture  # noqa: F401

(The functions carry ``name=`` so that test parameters called ``hub_server`` do not trip
ruff's F811.)
If huggingface_hub was imported first anyway, its import-time constants are patched in place
(``ensure_client_points_at``): once at import of this module and again, undone afterwards, by
``hub_server`` for each test, because conftest.py's autouse fixture sets ``HF_HUB_OFFLINE=1`` and
a module that first imports huggingface_hub during such a test freezes that value.

Fixtures:

* ``hub_server_session`` -- the running :class:`HubServer`, state shared across tests.
* ``hub_server`` -- the same server, emptied before and after each test (repos, token, faults,
  request log), with the client constants patched as above, ``HF_HUB_OFFLINE=0``, a fresh
  ``HF_HOME`` / hub cache / token path under ``tmp_path`` and no ``HF_TOKEN`` in the environment.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # imported as tests._hubfixture
    from .hubserver import HubServer
except ImportError:  # imported as _hubfixture, with tests/ on sys.path (pytest's default)
    from hubserver import HubServer  # type: ignore[no-redef]

__all__ = ["HUB", "ensure_client_points_at", "hub_server_fixture", "hub_server_session_fixture"]

HUB = HubServer().start()
atexit.register(HUB.stop)

# Exported for the whole session, since the client reads them when it is first imported. They
# only matter to code that talks to a Hub, which no test may do over the network anyway.
IMPORT_ENV = {
    "HF_ENDPOINT": HUB.url,
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
# Set per test by ``hub_server`` (conftest.py's autouse fixture sets HF_HUB_OFFLINE=1).
TEST_ENV = {**IMPORT_ENV, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
os.environ.update(IMPORT_ENV)


def _client_constants(url: str, *, per_test: bool) -> dict[str, object]:
    values: dict[str, object] = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    if per_test:
        values.update(HF_HUB_OFFLINE=False, HF_HUB_DISABLE_PROGRESS_BARS=True)
    return values


def ensure_client_points_at(url: str, monkeypatch: pytest.MonkeyPatch | None = None) -> bool:
    """Patch an already imported huggingface_hub to use ``url``; returns whether it patched.

    Covers the import-time values that 0.36 keeps: ``constants.ENDPOINT`` (which ``CommitInfo``
    reads when it parses a commit URL), the resolve URL template (also copied into
    ``file_download``), and the Xet / telemetry switches; with ``monkeypatch`` (undone after the
    test) also offline mode and progress bars.
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return False
    values = _client_constants(url, per_test=monkeypatch is not None)
    targets: list[tuple[object, str, object]] = [(constants, k, v) for k, v in values.items()]
    file_download = sys.modules.get("huggingface_hub.file_download")
    if file_download is not None:
        template = values["HUGGINGFACE_CO_URL_TEMPLATE"]
        targets.append((file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template))
    hf_tqdm = sys.modules.get("huggingface_hub.utils.tqdm")
    if hf_tqdm is not None and monkeypatch is not None:
        targets.append((hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True))
    for module, name, value in targets:
        if monkeypatch is not None:
            monkeypatch.setattr(module, name, value)
        else:
            setattr(module, name, value)
    return True


def _set_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the client's cache and token paths at ``home`` (env, and constants if imported)."""
    values = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }
    constants = sys.modules.get("huggingface_hub.constants")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
        if constants is not None:
            monkeypatch.setattr(constants, name, value)
    if constants is not None:
        monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", values["HF_HUB_CACHE"])


ensure_client_points_at(HUB.url)


@pytest.fixture(scope="session", name="hub_server_session")
def hub_server_session_fixture() -> Iterator[HubServer]:
    """The session's Hub look-alike; repos persist between the tests that use this fixture."""
    ensure_client_points_at(HUB.url)
    yield HUB


@pytest.fixture(name="hub_server")
def hub_server_fixture(
    hub_server_session: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[HubServer]:
    """An empty Hub look-alike for one test, with a fresh HF_HOME and no ambient token."""
    server = hub_server_session
    server.reset()
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    # Per test, because a test that imported huggingface_hub under other settings (e.g. the
    # autouse HF_HUB_OFFLINE=1 in conftest.py) leaves its import-time constants behind.
    ensure_client_points_at(server.url, monkeypatch)
    _set_home(tmp_path / "hf-home", monkeypatch)
    yield server
    server.reset()
