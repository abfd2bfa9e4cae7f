"""The registry at scale: 10,000 adapter versions, 100,000 metric rows, a lineage chain of 100.

Times whole CLI processes (start-up included), as a user would see them: ``--help``, ``list``,
``show`` and ``lineage``; median of several runs each, interleaved. Usage::

    python -m benchmarks.registry_scale [--versions 10000] [--metrics 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine_record, median


def populate(home: Path, versions: int, metrics: int, depth: int) -> None:
    """Fill a registry through the store's own tables (bulk inserts, one artifact reused)."""
    from sqlalchemy import insert

    from registry.orm import SqlAdapter, SqlAdapterVersion, SqlLineage, SqlMetric, utcnow
    from registry.store import Registry

    reg = Registry.init(home)
    base = reg.ensure_base_model("bench-bert", "0" * 40, "bert", 384, 6)
    n_tasks = 20
    for t in range(n_tasks):
        reg.ensure_task(f"task{t}", "single", ["negative", "positive"], ["text"], base.id)
    src = Path(tempfile.mkdtemp()) / "art"
    src.mkdir()
    (src / "adapter.safetensors").write_bytes(os.urandom(4096))
    art = reg.artifacts.put(src)
    now = utcnow()
    names = max(1, versions // 10)
    with reg.db.engine.begin() as conn:
        conn.execute(
            insert(SqlAdapter),
            [
                {"id": i + 1, "name": f"adapter{i}", "task_id": i % n_tasks + 1, "created_at": now}
                for i in range(names)
            ],
        )
        conn.execute(
            insert(SqlAdapterVersion),
            [
                {
                    "id": v + 1,
                    "adapter_id": v % names + 1,
                    "version": v // names + 1,
                    "task_id": (v % names) % n_tasks + 1,
                    "base_model_id": base.id,
                    "method": "seq_bn",
                    "config": {"reduction_factor": 16},
                    "config_hash": "h",
                    "artifact_sha256": art.sha256,
                    "artifact_size": art.size,
                    "trainable_params": 261650,
                    "status": "active",
                    "created_at": now,
                }
                for v in range(versions)
            ],
        )
        conn.execute(
            insert(SqlMetric),
            [
                {
                    "entity_kind": "adapter",
                    "entity_id": m % versions + 1,
                    "split": "validation",
                    "name": ("accuracy", "macro_f1", "loss")[m % 3],
                    "value": 0.5,
                    "created_at": now,
                }
                for m in range(metrics)
            ],
        )
        # version ids 1 -> 2 -> ... -> depth+1: a warm-start chain of `depth` edges
        chain = list(range(1, min(depth + 1, versions - 1) + 1))
        conn.execute(
            insert(SqlLineage),
            [
                {
                    "parent_kind": "adapter",
                    "parent_id": a,
                    "child_kind": "adapter",
                    "child_id": b,
                    "relation": "warm_started_from",
                    "created_at": now,
                }
                for a, b in zip(chain, chain[1:], strict=False)
            ],
        )
    reg.close()


def time_cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Return the wall time and the CPU time (user + system) of one CLI process.

    On a shared machine the wall time follows the load; the CPU time much less so.
    """
    exe = Path(sys.executable).with_name("adapter-registry")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    """Build the big registry, time the commands, write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "registry_scale.md"))
    args = parser.parse_args()
    if args.quick:
        args.versions, args.metrics, args.runs = 1000, 10_000, 3
    # As an installed package: byte-compiled ahead, so that no CLI process below spends its
    # time compiling sources (PYTHONDONTWRITEBYTECODE=1 would otherwise make every one do so).
    import registry

    compileall.compile_dir(str(Path(registry.__file__).parent), quiet=1)
    home = Path(tempfile.mkdtemp(prefix="ar-scale-")) / "home"
    t0 = time.perf_counter()
    populate(home, args.versions, args.metrics, args.depth)
    build_s = time.perf_counter() - t0
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home)}
    names = max(1, args.versions // 10)
    last = min(args.depth + 1, args.versions - 1) - 1  # 0-based id of the chain's end
    deepest = f"adapter{last % names}@{last // names + 1}"
    commands = {
        "--help (start-up)": ["--help"],
        "list --json": ["list", "--json"],
        "list --limit 0 --json (every version)": ["list", "--limit", "0", "--json"],
        "list --task task3": ["list", "--task", "task3"],
        "show adapter7@3 --json": ["show", "adapter7@3", "--json"],
        f"lineage {deepest} (depth {args.depth})": ["lineage", deepest, "--format", "json"],
    }
    # Each read command twice: the default sqlite3 read path, and the full SQLAlchemy store
    # (ADAPTER_REGISTRY_FAST_READ=0), interleaved so both see the same machine load.
    full_env = {**env, "ADAPTER_REGISTRY_FAST_READ": "0"}
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in commands}
    full_times: dict[str, list[float]] = {k: [] for k in commands if "start-up" not in k}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    full_cpu: dict[str, list[float]] = {k: [] for k in full_times}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            wall, used = time_cli(cmd, env)
            times[name].append(wall)
            cpu[name].append(used)
            if name in full_times:
                wall, used = time_cli(cmd, full_env)
                full_times[name].append(wall)
                full_cpu[name].append(used)
    load_end = os.getloadavg()
    edges = json.loads(
        subprocess.run(
            [
                str(Path(sys.executable).with_name("adapter-registry")),
                "lineage",
                deepest,
                "--format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["edges"]
    import_probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from registry.cli import main; "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'adapters')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [
        "# Registry at scale",
        "",
        f"{args.versions:,} adapter versions ({names:,} names × {args.versions // names} "
        f"versions), {args.metrics:,} metric rows, a warm-start lineage chain of "
        f"{len(edges)} edges; SQLite (WAL). Built in {build_s:.1f}s. Wall time of whole CLI "
        f"processes (Python start-up included; the package byte-compiled ahead, as installed), "
        f"median of {args.runs} interleaved runs; CPU time (user + system of the process) is the "
        "minimum of those runs.",
        "",
        "| command | median ms | min ms | max ms | target | met | full store median ms "
        "| fast / full | CPU ms | full store CPU ms | fast / full (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, values in times.items():
        limit = 0.3 if "start-up" in name else 0.2
        full = full_times.get(name)
        fast_cpu = min(cpu[name])
        full_cells = (
            f"{median(full) * 1000:.0f} | {median(values) / median(full):.2f}x "
            f"| {fast_cpu * 1000:.0f} | {min(full_cpu[name]) * 1000:.0f} "
            f"| {fast_cpu / min(full_cpu[name]):.2f}x"
            if full
            else f"– | – | {fast_cpu * 1000:.0f} | – | –"
        )
        lines.append(
            f"| `{name}` | {median(values) * 1000:.0f} | {min(values) * 1000:.0f} | "
            f"{max(values) * 1000:.0f} | < {limit * 1000:.0f} ms "
            f"| {'yes' if median(values) < limit else 'no'} | {full_cells} |"
        )
    lines += [
        "",
        "- read path: `list`, `show` and `lineage` answer through registry/store/fastread.py "
        "(stdlib sqlite3, no SQLAlchemy import) on the embedded SQLite database; the full store "
        "column is the same command with ADAPTER_REGISTRY_FAST_READ=0 (what PostgreSQL "
        "registries and every write use).",
        f"- heavy libraries (torch, transformers, adapters) imported by the CLI at start-up: "
        f"{import_probe}",
        "- load average (1, 5, 15 min) when the timing started: "
        f"{', '.join(f'{x:.2f}' for x in load_start)}; when it ended: "
        f"{', '.join(f'{x:.2f}' for x in load_end)} ({os.cpu_count()} cores: above that, "
        "processes wait for one)",
        "",
        "## Where and how",
        "",
        machine_record(),
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
