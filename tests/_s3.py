"""A real S3-compatible server on 127.0.0.1 for the artifact-store tests.

Debian's ``seaweedfs-bin`` is used when its ``weed`` binary is on PATH (it is not packaged for
Debian 12, this machine's release); otherwise moto's standalone server (``moto[server]``, a test
dependency) runs as a separate process, speaking the S3 protocol over HTTP like any other
endpoint. The server starts once per session; every test gets its own bucket.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "registry-test"
SECRET_KEY = "registry-test-secret"


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server: its endpoint, kind, and the client environment."""

    endpoint: str
    kind: str

    def env(self) -> dict[str, str]:
        """Return the environment an S3 client (s3fs, the CLI) needs to reach the server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as err:  # refused while starting; an HTTP error means it answers
            if getattr(err, "code", None):
                return
            time.sleep(0.2)
    raise RuntimeError(f"the S3 server did not come up: {log.read_text(errors='replace')[-2000:]}")


def _commands(port: int, workdir: Path) -> list[tuple[list[str], str]]:
    """The servers that can run here, preferred first."""
    found = []
    weed = shutil.which("weed")
    if weed:
        config = workdir / "s3.json"
        identity = {
            "name": "test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        data = workdir / "weed"
        data.mkdir(exist_ok=True)
        cmd = [weed, "server", "-ip=127.0.0.1", f"-dir={data}", "-s3", f"-s3.port={port}"]
        cmd += [f"-s3.config={config}", f"-master.port={_free_port()}"]
        cmd += [f"-volume.port={_free_port()}", f"-filer.port={_free_port()}"]
        found.append((cmd, "seaweedfs"))
    if importlib.util.find_spec("moto") is not None and importlib.util.find_spec("flask"):
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        found.append((moto, "moto"))
    return found


def start_s3_server(workdir: Path) -> Iterator[S3Server]:
    """Start a server, yield it, and stop it; skip with the reason when none can start."""
    port = _free_port()
    candidates = _commands(port, workdir)
    if not candidates:
        if os.environ.get("CI"):  # the team set-up (tests/test_team.py) must run in CI
            pytest.fail(
                "CI is set but no S3-compatible server can start: install moto[server] (a dev "
                "dependency) or Debian's seaweedfs-bin."
            )
        pytest.skip(
            "No S3-compatible server: neither SeaweedFS (`weed`, Debian's seaweedfs-bin) nor "
            "moto's standalone server (pip install 'moto[server]') is installed."
        )
    failures = []
    for cmd, kind in candidates:
        log = workdir / f"{kind}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                _wait_up(f"http://127.0.0.1:{port}/", proc, log)
            except RuntimeError as err:  # the next candidate, if any
                failures.append(f"{kind}: {err}")
                continue
            yield S3Server(f"http://127.0.0.1:{port}", kind)
            return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise RuntimeError("No S3-compatible server started: " + "; ".join(failures))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server for the session."""
    yield from start_s3_server(tmp_path_factory.mktemp("s3"))


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Yield ``s3://<fresh bucket>/artifacts``, with the client environment set for it."""
    import s3fs

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"registry-{uuid.uuid4().hex[:16]}"
    fs = s3fs.S3FileSystem(
        key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=s3_server.endpoint, skip_instance_cache=True
    )
    fs.mkdir(bucket)
    yield f"s3://{bucket}/artifacts"
    with contextlib.suppress(OSError):
        fs.rm(bucket, recursive=True)
