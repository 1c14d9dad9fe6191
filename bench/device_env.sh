# Sourced by the scripts meant for a GPU machine (bench/paper_table.sh, bench/gpu_check.sh), from the checkout's
# root. Sets PY, the Python to run (PYTHON, default python3), puts the checkout on PYTHONPATH (gdrdd need not be
# installed) and makes gdrdd's packages importable: where hydra, omegaconf or kornia are missing and .whl/ holds
# wheels (bench/device_wheels.sh makes them, for a machine without a package index), those are installed into a
# temporary folder put on PYTHONPATH too. Then imports each package gdrdd needs and stops the calling script (exit
# 2) with the names of those that fail.
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import hydra, omegaconf, kornia" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  GDRDD_SITE=$(mktemp -d /tmp/gdrdd-site.XXXXXX)
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$GDRDD_SITE" .whl/*.whl || exit 2
  export PYTHONPATH="$GDRDD_SITE:$PYTHONPATH"
fi
"$PY" - <<'CHECK' || exit 2
import importlib, sys
failed = []
for name in ("torch", "lightning", "hydra", "omegaconf", "kornia", "torchmetrics", "sklearn", "matplotlib", "scipy",
             "PIL", "gdrdd"):
    try:
        importlib.import_module(name)
    except Exception as error:  # a missing package, or one whose own dependencies are missing
        failed.append(f"{name} ({type(error).__name__}: {error})")
if failed:
    sys.exit(f"{sys.executable} cannot import {'; '.join(failed)}: install what is missing, or on a machine without a "
             "package index run `bash bench/device_wheels.sh` where pip works and bring .whl/ along")
CHECK
