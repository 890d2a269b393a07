#!/usr/bin/env bash
# Creates (idempotently) the dev server's virtualenv and prints its python.
#
#   tests/devserver/setup.sh            -> prints e.g. <repo>/target/devserver-venv/bin/python
#
# Venv: ${KINDSNAP_DEVSERVER_VENV:-<repo>/target/devserver-venv}
# Python: ${KINDSNAP_DEVSERVER_PYTHON:-python3.11} (falls back to python3 >= 3.9)
# See scripts/venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/scripts/venv.sh" "${KINDSNAP_DEVSERVER_VENV:-$repo/target/devserver-venv}" \
  "$here/requirements.txt" 3.9 \
  'from google.appengine.api import datastore_file_stub
from google.cloud.datastore_v1 import types
from google.protobuf import json_format' \
  bin/python "${KINDSNAP_DEVSERVER_PYTHON:-}"
