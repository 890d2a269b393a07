#!/bin/sh
# One timed unit for paired A/B runs against borg.sh (see docs/benchmarks.md):
# a fresh repository and line cache, then day 1 (and day 2 with argument `12`), each day's
# file copied to one path first.
# Env: DATA (dir with day1.jsonl, day2.jsonl; default target/bench-data/n200000-s1-*),
#      WORK (scratch dir, default /tmp/kindsnap-pairs), KINDSNAP (binary).
set -e
DAYS=${1:-1}
DATA=${DATA:-$(ls -d target/bench-data/n200000-s1-* | head -1)}
DATA=$(cd "$DATA" && pwd)
WORK=${WORK:-/tmp/kindsnap-pairs}
mkdir -p "$WORK"
K=${KINDSNAP:-target/release/kindsnap}
# A fresh line cache too, as borg.sh gives borg a fresh cache.
export KINDSNAP_CACHE_DIR="$WORK/ks-cache"
rm -rf "$WORK/ks" "$KINDSNAP_CACHE_DIR" && "$K" --repo "$WORK/ks" init >/dev/null
for d in $(echo "$DAYS" | sed 's/./& /g'); do
  cp "$DATA/day$d.jsonl" "$WORK/ks.jsonl"
  "$K" --repo "$WORK/ks" snapshot --from "jsonl:$WORK/ks.jsonl" --name "day$d" >/dev/null
done
