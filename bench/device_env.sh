# Sourced by the scripts meant for a GPU machine (bench/paper_table.sh, bench/gpu_check.sh), from the checkout's
# root. Sets PY, the Python to run (PYTHON, default python3), and makes gdrdd's packages importable by it: where
# hydra, omegaconf or kornia are missing and .whl/ holds wheels (bench/device_wheels.sh makes them, for a machine
# without a package index), those are installed into a temporary folder put on PYTHONPATH. Stops the calling
# script (exit 2) with the names of the packages still missing.
PY=${PYTHON:-python3}
if ! "$PY" -c "import hydra, omegaconf, kornia" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  GDRDD_SITE=$(mktemp -d /tmp/gdrdd-site.XXXXXX)
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$GDRDD_SITE" .whl/*.whl || exit 2
  export PYTHONPATH="$GDRDD_SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - <<'CHECK' || exit 2
import importlib.util, sys
missing = [m for m in ("torch", "lightning", "hydra", "omegaconf", "kornia", "sklearn", "matplotlib", "scipy")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"{sys.executable} lacks the Python packages {', '.join(missing)}: install them, or on a machine without "
             "a package index run `bash bench/device_wheels.sh` where pip works and bring .whl/ along")
CHECK
