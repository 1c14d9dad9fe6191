#!/usr/bin/env bash
# The robust objective at the reference DM budget, on one GPU in one prepared call (docs/robust.md, "The
# reference budget on a GPU"): plain vs cvar=default DM at IPC 10 for 20,000 iterations and plain vs cvar=release
# IDC at IPC 10 for what fits, seed 0, on the CIFAR-10 subpopulation-shift benchmark; the table at the end.
# PAPER_TABLE=standard runs the same four on standard CIFAR-10, scored by the paper's accuracy, Cluster-min, noise,
# blur and inverted. PAPER_TABLE=reduced runs the reduced converged protocol instead: plain vs cvar=default DM at
# width 32 to 20,000 iterations, seeds 0, 1 and 2 (docs/robust.md, "A converged protocol on a CPU").
#   [PAPER_TABLE=standard|reduced] [PAPER_TABLE_MINUTES=9] [PYTHON=python3] bash bench/paper_table.sh [OUT] [DATA]
# OUT receives at most five files (the table as .md and .json, the report and its trend plot, runs.tar.gz); the run
# folders go to a fresh folder under outputs/bench/paper_table_runs/ (PAPER_TABLE_RUNS to choose it).
# DATA: a folder with CIFAR-10 (cifar-10-batches-py/ or train/ and test/ class folders), or holding
# cifar10-jpeg.tar.gz (the 19 MB JPEG copy), which is unpacked there first. Default DATA: .device_data, an ignored
# folder of the checkout. Where PYTHON lacks hydra, omegaconf or kornia, the wheels in .whl/ are installed first
# (bench/device_env.sh; bench/device_wheels.sh makes them and fills .device_data, for a machine without a package
# index). Sized to 9 minutes, so that a job limited to 10 minutes holds it with its start (estimate in docs/robust.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/bench/paper_table}
DATA=${2:-.device_data}
source bench/device_env.sh  # PY, with hydra, omegaconf and kornia (from .whl/ where missing)
if [ -f "$DATA/cifar10-jpeg.tar.gz" ] && [ ! -d "$DATA/train" ] && [ ! -d "$DATA/cifar-10-batches-py" ]; then
  tar xzf "$DATA/cifar10-jpeg.tar.gz" -C "$DATA" || exit 2
fi
RUNS=${PAPER_TABLE_RUNS:-outputs/bench/paper_table_runs/$(date +%Y%m%d-%H%M%S)-$$}
exec "$PY" bench/paper_table.py --data-dir "$DATA" --out "$OUT" --runs "$RUNS" --table "${PAPER_TABLE:-reference}" \
  --minutes "${PAPER_TABLE_MINUTES:-9}"
