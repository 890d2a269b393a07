#!/bin/sh
# Paired timing of the snapshot step alone, kindsnap against borg (see
# docs/benchmarks.md): hyperfine's --prepare builds each run's starting
# point untimed (a fresh repository and cache; for day 2, day 1 taken and
# day 2's file copied in place), so only `snapshot` / `borg create` is timed.
#   benches/pairs/steps.sh [1|2] [runs]
# Env: DATA (dir with day1.jsonl, day2.jsonl; default target/bench-data/n200000-s1-*),
#      WORK (scratch dir, default /tmp/kindsnap-steps), KINDSNAP (binary).
set -e
DAY=${1:-1}
RUNS=${2:-10}
DATA=${DATA:-$(ls -d target/bench-data/n200000-s1-* | head -1)}
DATA=$(cd "$DATA" && pwd)
WORK=${WORK:-/tmp/kindsnap-steps}
K=$(cd "$(dirname "${KINDSNAP:-target/release/kindsnap}")" && pwd)/$(basename "${KINDSNAP:-target/release/kindsnap}")
mkdir -p "$WORK"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_BASE_DIR="$WORK/borg-home" \
  KINDSNAP_CACHE_DIR="$WORK/ks-cache"
ks_prep="rm -rf $WORK/ks $KINDSNAP_CACHE_DIR && $K --repo $WORK/ks init >/dev/null && cp $DATA/day1.jsonl $WORK/ks.jsonl"
borg_prep="rm -rf $WORK/borg $BORG_BASE_DIR && borg init -e none $WORK/borg 2>/dev/null && cd $WORK && cp $DATA/day1.jsonl borg.jsonl"
if [ "$DAY" = 2 ]; then
  ks_prep="$ks_prep && $K -q --repo $WORK/ks snapshot --from jsonl:$WORK/ks.jsonl --name day1 && cp $DATA/day2.jsonl $WORK/ks.jsonl"
  borg_prep="$borg_prep && borg create --compression zstd,3 $WORK/borg::day1 borg.jsonl && cp $DATA/day2.jsonl borg.jsonl"
fi
hyperfine -N -w1 -r "$RUNS" \
  --prepare "sh -c '$ks_prep'" "$K -q --repo $WORK/ks snapshot --from jsonl:$WORK/ks.jsonl --name day$DAY" \
  --prepare "sh -c '$borg_prep'" "sh -c 'cd $WORK && borg create --compression zstd,3 $WORK/borg::day$DAY borg.jsonl'"
rm -rf "$WORK"
