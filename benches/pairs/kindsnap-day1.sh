#!/bin/sh
# One timed unit for paired A/B runs against the other tool (see docs/benchmarks.md):
# a fresh repository, then day 1, each day's file copied to one path first.
# Env: DATA (dir with day1.jsonl, day2.jsonl; default target/bench-data/n200000-s1-*), WORK (scratch dir, default /tmp/kindsnap-pairs), KINDSNAP (binary).
set -e
DATA=${DATA:-$(ls -d target/bench-data/n200000-s1-* | head -1)}
DATA=$(cd "$DATA" && pwd)
WORK=${WORK:-/tmp/kindsnap-pairs}
mkdir -p "$WORK"
K=${KINDSNAP:-target/release/kindsnap}
rm -rf "$WORK/ks" && "$K" --repo "$WORK/ks" init >/dev/null
cp "$DATA/day1.jsonl" "$WORK/ks.jsonl" && "$K" --repo "$WORK/ks" snapshot --from "jsonl:$WORK/ks.jsonl" --name day1 >/dev/null
