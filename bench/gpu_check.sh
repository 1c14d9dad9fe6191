#!/usr/bin/env bash
# GPU readiness in one prepared call, for a machine with a CUDA device and the README's test install (pip install -e
# ".[test]"), or, without a package index, a Python with PyTorch, Lightning and pytest plus the wheels in .whl/
# (bench/device_wheels.sh; bench/device_env.sh installs them).
#   bash bench/gpu_check.sh [--quick] [OUT]        (default OUT: outputs/bench/gpu_check)
# Full (estimated 6-8 minutes on one H100, budget 10): the CUDA tests (pytest -m gpu: every matcher through
# train.py, bf16/16-mixed, torch.compile, ZCA, MTT, a 1-device DDP run over NCCL); every matcher's step at
# IPC 10 on CIFAR-10-sized data, plain and robust, with one 300-epoch evaluation network each (bench/run.py);
# IDC, a single-device and a 1-device DDP run through train.py. (bench/paper_table.sh is a device call of its own.)
# --quick (estimated about 2 minutes, budget 3): the CUDA tests without torch.compile, DM and DSA steps at IPC 10
# (no evaluation network), the single-device run with a 50-epoch evaluation.
# Writes OUT/gpu_check.json (every part: seconds, status, its numbers) and prints one table; a part that fails
# is recorded and the others still run (exit status 1 if any failed).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
OUT=${1:-outputs/bench/gpu_check}
source bench/device_env.sh  # PY, with hydra, omegaconf and kornia (from .whl/ where missing)
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs one')" || exit 2
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" | tee "$OUT/device.txt"

STEPS="$OUT/steps.tsv"
: > "$STEPS"
part() {  # part NAME COMMAND...: run it, log to OUT/NAME.log, record seconds and exit status
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$status" >> "$STEPS"
  echo "$name: exit $status ($(tail -1 "$OUT/$name.log" | cut -c1-100))"
}
RUN="eval.nets=1 eval.baseline=false eval.coverage=false trainer.enable_progress_bar=false"

if [ $QUICK = 1 ]; then
  part gpu_tests "$PY" -m pytest -q -n 0 -m gpu -k "not compile" -p no:cacheprovider tests/test_gpu.py
  part matchers "$PY" bench/run.py --device cuda --methods dm dsa --ipc 10 --objectives none matching --steps 2 \
    --eval-epochs 0 --out "$OUT/matchers.json"
  part single "$PY" train.py iterations=50 trainer=gpu eval.epochs=50 $RUN hydra.run.dir="$OUT/single"
else
  part gpu_tests "$PY" -m pytest -q -n 0 -m gpu -p no:cacheprovider tests/test_gpu.py
  part matchers "$PY" bench/run.py --device cuda --methods dm dc dsa mtt --ipc 10 --objectives none matching \
    --steps 3 --eval-epochs 300 --out "$OUT/matchers.json"
  part idc "$PY" train.py method=idc ipc=10 iterations=3 method.inner_loop=10 trainer=gpu eval.epochs=300 $RUN \
    hydra.run.dir="$OUT/idc"
  part single "$PY" train.py iterations=50 trainer=gpu eval.epochs=300 $RUN hydra.run.dir="$OUT/single"
  part ddp1 "$PY" train.py iterations=50 trainer=ddp trainer.accelerator=gpu trainer.devices=1 eval.epochs=300 $RUN \
    hydra.run.dir="$OUT/ddp1"
fi
"$PY" bench/gpu_summary.py "$OUT"
