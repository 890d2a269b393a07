#!/bin/sh
# One timed unit for paired A/B runs against kindsnap.sh (see docs/benchmarks.md):
# a fresh repository and a fresh BORG_CACHE_DIR, then day 1 (and day 2 with
# argument `12`), each day's file copied to one path first.
# Env: DATA (dir with day1.jsonl, day2.jsonl; default target/bench-data/n200000-s1-*),
#      WORK (scratch dir, default /tmp/kindsnap-pairs).
set -e
DAYS=${1:-1}
DATA=${DATA:-$(ls -d target/bench-data/n200000-s1-* | head -1)}
DATA=$(cd "$DATA" && pwd)
WORK=${WORK:-/tmp/kindsnap-pairs}
mkdir -p "$WORK"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_CACHE_DIR="$WORK/borg-cache"
rm -rf "$WORK/borg" "$WORK/borg-cache" && borg init -e none "$WORK/borg" >/dev/null 2>&1
cd "$WORK"
for d in $(echo "$DAYS" | sed 's/./& /g'); do
  cp "$DATA/day$d.jsonl" borg.jsonl
  borg create --compression zstd,3 "$WORK/borg::day$d" borg.jsonl
done
