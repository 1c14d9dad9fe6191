#!/usr/bin/env bash
# GPU readiness in one script, for a machine with a CUDA device (under 10 minutes on one recent GPU):
#   1. every matcher (DM, DC, DSA, MTT): seconds per iteration and peak GPU memory, plain and robust, at IPC 10
#      on CIFAR-10-sized random data, plus one evaluation network (300 epochs) per configuration (bench/run.py);
#   2. IDC through train.py on the embedded set: a few iterations, one evaluation network;
#   3. a one-device DDP run through train.py (trainer=ddp), beside the same run without DDP.
# Usage: bash bench/gpu_check.sh [OUT]   (default outputs/bench/gpu_check); prints a table, writes JSON there.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/bench/gpu_check}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs one')"
python -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

python bench/run.py --device cuda --methods dm dc dsa mtt --ipc 10 --objectives none matching --steps 3 \
  --eval-epochs 300 --out "$OUT/matchers.json"

RUN="eval.nets=1 eval.epochs=300 eval.baseline=false eval.coverage=false trainer.enable_progress_bar=false"
python train.py method=idc ipc=10 iterations=3 method.inner_loop=10 trainer=gpu $RUN hydra.run.dir="$OUT/idc"
python train.py iterations=50 trainer=gpu $RUN hydra.run.dir="$OUT/single"
python train.py iterations=50 trainer=ddp trainer.accelerator=gpu trainer.devices=1 $RUN hydra.run.dir="$OUT/ddp1"

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {name: json.loads((out / name / "metrics.json").read_text()) for name in ("idc", "single", "ddp1")}
print("| train.py run | s / iteration (median) | peak GPU memory (MB) | test accuracy (%) |\n|---|---|---|---|")
for name, m in rows.items():
    print(f"| {name} | {m['seconds_per_iteration_median']:.3f} | {m.get('peak_gpu_memory_mb', float('nan')):.0f} | "
          f"{m['scored']['distilled']['acc']:.2f} |")
(out / "train_runs.json").write_text(json.dumps(rows, indent=2) + "\n")
PY
