"""Load test of ``adapter-registry serve`` on 127.0.0.1 with MiniLM-L6, on this machine's CPU.

Models: three single-text sentiment tasks (sst2, cr, mr), one seq_bn adapter each and, per
task, an AdapterFusion over all three adapters (plus a second sst2 fusion for promotions).
They are trained on a few hundred rows for one epoch: serving speed does not depend on their
quality, and the results file says so.

Measured, each part bounded in requests and seconds:

1. warm single-text latency (one client, sequential): p50 / p95 / p99;
2. N concurrent clients (default 16), one text per request: throughput, p50 / p95 / p99, errors;
3. baselines: the CLI ``predict`` (a new process per call) and a bare ``adapters`` model in a
   loop (one text per forward, the same fusion, in this process);
4. memory: a server with one task's fusion vs one with three tasks' fusions over one base;
5. hot-swap: N clients while ``sst2:production`` is promoted 10 times: failed requests, and each
   answer checked against the scores of the single version it names.

The server is a separate process (``python -m registry serve``); the clients are threads here.
Usage::

    python -m benchmarks.serve_load [--clients 16] [--requests 25] [--promotions 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA_ROOT, REPO, RESULTS, machine_record, minilm_path

TASKS = ("sst2", "cr", "mr")
CACHE = REPO / ".bench-cache" / "serve"


# ---------------------------------------------------------------------------- models
def _subset(src: Path, dst: Path, train_rows: int, val_rows: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_rows), ("validation", val_rows)):
        lines = (src / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        rng = random.Random(0)
        rng.shuffle(lines)
        (dst / f"{split}.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return dst


def build(home: Path, data_root: Path, rows: int, threads: int) -> None:
    """Train the adapters and fusions (small data, one epoch) and set the aliases."""
    from registry.composer import FuseConfig, fuse
    from registry.store import Registry
    from registry.trainer import TrainConfig, train

    base = str(minilm_path())
    data = {t: _subset(data_root / t, home.parent / "data" / t, rows, 64) for t in TASKS}
    reg = Registry.init(home)
    tcfg = TrainConfig(epochs=1, batch_size=32, max_length=64, device="cpu", threads=threads)
    for t in TASKS:
        train(reg, t, data[t], base, config=tcfg, progress=False)
        print(f"  trained {t}@1", flush=True)
    members = [f"{t}@1" for t in TASKS]
    for t in TASKS:
        fcfg = FuseConfig(epochs=1, batch_size=32, max_length=64, device="cpu", threads=threads)
        fuse(reg, t, members, data[t], name=f"{t}-fusion", config=fcfg, progress=False)
        reg.set_alias(t, "production", f"{t}-fusion@1")
        print(f"  fused {t}-fusion@1", flush=True)
    fcfg = FuseConfig(epochs=1, batch_size=32, max_length=64, device="cpu", threads=threads, seed=1)
    fuse(reg, "sst2", members, data["sst2"], name="sst2-fusion", config=fcfg, progress=False)
    reg.set_alias("sst2", "one", "sst2-fusion@1")  # the one-task server of the memory check
    reg.close()


# ---------------------------------------------------------------------------- server process
class ServerProcess:
    """``python -m registry serve --port 0 --json`` in its own process."""

    def __init__(self, home: Path, *extra: str, threads: int = 2) -> None:
        env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home), "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "registry", "serve", "--port", "0", "--json"]
        cmd += ["--threads", str(threads), *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server did not start: {' '.join(cmd)}")
        self.ready = json.loads(line)
        self.url = self.ready["url"]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _stats(latencies: list[float]) -> dict[str, float]:
    return {f"p{q}": 1000 * _pct(latencies, q) for q in (50, 95, 99)}


def texts_of(data_root: Path, n: int = 200) -> list[str]:
    lines = (data_root / "sst2" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["text"] for x in lines[:n]]


def run_clients(
    url: str, texts: list[str], clients: int, requests: int, budget_s: float, task: str = "sst2"
) -> dict[str, Any]:
    """``clients`` threads, each sending up to ``requests`` single texts; bounded in time."""
    from registry.serve.client import Client

    latencies: list[float] = []
    errors: list[str] = []
    answers: list[tuple[str, Any]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s
    barrier = threading.Barrier(clients)

    def one(i: int) -> None:
        client = Client(url, timeout=60)
        barrier.wait()
        for j in range(requests):
            if time.monotonic() > deadline:
                break
            text = texts[(i * requests + j) % len(texts)]
            started = time.perf_counter()
            try:
                status, out = client.predict({"task": task, "text": text})
            except Exception as err:
                with lock:
                    errors.append(repr(err))
                continue
            elapsed = time.perf_counter() - started
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    answers.append((text, out))
                else:
                    errors.append(f"{status}: {out}")
        client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": wall,
        "throughput": len(latencies) / wall if wall else 0.0,
        **_stats(latencies),
        "answers": answers,
    }


# ---------------------------------------------------------------------------- baselines
def cli_predict(home: Path, text: str, runs: int) -> list[float]:
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home), "TOKENIZERS_PARALLELISM": "false"}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "registry", "predict", "sst2:production", "--text", text],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        times.append(time.perf_counter() - started)
    return times


def bare_loop(home: Path, texts: list[str], n: int, threads: int) -> dict[str, float]:
    """The same fusion on a plain ``adapters`` model, one text per forward, in a loop."""
    import torch

    from registry.data import Example
    from registry.inference import predict_examples
    from registry.loader import load_entity
    from registry.store import Registry

    torch.set_num_threads(threads)
    reg = Registry.open(home)
    loaded = load_entity(reg, reg.resolve("sst2:production"))
    for t in texts[:10]:
        predict_examples(loaded, [Example(t, None, None)])
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        predict_examples(loaded, [Example(texts[i % len(texts)], None, None)])
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    reg.close()
    return {"n": n, "throughput": n / wall, **_stats(latencies)}


# ---------------------------------------------------------------------------- hot-swap
def hot_swap(
    home: Path, server: ServerProcess, texts: list[str], clients: int, promotions: int
) -> dict[str, Any]:
    from registry.serve.client import Client
    from registry.store import Registry

    reg = Registry.open(home)
    cycle = ["sst2-fusion@2", "sst2@1", "sst2-fusion@1"]
    probe_texts = texts[:8]
    admin = Client(server.url)
    # Each version's own answers for the probe texts, asked by REF (loaded beside the others).
    expected: dict[str, list[dict[str, float]]] = {}
    for ref in {*cycle, "sst2-fusion@1"}:
        status, out = admin.predict({"ref": ref, "text": probe_texts})
        assert status == 200, out
        expected[out["model"]["ref"]] = [p["scores"] for p in out["predictions"]]
    sha = {ref: reg.resolve(ref).artifact_sha256 for ref in expected}

    stop = threading.Event()
    log: list[tuple[int, Any, int]] = []
    lock = threading.Lock()

    def hammer(i: int) -> None:
        client = Client(server.url, timeout=60)
        j = 0
        while not stop.is_set():
            k = (i + j) % len(probe_texts)
            j += 1
            try:
                status, out = client.predict({"task": "sst2", "text": probe_texts[k]})
            except Exception as err:
                out, status = repr(err), -1
            with lock:
                log.append((status, out, k))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    notice: list[float] = []
    time.sleep(1.0)
    for p in range(promotions):
        ref = cycle[p % len(cycle)]
        changed = time.perf_counter()
        reg.set_alias("sst2", "production", ref)
        while True:
            _, out = admin.predict({"task": "sst2", "text": probe_texts[0]})
            if out["model"]["ref"] == ref:
                notice.append(time.perf_counter() - changed)
                break
            if time.perf_counter() - changed > 60:
                raise RuntimeError(f"the server did not switch to {ref} within 60 s")
            time.sleep(0.02)
        time.sleep(1.0)  # serve the new version under load for a while
    stop.set()
    for t in threads:
        t.join()
    reg.set_alias("sst2", "production", "sst2-fusion@1")
    reg.close()

    failed = [entry for entry in log if entry[0] != 200]
    by_version: dict[str, int] = {}
    mismatched = 0
    for status, out, k in log:
        if status != 200:
            continue
        ref = out["model"]["ref"]
        by_version[ref] = by_version.get(ref, 0) + 1
        scores = out["predictions"][0]["scores"]
        want = expected.get(ref)
        if (
            want is None
            or out["model"]["sha256"] != sha[ref]
            or any(abs(scores[label] - want[k][label]) > 1e-4 for label in scores)
        ):
            mismatched += 1
    return {
        "requests": len(log),
        "failed": len(failed),
        "failed_samples": [str(f[1])[:200] for f in failed[:3]],
        "mismatched": mismatched,
        "by_version": by_version,
        "promotions": promotions,
        "notice_s": notice,
    }


# ---------------------------------------------------------------------------- report
def write_report(path: Path, r: dict[str, Any], args: argparse.Namespace, load: str) -> None:
    single, conc, bare = r["single"], r["concurrent"], r["bare"]
    cli_mean = statistics.mean(r["cli"])
    cli_tp = 1 / cli_mean
    mem1, mem3 = r["memory"]["one"], r["memory"]["three"]
    swap = r["swap"]
    rows = [
        "| mode | requests | errors | throughput (texts/s) | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
        f"| serve, 1 client, sequential | {single['ok']} | {single['errors']} | "
        f"{single['throughput']:.1f} | {single['p50']:.1f} | {single['p95']:.1f} | "
        f"{single['p99']:.1f} |",
        f"| serve, {conc['clients']} concurrent clients | {conc['ok']} | {conc['errors']} | "
        f"{conc['throughput']:.1f} | {conc['p50']:.1f} | {conc['p95']:.1f} | {conc['p99']:.1f} |",
        f"| bare `adapters` model in a loop (same fusion, 1 text/forward) | {bare['n']} | 0 | "
        f"{bare['throughput']:.1f} | {bare['p50']:.1f} | {bare['p95']:.1f} | {bare['p99']:.1f} |",
        f"| CLI `predict` (a process per call) | {len(r['cli'])} | 0 | {cli_tp:.3f} | "
        f"{1000 * statistics.median(r['cli']):.0f} | – | – |",
    ]
    ratio = conc["throughput"] / cli_tp
    mem_ratio = mem3["rss_mib"] / mem1["rss_mib"]
    param_ratio = mem3["parameter_bytes"] / mem1["parameter_bytes"]
    per_task = (mem3["parameter_bytes"] - mem1["parameter_bytes"]) / 2 / 2**20
    notice = swap["notice_s"]
    met = {True: "met", False: "NOT met"}
    by_version = ", ".join(f"{k}: {v}" for k, v in sorted(swap["by_version"].items()))
    # Headline bullets stay on one line each: benchmarks.run copies them into RESULTS.md.
    key_latency = (
        f"- single-text p50 on a warm server: **{single['p50']:.1f} ms** "
        f"(target ≤ 50 ms: {met[single['p50'] <= 50]})."
    )
    key_ratio = (
        f"- throughput at {conc['clients']} concurrent clients vs the CLI `predict`: "
        f"**{ratio:.0f}x** (target ≥ 10x: {met[ratio >= 10]})."
    )
    key_memory = (
        f"- three tasks' fusions vs one: **{mem_ratio:.2f}x RSS, {param_ratio:.2f}x parameters** "
        f"(target ≤ 1.5x: {met[max(mem_ratio, param_ratio) <= 1.5]})."
    )
    key_swap = (
        f"- **{swap['failed']} failed requests of {swap['requests']}** over "
        f"{swap['promotions']} promotions (target 0: {met[swap['failed'] == 0]}); "
        f"**{swap['mismatched']}** answers differ from the version they name."
    )
    title = "Serving: `adapter-registry serve` under load "
    title += f"(MiniLM-L6, CPU, {args.threads} thread(s))"
    text = f"""# {title}

