#!/usr/bin/env bash
# Executes the notebooks through the "Rust (vl-distill)" kernel (install it
# first with kernel/install.sh). Options: kernel/run-notebooks.sh --help.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.kernel-env/venv/bin/python"
if [[ ! -x "$PY" || ! -x "$ROOT/.kernel-env/bin/evcxr_jupyter" ]]; then
    echo "run-notebooks.sh: no kernel in $ROOT/.kernel-env; run kernel/install.sh first" >&2
    exit 1
fi
export JUPYTER_PLATFORM_DIRS=1
exec "$PY" "$ROOT/kernel/run_notebooks.py" "$@"
