"""The team set-up of the README, end to end: one PostgreSQL registry, one S3 artifact store
(the local S3-compatible server of tests/_s3.py), two homes on one machine as two users'.

User A trains a tiny model; user B, with their own home (and so their own cache), lists, shows,
predicts with and verifies A's version, and B's ``gc`` removes B's own orphan but nothing that
A's rows reference. Every step is the real CLI in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._s3 import S3Server
from tests._util import make_artifact, sentiment_data
from tests.conftest import PG_ENV, fresh_pg_database


@pytest.fixture
def team_db() -> Iterator[str]:
    admin = os.environ.get(PG_ENV)
    if not admin:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {PG_ENV} is not: the team set-up must run in CI.")
        pytest.skip(f"{PG_ENV} is not set (make test sets it when PostgreSQL is running)")
    yield from fresh_pg_database(admin)


def cli(home: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "registry", *args],
        env={**os.environ, **env, "ADAPTER_REGISTRY_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    # stdout only (JSON) when it worked; stderr carries warnings from the libraries
    return proc.returncode, proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_two_homes_share_one_postgres_registry_and_one_s3_store(
    team_db: str, s3_server: S3Server, s3_url: str, tiny_base_dir: Path, tmp_path: Path
) -> None:
    env = {**s3_server.env(), "ADAPTER_REGISTRY_DB": team_db, "ADAPTER_REGISTRY_ARTIFACTS": s3_url}
    env["PYTHONPATH"] = str(Path.cwd())
    home_a, home_b = tmp_path / "alice", tmp_path / "bob"
    data = str(sentiment_data(tmp_path / "data"))

    code, out = cli(home_a, env, "init")
    assert code == 0 and f"artifacts {s3_url}" in out, out
    code, out = cli(
        home_a,
        env,
        *("train", "sentiment", "--data", data, "--base", str(tiny_base_dir)),
        *("--epochs", "1", "--batch-size", "16", "--no-progress", "--json"),
    )
    assert code == 0, out
    trained = json.loads(out)
    assert trained["ref"] == "sentiment@1"

    code, out = cli(home_b, env, "init")
    assert code == 0, out
    code, out = cli(home_b, env, "list", "--json")
    assert code == 0, out
    assert [r["ref"] for r in json.loads(out)] == ["sentiment@1"]
    code, out = cli(home_b, env, "show", "sentiment@1", "--json")
    assert code == 0, out
    shown = json.loads(out)
    sha = shown["artifact_sha256"]
    assert shown["artifact_path"] == f"{s3_url}/{sha[:2]}/{sha}"
    code, out = cli(home_b, env, "predict", "sentiment", "--text", "a good movie", "--json")
    assert code == 0, out
    assert json.loads(out)["label"] in ("negative", "positive")
    assert (home_b / "cache" / "artifacts" / sha[:2] / sha).is_dir()  # read through B's cache
    code, out = cli(home_b, env, "verify", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] and report["problems"] == [] and report["orphans"] == []

    # C forgot ADAPTER_REGISTRY_ARTIFACTS: told which store the registry uses, nothing written
    env_c = {k: v for k, v in env.items() if k != "ADAPTER_REGISTRY_ARTIFACTS"}
    for args in (["list"], ["predict", "sentiment", "--text", "a good movie"]):
        code, out = cli(tmp_path / "carol", env_c, *args)
        store = s3_url.rstrip("/")
        assert code == 1 and f"This registry's artifacts are in {store}" in out, out
        assert f"Hint: export ADAPTER_REGISTRY_ARTIFACTS={store}" in out, out

    # B leaves an orphan in the shared store; B's gc removes it and nothing of A's
    from registry.artifact_store import RemoteArtifactStore

    orphan = RemoteArtifactStore(s3_url, tmp_path / "scratch").put(
        make_artifact(tmp_path / "orphan", b"nobody")
    )
    code, out = cli(home_b, env, "gc", "--grace", "0", "--json")
    assert code == 0, out
    assert json.loads(out)["removed"] == [f"{s3_url}/{orphan.sha256[:2]}/{orphan.sha256}"]
    for home in (home_a, home_b):
        code, out = cli(home, env, "verify", "--json")
        assert code == 0 and json.loads(out)["ok"], out
    code, out = cli(home_a, env, "predict", "sentiment", "--text", "a bad movie", "--json")
    assert code == 0, out
