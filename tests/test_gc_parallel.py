"""Two ``gc`` at once: two processes on one home (#16 finding 17's "two gc at once").

Each round publishes orphans (artifacts no row points at) beside registered versions and starts
two ``adapter-registry gc --grace 0 --json`` processes together. Both must exit 0 with JSON (no
traceback), each orphan must be removed (by one of them), nothing a row points at may be
removed or changed, and ``verify`` must find no problem afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.store import Registry
from tests._util import add_version, make_artifact, seed_task

ROUNDS = 3
ORPHANS = 12


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_two_gc_at_once_remove_each_orphan_and_nothing_referenced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = Registry.init(home)
    seed_task(reg)
    kept = [add_version(reg, tmp_path, f"v{i}", os.urandom(4096)) for i in range(6)]
    kept_files = {v.artifact_sha256: _hashes(reg.artifact_path(v)) for v in kept}
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home)}
    command = [sys.executable, "-m", "registry", "gc", "--grace", "0", "--json"]
    for round_ in range(ROUNDS):
        orphans = {
            reg.artifacts.location(
                reg.artifacts.put(
                    make_artifact(tmp_path / f"o{round_}-{k}", os.urandom(2048 + k))
                ).sha256
            )
            for k in range(ORPHANS)
        }
        runs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=300) for run in runs]
        removed: list[str] = []
        for run, (out, err) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, err.decode()
            assert b"Traceback" not in err
            removed += json.loads(out)["removed"]
        assert sorted(removed) == sorted(orphans)  # each orphan once, nothing else
    reg = Registry.open(home)
    report = reg.verify()
    assert report.problems == [] and report.orphans == []
    for v in kept:
        assert _hashes(reg.artifact_path(v)) == kept_files[v.artifact_sha256]
