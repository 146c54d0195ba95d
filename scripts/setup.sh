# Sourced by scripts/demo and scripts/test: .venv with midbrain and the locked dependencies.
# Usage: . scripts/setup.sh runtime|all   (requirements/runtime.lock for the demo, all.lock for the tests)
# Installs only from the lock (every file checked against its sha256). A stamp keyed by the
# hash of the lock, pyproject.toml and this script skips pip when none of them changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
lock="requirements/${1:?usage: . scripts/setup.sh runtime|all}.lock"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "midbrain needs Python 3.11 or newer")'
stamp_key() { cat "requirements/$1.lock" pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }
up_to_date() { [ -f ".venv/.midbrain-$1" ] && [ "$(cat ".venv/.midbrain-$1")" = "$(stamp_key "$1")" ]; }
# all.lock holds every pin of runtime.lock (scripts/lock makes it so), so either stamp serves the demo.
if up_to_date "$1" || { [ "$1" = runtime ] && up_to_date all; }; then
    :
else
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    rm -f .venv/.midbrain-*
    pip=(.venv/bin/python -m pip --disable-pip-version-check --quiet)
    "${pip[@]}" install --require-hashes --no-deps -r "$lock"
    "${pip[@]}" install --no-deps --no-build-isolation -e .
    stamp_key "$1" > ".venv/.midbrain-$1"
fi
export PATH="$PWD/.venv/bin:$PATH"
