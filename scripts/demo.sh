#!/usr/bin/env bash
# The main job on the shipped sample: build, take two daily snapshots of a
# JSON Lines export, then log, diff, cat and export. Uses a temp repository.
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
