#!/usr/bin/env bash
# Creates (idempotently) the Django test project's virtualenv and prints its python.
#
#   tests/django/setup.sh            -> prints e.g. <repo>/target/django-venv/bin/python
#
# Venv: ${KINDSNAP_DJANGO_VENV:-<repo>/target/django-venv}
# Python: ${KINDSNAP_DJANGO_PYTHON:-python3.11} (falls back to python3 >= 3.10)
# See scripts/venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/scripts/venv.sh" "${KINDSNAP_DJANGO_VENV:-$repo/target/django-venv}" \
  "$here/requirements.txt" 3.10 'import django, psycopg' bin/python "${KINDSNAP_DJANGO_PYTHON:-}"
