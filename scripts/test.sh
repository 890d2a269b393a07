#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need
# (the Datastore dev server's and the S3 test server's virtualenvs, from PyPI), then runs every Rust
# test (unit, property, CLI, crash) and the dev server's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi

echo "== dev server virtualenv (PyPI)"
py="$(tests/devserver/setup.sh)"

echo "== S3 test server virtualenv (moto, PyPI)"
tests/s3/setup.sh >/dev/null

echo "== cargo test"
cargo test --locked --all-targets

echo "== dev server tests"
"$py" -m unittest tests/devserver/test_devserver.py 2>&1 | tail -n 4
