#!/usr/bin/env bash
# The main job on the shipped samples: build, take two daily snapshots of a
# JSON Lines export, then log, diff, cat and export; then the same with a
# SQLite database, restored at the end. Uses a temp repository.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
ks=target/release/kindsnap
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KINDSNAP_REPO="$work/repo"
run() { echo; echo "\$ kindsnap $*"; "$ks" "$@"; }

run init
cp docs/examples/day1.jsonl "$work/export.jsonl"
run snapshot --from "jsonl:$work/export.jsonl" --name monday
cp docs/examples/day2.jsonl "$work/export.jsonl"
run snapshot --from "jsonl:$work/export.jsonl" --name tuesday
run log
run show tuesday
run diff monday tuesday
run diff monday tuesday --props --kind Post
run cat tuesday Tag:after
run export monday --to "jsonl:$work/monday.jsonl"
run check --read-data

# The same with a SQLite database (generated from docs/examples/shop.sql with
# Python's sqlite3 module): snapshot, change, snapshot, diff, restore.
sql() { python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' "$@"; }
sql "$work/shop.db" docs/examples/shop.sql
run snapshot --from "sqlite:$work/shop.db" --name shop-monday
sql "$work/shop.db" docs/examples/shop-day2.sql
run snapshot --from "sqlite:$work/shop.db" --name shop-tuesday
run log
run diff shop-monday shop-tuesday --props
run restore shop-monday --to "sqlite:$work/restored.db"
echo
echo "\$ sqlite3 restored.db 'SELECT count(*) FROM order_line'   # monday's 4 lines"
python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM order_line").fetchone()[0])' "$work/restored.db"
