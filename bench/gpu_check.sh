#!/usr/bin/env bash
# GPU check (issue 6): on a CUDA machine, run the GPU-marked tests and the training
# throughput benchmark (plain PyTorch vs vaekit fp32 vs vaekit fast path) on the GPU.
# Takes under 5 minutes; writes runs/gpu_check/{pytest.txt,throughput.txt,throughput.json}.
#
#   bash bench/gpu_check.sh            # from the repository root
#
# Exits 0 with a message (and does nothing else) where there is no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=runs/gpu_check
mkdir -p "$OUT"

if ! "$PY" - <<'PYCHECK'
import sys
import torch
if not torch.cuda.is_available():
    print("gpu_check: no CUDA device (torch %s, built for CUDA %s); nothing to do"
          % (torch.__version__, torch.version.cuda))
    sys.exit(1)
name = torch.cuda.get_device_name(0)
print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
PYCHECK
then
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# 1. The GPU-marked tests (fast path on CUDA), plus the CPU fast-path tests for context.
timeout 120 "$PY" -m pytest -q -m gpu tests/test_fastpath.py 2>&1 | tee "$OUT/pytest.txt"

# 2. Throughput on the GPU: 3 epochs keep it short; the fast path uses bf16 where the card
#    supports it and torch.compile. It needs the Fashion-MNIST IDX files (no network on
#    most GPU machines): $VAEKIT_DATA/fashion-mnist/ or /usr/share/datasets/fashion-mnist/.
FM=${VAEKIT_DATA:-/nonexistent}/fashion-mnist
if ! ls "$FM"/train-images-idx3-ubyte* /usr/share/datasets/fashion-mnist/train-images* \
        >/dev/null 2>&1; then
    echo "gpu_check: Fashion-MNIST not found; copy its four .gz files to \$VAEKIT_DATA/fashion-mnist/" \
        "to run the throughput benchmark" | tee "$OUT/throughput.txt"
    exit 0
fi
timeout 170 "$PY" bench/throughput.py --device cuda --epochs 3 --fast \
    --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.txt"
echo "gpu_check: done; results in $OUT/"
