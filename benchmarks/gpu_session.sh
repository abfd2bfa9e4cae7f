#!/usr/bin/env bash
# One session on a GPU machine without internet, run from the repository root:
#   1. install the wheels carried in .whl/ (see README, "GPU benchmark"), offline, no deps;
#   2. the GPU tests (tests/test_gpu.py and the fit-loop tests) on the GPU;
#   3. benchmarks/gpu.py, its table written to $OUT/gpu.md (or benchmarks/results/gpu.md).
# Budget: about 9 minutes of a 10-minute command on one H200. Each step has its own timeout,
# so a hang in one still leaves the others' output.
set -uo pipefail
OUT_DIR=${OUT:-benchmarks/results}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu_env.txt"
if compgen -G ".whl/*.whl" >/dev/null; then
    python -m pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -3
fi
python - <<'PY' | tee -a "$OUT_DIR/gpu_env.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "bf16", torch.cuda.is_bf16_supported())
for name in ("transformers", "adapters", "tokenizers", "huggingface_hub", "sqlalchemy", "alembic",
             "safetensors", "scipy", "numpy", "click", "tqdm", "pytest"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # noqa: BLE001
        print(name, "MISSING", err)
PY
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_gpu.py \
    tests/test_fit_loop.py -m gpu 2>&1 | tail -15 | tee "$OUT_DIR/gpu_tests.txt"
timeout 390 python -m benchmarks.gpu --device cuda --out "$OUT_DIR/gpu.md" 2>&1 \
    | grep -v "none are activated" | tail -40
