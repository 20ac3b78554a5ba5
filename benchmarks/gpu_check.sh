#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): GPU tests and every GPU figure, one JSON + one table.
#   benchmarks/gpu_check.sh [--mode auto|gpu|cpu] [--out DIR] [--data CROPS] [--budget S]
#   benchmarks/gpu_check.sh --wheels DIR ...   first installs DIR/*.whl into a temporary folder
#                                              (offline machines that have torch but not all of
#                                              alface's packages; `make wheels` downloads them)
# Python: $PY, else .venv/bin/python, else python3. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
if [ "${1:-}" = "--wheels" ]; then
    site=$(mktemp -d)
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$2"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    shift 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
