#!/usr/bin/env bash
# Creates (idempotently) the Django test project's virtualenv and prints its python.
#
#   tests/django/setup.sh            -> prints e.g. <repo>/target/django-venv/bin/python
#
# Venv: ${KINDSNAP_DJANGO_VENV:-<repo>/target/django-venv}
# Python: ${KINDSNAP_DJANGO_PYTHON:-python3.11} (falls back to python3 >= 3.10)
# Installs requirements.txt from PyPI; skipped when the stamp file matches.
# Log output goes to stderr; stdout carries only the python path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KINDSNAP_DJANGO_VENV:-$repo/target/django-venv}"
req="$here/requirements.txt"
stamp="$venv/.kindsnap-requirements.sha256"

py="${KINDSNAP_DJANGO_PYTHON:-}"
if [ -z "$py" ]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "setup.sh: need Python >= 3.10 (tried '$py')" >&2
  exit 1
fi

want="$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

echo "setup.sh: creating $venv with $("$py" --version 2>&1)" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! "$py" -m venv "$venv" >&2; then
  echo "setup.sh: '$py -m venv' failed (on Debian: apt-get install python3-venv)" >&2
  exit 1
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
  -r "$req" >&2
"$venv/bin/python" - >&2 <<'PY'
import django  # noqa: F401
import psycopg  # noqa: F401
PY
echo "$want" > "$stamp"
echo "$venv/bin/python"
