"""A hostile or broken Hub server: every answer it gives is checked before it is used.

The server is the real test Hub in tests/hubserver.py on 127.0.0.1, told to lie (``tamper``)
or to stall (``stall``). Each test names the finding of issue #16 it pins.
"""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry import hub
from registry.artifacts import tree_digest
from registry.cli import cli
from registry.errors import HubError, InvalidInput, RegistryError
from registry.store import Registry
from tests.hubserver import HubServer
from tests.test_hub import _adapterhub_repo, _write_data, know_base, snapshot

REPO = "test-user/books"


@pytest.fixture(scope="module")
def books_home(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> Path:
    """A registry with one trained adapter, books@1."""
    from registry.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("hostile-source")
    with Registry.init(root / "home") as reg:
        train(reg, "books", _write_data(root / "books", 1), str(tiny_base_dir),
              config=TrainConfig(epochs=1, batch_size=16), progress=False)  # fmt: skip
    return root / "home"


@pytest.fixture
def pushed(hub_server: HubServer, books_home: Path, tmp_path: Path) -> dict[str, bytes]:
    """books@1 pushed to REPO; returns the repo's files."""
    home = tmp_path / "src-home"
    shutil.copytree(books_home, home)
    with Registry.open(home) as reg:
        hub.push(reg, "books@1", REPO)
    return hub_server.files_at(REPO, "main")


@pytest.fixture
def dst(tmp_path: Path, tiny_base_dir: Path) -> Iterator[Registry]:
    reg = Registry.init(tmp_path / "dst-home")
    know_base(reg, tiny_base_dir)  # pushes name a local base by its folder's name only
    yield reg
    reg.close()


def _json_answer(change: Any) -> Any:
    def rewrite(status: int, headers: dict[str, str], body: bytes) -> Any:
        if status != 200:
            return status, headers, body
        return status, headers, json.dumps(change(json.loads(body))).encode()

    return rewrite


def _refused(dst: Registry, error: type[Exception], match: str, spec: str, **kw: Any) -> Any:
    """Assert that pulling ``spec`` raises ``error`` and changes nothing; return the error."""
    before = snapshot(dst)
    with pytest.raises(error, match=match) as err:
        hub.pull(dst, spec, **kw)
    assert snapshot(dst) == before
    return err.value


def _republish(hub_server: HubServer, files: dict[str, bytes], meta: dict[str, Any]) -> None:
    """Commit ``files`` with ``meta`` as registry.json (listing made consistent again)."""
    hub_server.commit_files_direct(REPO, {**files, "registry.json": json.dumps(meta).encode()})


# ---------------------------------------------------------------------- finding 1: the sha
@pytest.mark.parametrize("sha", ["../../../../outside", "main", "A" * 40, 12345])
def test_a_sha_that_is_not_a_commit_id_is_refused(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry, sha: Any
) -> None:
    hub_server.tamper(
        "/api/models/test-user/books/revision/", _json_answer(lambda d: {**d, "sha": sha})
    )
    _refused(dst, HubError, "not a full 40-character commit id", REPO)
    assert not any("/resolve/" in r.path for r in hub_server.requests_log)


# ---------------------------------------------------------------------- finding 2: the ETag
def test_an_etag_with_dotdot_cannot_place_the_download(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry, tmp_path: Path
) -> None:
    target = tmp_path / "planted"
    climb = "../" * 40 + str(target).lstrip("/")

    def evil_etag(status: int, headers: dict[str, str], body: bytes) -> Any:
        headers = {**headers, "ETag": f'"{climb}"'}
        headers.pop("X-Linked-Etag", None)
        return status, headers, body

    hub_server.tamper("/resolve/", evil_etag)
    result = hub.pull(dst, REPO)
    assert not target.exists()
    assert not list(tmp_path.glob("planted*"))
    original = Registry.open(dst.settings.home)  # the bytes are the pushed ones, hashed here
    assert (
        result.entity.artifact_sha256 == json.loads(pushed["registry.json"])["artifact"]["sha256"]
    )
    original.close()


# ---------------------------------------------------------------------- finding 3: sizes
def test_downloads_are_capped_and_the_cap_can_be_raised(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    size = sum(len(v) for k, v in pushed.items() if k.endswith(".safetensors"))
    before = snapshot(dst)
    with pytest.raises(InvalidInput, match="past its limit of") as err:
        hub.pull(dst, REPO, max_bytes=size // 2)
    assert "--max-size" in (err.value.hint or "")
    assert snapshot(dst) == before
    assert not hub.pull(dst, REPO, max_bytes=4 * size).noop


def test_a_small_deflated_pickle_cannot_expand_past_the_cap(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    import torch

    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/bomb", with_head=False)
    plain = tmp_path / "big.bin"
    torch.save({"weight": torch.zeros(4_000_000)}, plain)  # 16 MB of zeros
    bomb = tmp_path / "bomb.bin"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
    assert bomb.stat().st_size < 100_000
    hub_server.commit_files_direct("ah/bomb", {**files, "pytorch_adapter.bin": bomb.read_bytes()})
    limit = r"\(expanded\) takes the pull past its limit"
    base = str(tiny_base_dir)
    _refused(dst, InvalidInput, limit, "ah/bomb", task="t", base=base, max_bytes=2_000_000)


def test_cli_pull_max_size_and_timeout_options(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    runner = CliRunner()
    home = str(dst.settings.home)
    result = runner.invoke(cli, ["--home", home, "pull", REPO, "--max-size", "10KB"])
    assert result.exit_code == 1 and "past its limit of 10,000 bytes" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["--home", home, "pull", REPO, "--max-size", "lots"])
    assert result.exit_code != 0 and "Not a size" in result.output
    result = runner.invoke(cli, ["--home", home, "pull", REPO, "--max-size", "2MiB", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ref"] == "books@1"


# ---------------------------------------------------------------------- finding 4: schemas
def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``path`` (dotted; ``*`` for every list item) set, or deleted."""
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    nodes = [doc]
    for key in parents:
        nodes = [n for node in nodes for n in (node if key == "*" else [node[key]])]
    for node in nodes:
        targets = node if last == "*" else [node]
        for target in targets:
            if value is _DELETE:
                target.pop(last, None)
            else:
                target[last] = value
    return doc


_DELETE = object()
REGISTRY_BREAKS: dict[str, tuple[str, Any]] = {
    "task is a list": ("task", ["books"]),
    "labels missing": ("task.label_names", _DELETE),
    "labels not strings": ("task.label_names", [1, 2]),
    "files is a string": ("artifact.files", "adapter.safetensors"),
    "file size is text": ("artifact.files.*.size", "big"),
    "metric value is text": ("metrics.*.value", "high"),
    "row count is text": ("datasets.*.row_count", "many"),
    "training run is a list": ("training_run", [1, 2]),
    "base revision is a number": ("base_model.revision", 7),
    "base model missing": ("base_model", _DELETE),
}


@pytest.mark.parametrize("case", sorted(REGISTRY_BREAKS))
def test_malformed_registry_json_is_a_clear_error(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry, case: str
) -> None:
    meta = _set(json.loads(pushed["registry.json"]), *REGISTRY_BREAKS[case])
    _republish(hub_server, pushed, meta)
    before = snapshot(dst)
    with pytest.raises(InvalidInput, match="registry.json of test-user/books") as err:
        hub.pull(dst, REPO)
    assert err.value.hint
    assert snapshot(dst) == before


def test_deeply_nested_json_is_a_clear_error(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    meta = json.loads(pushed["registry.json"])
    text = json.dumps(meta).replace(
        '"lineage": ', '"lineage": ' + "[" * 200_000 + "]" * 200_000 + ', "was": ', 1
    )
    hub_server.commit_files_direct(REPO, {**pushed, "registry.json": text.encode()})
    _refused(dst, InvalidInput, "nested", REPO)


def test_a_file_that_is_also_a_folder_is_refused(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    meta = json.loads(pushed["registry.json"])
    extra = {"a": b"one", "a/b": b"two"}
    import hashlib

    listing = meta["artifact"]["files"] + [
        {"path": k, "size": len(v), "sha256": hashlib.sha256(v).hexdigest()}
        for k, v in extra.items()
    ]
    listing.sort(key=lambda e: e["path"])
    meta["artifact"] = {**meta["artifact"], "files": listing, "sha256": tree_digest(listing)}
    hub_server.commit_files_direct(
        REPO, {**pushed, **extra, "registry.json": json.dumps(meta).encode()}
    )
    _refused(dst, InvalidInput, "lists both a and a/b", REPO)


ADAPTERHUB_BREAKS: dict[str, tuple[str, str, Any, str]] = {
    "config is text": ("adapter_config.json", "config", "seq_bn", "should be an object"),
    "config missing": ("adapter_config.json", "config", _DELETE, "config is missing"),
    "label ids are text": ("head_config.json", "config.label2id", {"a": "0", "b": "1"}, "label2id"),
    "label ids skip": ("head_config.json", "config.label2id", {"a": 0, "b": 5}, "0..n-1"),
}


@pytest.mark.parametrize("case", sorted(ADAPTERHUB_BREAKS))
def test_malformed_adapterhub_configs_are_clear_errors(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path, case: str
) -> None:
    name, path, value, message = ADAPTERHUB_BREAKS[case]
    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/broken", with_head=True)
    broken = json.dumps(_set(json.loads(files[name]), path, value)).encode()
    hub_server.commit_files_direct("ah/broken", {name: broken})
    _refused(dst, InvalidInput, message, "ah/broken")


# ---------------------------------------------------------------------- finding 5: loadable
def _adapterhub_with(
    hub_server: HubServer, tiny_base_dir: Path, tmp_path: Path, repo: str, change: Any
) -> None:
    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, repo, with_head=True)
    hub_server.commit_files_direct(repo, change(files))


def _set_config(files: dict[str, bytes], **config: Any) -> dict[str, bytes]:
    doc = json.loads(files["adapter_config.json"])
    doc["config"] = {**doc["config"], **config}
    return {"adapter_config.json": json.dumps(doc).encode()}


def _junk_weights(files: dict[str, bytes]) -> dict[str, bytes]:
    import torch
    from safetensors.torch import save

    return {
        "pytorch_adapter.bin": None,  # type: ignore[dict-item]
        "adapter.safetensors": save({"junk.weight": torch.ones(3, 3)}),
    }


UNLOADABLE: dict[str, tuple[Any, str]] = {
    "junk weights": (_junk_weights, "does not load on its base model"),
    "a LoRA config": (lambda f: _set_config(f, architecture="lora", r=8), "bottleneck adapters"),
    "reduction factor 0": (lambda f: _set_config(f, reduction_factor=0), "reduction_factor 0"),
}


@pytest.mark.parametrize("case", sorted(UNLOADABLE))
def test_an_adapter_that_cannot_load_is_not_registered(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path, case: str
) -> None:
    change, message = UNLOADABLE[case]
    _adapterhub_with(hub_server, tiny_base_dir, tmp_path, "ah/unloadable", change)
    _refused(dst, InvalidInput, message, "ah/unloadable")


def test_task_labels_that_contradict_the_head_are_refused(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    meta = json.loads(pushed["registry.json"])
    meta["task"]["label_names"] = list(reversed(meta["task"]["label_names"]))
    _republish(hub_server, pushed, meta)
    _refused(dst, InvalidInput, "has a head with labels", REPO)


def test_labels_with_control_characters_are_refused_and_never_printed_raw(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    meta = json.loads(pushed["registry.json"])
    meta["task"]["label_names"] = ["negative\r", "\x1b[2Jpositive"]
    _republish(hub_server, pushed, meta)
    before = snapshot(dst)
    result = CliRunner().invoke(cli, ["--home", str(dst.settings.home), "pull", REPO])
    assert result.exit_code == 1
    assert "cannot be shown safely" in result.output
    assert "\\x1b[2Jpositive" in result.output and "negative\\r" in result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert snapshot(dst) == before


def test_server_chosen_text_is_escaped_in_errors(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    """A pickle names a global with escape codes; the refusal shows them escaped."""
    import sys
    import types

    import torch

    module = "evil\x1b]0;owned\x07\x1b[2J"

    def payload() -> None:  # pragma: no cover - never called: weights_only refuses it
        raise AssertionError("unpickled")

    payload.__module__, payload.__qualname__ = module, "payload"
    fake = types.ModuleType(module)
    fake.payload = payload  # type: ignore[attr-defined]
    sys.modules[module] = fake
    try:

        class Payload:
            def __reduce__(self) -> tuple[Any, ...]:
                return (payload, ())

        evil = tmp_path / "evil.bin"
        torch.save({"weight": Payload()}, evil)
    finally:
        del sys.modules[module]
    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/evil", with_head=True)
    hub_server.commit_files_direct("ah/evil", {**files, "pytorch_adapter.bin": evil.read_bytes()})
    home = str(dst.settings.home)
    result = CliRunner().invoke(cli, ["--home", home, "pull", "ah/evil"])
    assert result.exit_code == 1 and "weights_only=True" in result.output
    assert "evil\\x1b]0;owned\\x07\\x1b[2J.payload" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    result = CliRunner().invoke(cli, ["--home", home, "pull", "ah/evil@v\x1b]0;owned\x07"])
    assert result.exit_code == 1 and "has no branch, tag or commit" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


# ---------------------------------------------------------------------- finding 6: timeouts
def test_a_stalled_server_times_out_while_resolving(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    hub_server.stall("/revision/", 60)
    with pytest.raises(HubError, match="Could not reach the Hub") as err:
        hub.pull(dst, REPO, timeout=0.5)
    assert "run the same command again" in (err.value.hint or "")
    result = CliRunner().invoke(
        cli, ["--home", str(dst.settings.home), "pull", REPO, "--timeout", "0.5"]
    )
    assert result.exit_code == 1 and "Could not reach the Hub" in result.output


def test_a_stalled_download_times_out(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    hub_server.stall("/resolve/", 60)
    _refused(dst, HubError, "Could not reach the Hub", REPO, timeout=0.5)


# ---------------------------------------------------------------------- finding 7: races
def test_concurrent_pulls_of_one_commit_register_one_version(
    hub_server: HubServer,
    pushed: dict[str, bytes],
    backend_url: str | None,
    tmp_path: Path,
    tiny_base_dir: Path,
) -> None:
    home = tmp_path / "race-home"
    with Registry.init(home, backend_url) as reg:
        know_base(reg, tiny_base_dir)
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def one() -> None:
        try:
            with Registry.open(home, backend_url) as reg:
                start.wait()
                results.append(hub.pull(reg, REPO))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.noop for r in results) == [False, True, True]
    assert len({r.entity.id for r in results}) == 1
    with Registry.open(home, backend_url) as reg:
        assert [e.ref for e in reg.list_entities(kind="adapter")] == ["books@1"]
        assert len(reg.hub_links(repo_id=REPO)) == 1
        assert reg.verify().ok


# ---------------------------------------------------------------------- pull is one transaction
def test_a_pull_that_fails_at_its_last_write_leaves_nothing(
    hub_server: HubServer, pushed: dict[str, bytes], dst: Registry
) -> None:
    from sqlalchemy import text

    with dst.db.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_links BEFORE INSERT ON hub_links "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        )
    _refused(dst, RegistryError, "injected failure", REPO)
    with dst.db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_links"))
    assert hub.pull(dst, REPO).entity.ref == "books@1"
