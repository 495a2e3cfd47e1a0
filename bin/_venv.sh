# Sourced by bin/run and bin/test: go to the repo root and make sure .venv is ready.
# Creates .venv with Python >= 3.11 when missing, and reinstalls requirements.txt whenever it
# changed since the last install (its sha256 is kept in .venv/.requirements.sha256).
# PYTHON=/path/to/python3 picks the interpreter used to create the venv.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

die() { echo "error: $*" >&2; exit 1; }

is_recent_python() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && is_recent_python "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

VENV_PYTHON="$REPO_ROOT/.venv/bin/python"

if [ ! -x "$VENV_PYTHON" ]; then
    python="$(find_python)" || die "Python 3.11 or newer is required (looked for ${PYTHON:+$PYTHON, }python3.13, python3.12, python3.11, python3). Install it, or set PYTHON=/path/to/python3.11."
    echo "Creating .venv with $("$python" -V 2>&1)..." >&2
    "$python" -m venv .venv || die "could not create .venv (on Debian/Ubuntu: apt install python3-venv)"
fi
is_recent_python "$VENV_PYTHON" || die ".venv uses Python older than 3.11; delete .venv and run again."

stamp=".venv/.requirements.sha256"
wanted="$("$VENV_PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' requirements.txt)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
    echo "Installing requirements.txt into .venv..." >&2
    "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt \
        || die "pip install -r requirements.txt failed (see above)"
    echo "$wanted" > "$stamp"
fi
