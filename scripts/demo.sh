#!/usr/bin/env bash
# The main job on the embedded default, SQLite: build, snapshot a sample
# shop database, let a day pass, snapshot again, then log, diff, cat,
# restore into a new database and check. Everything happens in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# Ask cargo where it put the binary: CARGO_TARGET_DIR, build.target-dir in
# a .cargo/config.toml, or a workspace may move it away from ./target.
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
ks="$target_dir/release/kindsnap"
[[ -x "$ks" ]] || { echo "demo.sh: no binary at $ks after cargo build" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KINDSNAP_REPO="$work/repo"
run() { echo; echo "\$ kindsnap $*"; "$ks" "$@"; }
sql() { python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' "$@"; }

sql "$work/shop.db" docs/examples/shop.sql
echo "sample database: $work/shop.db (docs/examples/shop.sql)"
# --plain: no question about encryption on a terminal (docs/encryption.md)
run init --plain
run snapshot --from "sqlite:$work/shop.db" --name monday
echo; echo "# a day passes (docs/examples/shop-day2.sql)"
sql "$work/shop.db" docs/examples/shop-day2.sql
run snapshot --from "sqlite:$work/shop.db" --name tuesday
run log
run diff monday tuesday
run diff monday tuesday --props --kinds product,customer
run cat tuesday product:SKU-007
run restore monday --to "sqlite:$work/monday.db"
run snapshot --from "sqlite:$work/monday.db" --name restored
run diff monday restored
run check --read-data
