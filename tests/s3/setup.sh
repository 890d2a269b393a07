#!/usr/bin/env bash
# Creates (idempotently) the virtualenv of the S3-compatible test server
# (moto's server mode, from PyPI) and prints the path of its `moto_server`.
#
#   tests/s3/setup.sh            -> prints e.g. <repo>/target/s3-venv/bin/moto_server
#
# Venv: ${KINDSNAP_S3_VENV:-<repo>/target/s3-venv}
# Python: ${KINDSNAP_S3_PYTHON:-python3.11} (falls back to python3 >= 3.9)
# See scripts/venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/scripts/venv.sh" "${KINDSNAP_S3_VENV:-$repo/target/s3-venv}" \
  "$here/requirements.txt" 3.9 'import moto.server' bin/moto_server "${KINDSNAP_S3_PYTHON:-}"