Server: `python -m registry serve --threads {args.threads}` (max batch 32, max wait 5 ms, alias
poll every {args.poll} s), a separate process on 127.0.0.1; clients are threads of the benchmark
process, one persistent HTTP connection each, one text per request. Models: three sentiment tasks
(sst2, cr, mr), a seq_bn adapter each and per task an AdapterFusion over all three, **trained on
{args.rows} rows for one epoch (max length 64): their accuracy is not the point, and serving
speed does not depend on it.** `sst2:production` is `sst2-fusion@1` (a fusion of 3 adapters).

## Latency and throughput

{chr(10).join(rows)}

{key_latency}
{key_ratio}
- the same fusion on a bare model, one text per forward in a loop in this process, had p50
  {bare["p50"]:.1f} ms; the server's p50 adds the HTTP round trip, the micro-batch wait and a
  forward pass that shares the 2 cores with the client process and the event loop.
- the CLI pays interpreter start, imports and the model load on every call (median
  {statistics.median(r["cli"]):.1f} s); the bare model in a loop is the same fusion, one text per
  forward, in one process: the server at {conc["clients"]} clients does
  {conc["throughput"] / bare["throughput"]:.2f}x its throughput (micro-batching lets concurrent
  requests share forward passes).

## Memory: one task's fusion vs three tasks' fusions over one base

