#!/bin/sh
# One timed unit for paired A/B runs against the other tool (see docs/benchmarks.md):
# a fresh repository, then day 1 and day 2, each day's file copied to one path first.
# Env: DATA (dir with day1.jsonl, day2.jsonl; default target/bench-data/n200000-s1-*), WORK (scratch dir, default /tmp/kindsnap-pairs), KINDSNAP (binary).
set -e
DATA=${DATA:-$(ls -d target/bench-data/n200000-s1-* | head -1)}
DATA=$(cd "$DATA" && pwd)
WORK=${WORK:-/tmp/kindsnap-pairs}
mkdir -p "$WORK"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_CACHE_DIR="$WORK/borg-cache"
rm -rf "$WORK/borg" "$WORK/borg-cache" && borg init -e none "$WORK/borg" >/dev/null 2>&1
cd "$WORK"
cp "$DATA/day1.jsonl" borg.jsonl && borg create --compression zstd,3 "$WORK/borg::day1" borg.jsonl
cp "$DATA/day2.jsonl" borg.jsonl && borg create --compression zstd,3 "$WORK/borg::day2" borg.jsonl
