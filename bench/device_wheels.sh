#!/usr/bin/env bash
# Prepare a GPU machine that has no package index: its image already holds PyTorch, Lightning, scikit-learn,
# matplotlib, SciPy, PyYAML and NumPy, but not gdrdd's configuration and augmentation packages. This downloads, where
# pip can reach a package index, wheels of those (hydra-core, omegaconf, antlr4-python3-runtime, kornia, kornia_rs)
# for the GPU machine's Python into .whl/ (ignored by git), at the versions installed here, and copies CIFAR-10's
# JPEG archive into .device_data/ (ignored too). bench/paper_table.sh installs .whl/ into a temporary folder before
# it starts (bench/device_env.sh), so a copy of the checkout with .whl/ and .device_data/ in it runs the table on
# that machine with no further set-up.
#   [PYVER=3.12] bash bench/device_wheels.sh [CIFAR10_JPEG_TAR_GZ]
# PYVER: the GPU machine's Python (major.minor); kornia_rs is compiled, so its wheel must match it and x86-64 Linux.
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) is published as source only: it is built here into a
# pure-Python wheel. The whole set is about 8 MB; the archive 19 MB.
set -euo pipefail
ARCHIVE=${1:+$(realpath "$1")}  # before the cd: a path relative to where the script was called from
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
rm -f .whl/*.whl  # one version of each: two would stop the install there
python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" "kornia==$(version kornia)" \
  "kornia_rs==$(version kornia_rs)"
python -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
if [ -n "$ARCHIVE" ]; then
  mkdir -p .device_data
  install -m 644 "$ARCHIVE" .device_data/cifar10-jpeg.tar.gz  # writable, so that a rerun replaces it
fi
ls -l .whl ${ARCHIVE:+.device_data}
du -ch .whl ${ARCHIVE:+.device_data} | tail -n 1
