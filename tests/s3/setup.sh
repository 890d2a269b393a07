#!/usr/bin/env bash
# Creates (idempotently) the virtualenv of the S3-compatible test server
# (moto's server mode, from PyPI) and prints the path of its `moto_server`.
#
#   tests/s3/setup.sh            -> prints e.g. /work/main/target/s3-venv/bin/moto_server
#
# Venv: ${KINDSNAP_S3_VENV:-<repo>/target/s3-venv}
# Python: ${KINDSNAP_S3_PYTHON:-python3.11} (falls back to python3 >= 3.9)
# Installs requirements.txt; skipped when the stamp file matches.
# Log output goes to stderr; stdout carries only the server's path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KINDSNAP_S3_VENV:-$repo/target/s3-venv}"
req="$here/requirements.txt"
stamp="$venv/.kindsnap-requirements.sha256"

py="${KINDSNAP_S3_PYTHON:-}"
if [ -z "$py" ]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
  echo "setup.sh: need Python >= 3.9 (tried '$py')" >&2
  exit 1
fi

want="$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/moto_server" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/moto_server"
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
"$venv/bin/python" -c 'import moto.server' >&2
echo "$want" > "$stamp"
echo "$venv/bin/moto_server"
