"""benchmarks/gpu.py runs end to end on a CPU (small encoder): every row of its table is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_benchmark_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--quick", "--device", "cpu", "--threads", "1",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = out.read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| registry") or
            line.startswith("| raw")]  # fmt: skip
    kinds = {tuple(cell.strip() for cell in line.split("|")[1:4]) for line in rows}
    for path, mode in [("raw", "adapter"), ("raw", "full"), ("raw", "fusion-3"),
                       ("registry", "adapter"), ("registry", "fusion-3"),
                       ("raw", "inference"), ("registry", "inference")]:  # fmt: skip
        assert {(path, mode, s) for s in ("b32 fp32", "GPU defaults", "eval batches")} & kinds, (
            path,
            mode,
        )
    assert "Registry ÷ raw" in table and "adapter, b32 fp32 (fp32):" in table
    # every registry training row reports its time outside the loop
    for line in rows:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells[0] == "registry" and cells[1] != "inference":
            assert float(cells[-1]) > 0
