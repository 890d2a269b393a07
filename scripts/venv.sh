#!/usr/bin/env bash
# Creates (idempotently) a Python virtualenv from a pinned requirements file
# and prints the path of one of its executables. The tests' setup scripts
# (tests/devserver, tests/django, tests/s3) are thin wrappers around it.
#
#   scripts/venv.sh VENV REQUIREMENTS MIN_PYTHON CHECK EXECUTABLE [PYTHON]
#
#   VENV          the virtualenv's directory (under target/)
#   REQUIREMENTS  the pinned requirements file, installed from PyPI
#   MIN_PYTHON    the oldest usable Python, e.g. 3.9
#   CHECK         Python code run once after installing (imports that must work)
#   EXECUTABLE    what to print, relative to VENV (bin/python, bin/moto_server)
#   PYTHON        the interpreter to build it with [python3.11, else python3]
#
# Nothing is done when the venv exists and was built from the same
# requirements and Python (a stamp file holds their hash). Log output goes
# to stderr; stdout carries only the executable's path.
set -euo pipefail

venv=$1 req=$2 min=$3 check=$4 exe=$5 py=${6:-}
stamp="$venv/.kindsnap-requirements.sha256"
if [ -z "$py" ]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
if ! "$py" -c "import sys; sys.exit(0 if sys.version_info >= tuple(map(int, '$min'.split('.'))) else 1)" 2>/dev/null; then
  echo "setup: need Python >= $min (tried '$py')" >&2
  exit 1
fi

want="$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/$exe" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/$exe"
  exit 0
fi

echo "setup: creating $venv with $("$py" --version 2>&1)" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! "$py" -m venv "$venv" >&2; then
  echo "setup: '$py -m venv' failed (on Debian: apt-get install python3-venv)" >&2
  exit 1
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" >&2
"$venv/bin/python" -c "$check" >&2
echo "$want" > "$stamp"
echo "$venv/$exe"
