#!/usr/bin/env bash
# The project's GPU checks, in one run on one GPU (about 5 minutes):
#   1. tests/gpu and tests/trainers/test_precision.py (pytest -m cuda): every method's
#      evaluation and training step under PREC fp16, amp and bf16 against fp32 (with amp's
#      skipped steps, ProGrad's unscaled projection, TCP's fp16 Adam, SemPT's fusion), and a
#      synthetic base-to-novel pass under amp;
#   2. bench/bench_methods.py: one training step and the text side of every method on the
#      ViT-B/16 architecture (random weights) at 100 and 1000 classes, under amp, fp16 and
#      bf16: one table of ms/step, steps/s, the ratio to CoOp and the peak GPU memory.
# Needs the project installed (pip install -e ".[test]"). Results also go to $OUT (or
# ./bench_gpu_out): pytest's log and bench_methods.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench_gpu_out}"
mkdir -p "$out"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "bench/gpu.sh needs a CUDA GPU"
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
start=$SECONDS
python -m pytest -q -m cuda tests/gpu tests/trainers/test_precision.py -p no:cacheprovider 2>&1 | tee "$out/pytest_cuda.log"
echo "GPU tests: $((SECONDS - start)) s"
python bench/bench_methods.py --device cuda --classes 100 1000 --precisions amp fp16 bf16 \
    --steps 3 --warmup 1 --json "$out/bench_methods.json" 2> "$out/bench_methods.stderr"
echo "Total: $((SECONDS - start)) s"
