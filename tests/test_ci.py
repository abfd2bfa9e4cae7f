"""``.ci/run`` under CI: an unreachable PostgreSQL fails the run instead of skipping its tests."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_run_fails_when_postgresql_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = {
        **os.environ,
        "CI": "1",
        "ADAPTER_REGISTRY_TEST_PG": f"postgresql+psycopg2://ci:hunter2@127.0.0.1:{port}/x",
    }
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert f"CI is set and PostgreSQL is NOT reachable at 127.0.0.1:{port}" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert "ci:***@" in done.stderr
