"""The examples run: each answers --help, and (slow) each runs end to end on small data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
DATA_ROOT = Path(os.environ.get("ADAPTER_REGISTRY_DATA_ROOT", REPO.parent / "shared" / "data"))


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_answers_help(example: Path, tmp_path: Path) -> None:
    proc = _run([str(example), "--help"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def _need_data(*folders: str) -> None:
    missing = [f for f in folders if not (DATA_ROOT / f / "train.jsonl").is_file()]
    if missing:
        pytest.skip(f"shared data {missing} not under {DATA_ROOT}")


@pytest.mark.slow
def test_register_adapters_runs(tiny_base_dir: Path, tmp_path: Path) -> None:
    _need_data("mds_books", "agnews", "rte")
    proc = _run(
        [
            str(REPO / "examples" / "register_adapters.py"),
            "--data-root", str(DATA_ROOT), "--base", str(tiny_base_dir),
            "--home", str(tmp_path / "home"), "--rows", "24", "--epochs", "1", "--max-length", "32",
        ],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verify: ok=True" in proc.stdout
    assert '["books@1", "agnews@1", "rte@1"]' in proc.stdout


@pytest.mark.slow
def test_cb_fusion_runs(tiny_base_dir: Path, tmp_path: Path) -> None:
    _need_data("mnli", "qqp", "qnli", "cb")
    out = tmp_path / "cb_fusion.md"
    proc = _run(
        [
            str(REPO / "examples" / "cb_fusion.py"),
            "--data-root", str(DATA_ROOT), "--base", str(tiny_base_dir),
            "--home", str(tmp_path / "home"), "--source-rows", "24", "--source-val-rows", "12",
            "--source-epochs", "1", "--cb-epochs", "1", "--fusion-epochs", "1",
            "--finetune-epochs", "1", "--max-length", "32", "--threads", "1", "--out", str(out),
        ],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file() and "|" in out.read_text(encoding="utf-8")
