#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need
# (the virtualenvs of the Datastore dev server — which also runs the
# generator of tests/gexport — the Django project and the S3 test server,
# from PyPI; PostgreSQL's server binaries and headless Chromium for the web
# UI's browser test, from Debian), then
# runs every Rust test (unit, property, CLI, crash, SQL, Django, S3, docs)
# and the dev server's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi

echo "== dev server virtualenv (PyPI)"
py="$(tests/devserver/setup.sh)"

echo "== PostgreSQL server binaries (Debian's postgresql package)"
scripts/postgres.sh >/dev/null

echo "== Django test project virtualenv (PyPI)"
tests/django/setup.sh >/dev/null

echo "== managed-export fixture generator (the dev server's virtualenv)"
tests/gexport/setup.sh >/dev/null

echo "== S3 test server virtualenv (moto, PyPI)"
tests/s3/setup.sh >/dev/null

echo "== headless Chromium and chromedriver (Debian's chromium, chromium-driver)"
scripts/chromium.sh >/dev/null

echo "== cargo test"
cargo test --locked --all-targets

echo "== dev server tests"
"$py" -m unittest tests/devserver/test_devserver.py 2>&1 | tail -n 4
