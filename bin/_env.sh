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
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" "torch==2.13.0"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
