#!/usr/bin/env bash
# Prints the python that runs tests/gexport/gen.py. The generator needs
# exactly what the dev server's virtualenv holds (appengine-python-standard
# for EntityProto and Google's v1 <-> v3 converters, google-cloud-datastore
# for the v1 messages), so it uses that venv rather than a copy of it:
# tests/devserver/setup.sh creates it (idempotently) from PyPI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../devserver/setup.sh"
