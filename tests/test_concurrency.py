"""Team scale: many processes register versions into ONE registry at the same time.

Eight real processes (not threads) each register 50 adapter versions of a few shared names into
one SQLite file or one PostgreSQL database. Every process starts on the same not-yet-existing
adapter name, so they race to create its ``adapters`` row as well as to allocate version numbers.
The store must queue or retry every conflict: no caller sees an error, and each name's versions are
exactly 1..n.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from registry.store import Registry

WORKERS = 8
PER_WORKER = 50
NAMES = ("shared-a", "shared-b", "shared-c", "shared-d", "shared-e")

# Each worker waits for the go-file so that all of them hit the database at once (imports take
# about half a second and would otherwise spread the start).
WORKER = r"""
import json, os, sys, time, traceback
from pathlib import Path

args = json.loads(sys.argv[1])
from registry.store import Registry

home, db, wid, n, names = args["home"], args["db"], args["wid"], args["n"], args["names"]
scratch = Path(args["scratch"])
go = Path(args["go"])
errors = []
done = []
reg = Registry.open(home, db)
try:
    # These race too (every worker creates the same base model and task rows).
    base = reg.ensure_base_model("tiny-bert", "r" * 40, "bert", 32, 2)
    reg.ensure_task("sentiment", "single", ["negative", "positive"], ["text"], base.id)
    Path(args["ready"]).touch()
    while not go.exists():
        time.sleep(0.001)
    for j in range(n):
        # Every worker moves to a new, not yet existing name every `n // len(names)` versions,
        # so the creation of each adapter row is raced by all of them at about the same time.
        name = names[j * len(names) // n]
        folder = scratch / f"w{wid}-{j}"
        folder.mkdir(parents=True)
        payload = f"worker {wid} version {j} ".encode() + os.urandom(64)
        (folder / "weights.bin").write_bytes(payload)
        (folder / "config.json").write_text(json.dumps({"worker": wid, "j": j}))
        try:
            v = reg.register_adapter_version(
                name=name,
                task="sentiment",
                base_model_id=base.id,
                method="seq_bn",
                config={"worker": wid, "j": j},
                artifact_dir=folder,
                trainable_params=1,
                training_run={"seed": j},
            )
            done.append([v.name, v.version, v.artifact_sha256])
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
finally:
    reg.close()
print(json.dumps({"done": done, "errors": errors}))
"""


def _run_workers(home: Path, db: str | None, scratch: Path) -> list[dict[str, list]]:
    go = scratch / "go"
    procs = []
    for wid in range(WORKERS):
        args = {
            "home": str(home),
            "db": db,
            "wid": wid,
            "n": PER_WORKER,
            "names": list(NAMES),
            "scratch": str(scratch / f"w{wid}"),
            "go": str(go),
            "ready": str(scratch / f"ready-{wid}"),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=os.environ.copy(),
            )
        )
    deadline = time.monotonic() + 120
    while not all((scratch / f"ready-{w}").exists() for w in range(WORKERS)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
def test_parallel_writers_get_gap_free_versions(backend_url: str | None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    Registry.init(home, backend_url).close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    results = _run_workers(home, backend_url, scratch)

    errors = [e for r in results for e in r["errors"]]
    assert errors == [], errors[0]
    done = [tuple(d) for r in results for d in r["done"]]
    assert len(done) == WORKERS * PER_WORKER
    with Registry.open(home, backend_url) as reg:
        versions = reg.list_entities(kind="adapter")
        assert len(versions) == WORKERS * PER_WORKER
        by_name: dict[str, list[int]] = defaultdict(list)
        for v in versions:
            by_name[v.name].append(v.version)
        assert set(by_name) == set(NAMES)
        for name, nums in by_name.items():
            assert sorted(nums) == list(range(1, len(nums) + 1)), name
        # What each caller was told matches what the registry holds.
        assert sorted(done) == sorted((v.name, v.version, v.artifact_sha256) for v in versions)
        assert len({v.artifact_sha256 for v in versions}) == WORKERS * PER_WORKER
        assert len(reg.list_tasks()) == 1
        report = reg.verify()
        assert report.ok, report.problems
        assert report.orphans == []
        assert report.artifacts_checked == WORKERS * PER_WORKER
