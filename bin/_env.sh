# Sourced by bin/ scripts: create .venv if needed and install glovefaiss into it (editable).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.glovefaiss-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.cfg" -nt "$STAMP" ] || [ "$ROOT/constraints.txt" -nt "$STAMP" ]; then
    echo "installing glovefaiss and its dependencies into $VENV" >&2
    # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu where the package index serves torch's
    # multi-GB CUDA build for Linux (PyPI does); this machine's index serves the CPU wheel.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