| served | RSS MiB | parameter MiB (base + beside it) |
|---|---|---|
| 1 task (`sst2`) | {mem1["rss_mib"]:.0f} | {mem1["parameter_bytes"] / 2**20:.1f} |
| 3 tasks (`sst2`, `cr`, `mr`) | {mem3["rss_mib"]:.0f} | {mem3["parameter_bytes"] / 2**20:.1f} |

{key_memory}
- each extra task over the same members costs its fusion layer and head, {per_task:.1f} MiB of
  parameters; the base and the shared member adapters are loaded once.

## Hot-swap under load

{args.clients} clients sent requests to task `sst2` while `sst2:production` was promoted
{swap["promotions"]} times (cycling `sst2-fusion@2` → `sst2@1` → `sst2-fusion@1`: fusions and an
adapter), each version served for about a second before the next promotion.

{key_swap}
- every answer was checked against the scores (±1e-4) and sha256 of the single version its
  response names; answers by version: {by_version}.
- from `alias` to the first answer by the new version: median {statistics.median(notice):.2f} s,
  max {max(notice):.2f} s (poll interval {args.poll} s, plus the first load of a version).

## Where and how

{load}
{machine_record(args.threads)}
"""
    path.write_text(text, encoding="utf-8")


def main() -> None:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--rows", type=int, default=300, help="training rows per task")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--promotions", type=int, default=10)
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per load phase")
    parser.add_argument("--rebuild", action="store_true", help="retrain the models")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--out", default=str(RESULTS / "serve.md"))
    args = parser.parse_args()
    if args.quick:
        args.rows, args.requests, args.sequential, args.promotions = 64, 4, 20, 3
        args.cli_runs = 1
        args.out = str(RESULTS / "quick" / "serve.md")
    data_root = Path(args.data_root)
    home = CACHE / f"rows{args.rows}" / "home"
    if args.rebuild and home.exists():
        shutil.rmtree(home.parent)
    if not home.exists():
        print(f"Training adapters and fusions ({args.rows} rows each) …", flush=True)
        build(home, data_root, args.rows, args.threads)
    texts = texts_of(data_root)
    load_before = os.getloadavg()
    r: dict[str, Any] = {}

    print("memory: one task vs three …", flush=True)
    r["memory"] = {}
    for name, alias in (("one", "one"), ("three", "production")):
        extra = ("--alias", alias, "--poll-interval", "60")
        server = ServerProcess(home, *extra, threads=args.threads)
        try:
            from registry.serve.client import Client

            client = Client(server.url)
            for task in server.ready["served"]:
                for _ in range(5):
                    status, out = client.predict({"task": task, "text": texts[:8]})
                    assert status == 200, out
            _, models = client.json("GET", "/v1/models")
            r["memory"][name] = {"rss_mib": server.rss_mib(), **models["memory"]}
        finally:
            server.stop()

    server = ServerProcess(home, "--poll-interval", str(args.poll), threads=args.threads)
    try:
        print("warm-up and single-text latency …", flush=True)
        run_clients(server.url, texts, 1, 20, args.budget)
        r["single"] = run_clients(server.url, texts, 1, args.sequential, args.budget)
        print(f"{args.clients} concurrent clients …", flush=True)
        r["concurrent"] = run_clients(server.url, texts, args.clients, args.requests, args.budget)
        print(f"hot-swap: {args.promotions} promotions under load …", flush=True)
        r["swap"] = hot_swap(home, server, texts, args.clients, args.promotions)
    finally:
        server.stop()
    print("baselines: bare model loop, CLI predict …", flush=True)
    r["bare"] = bare_loop(home, texts, args.sequential, args.threads)
    r["cli"] = cli_predict(home, texts[0], args.cli_runs)
    load_after = os.getloadavg()
    load = (
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"(the machine's 2 cores are shared with other work; read the ratios); this process "
        f"and the server ran at niceness {os.nice(0)}"
    )
    for part in ("single", "concurrent"):
        r[part].pop("answers", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, r, args, load)
    (out.with_suffix(".json")).write_text(json.dumps(r, indent=2, default=str), encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
