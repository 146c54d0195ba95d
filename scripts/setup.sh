# Sourced by scripts/demo and scripts/test: a virtual environment with midbrain installed.
# Usage: . scripts/setup.sh EXTRAS     (EXTRAS: "" for the demo, "test,train" for the tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "midbrain needs Python 3.11 or newer")'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
spec="."
[ -n "${1:-}" ] && spec=".[${1}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
export PATH="$PWD/.venv/bin:$PATH"
