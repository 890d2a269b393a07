#!/usr/bin/env bash
# Import throughput of a Google managed export (`datastore-export:`) against
# the same entities as JSON Lines: a first snapshot of day 1 of the
# benchmark data set (benches/gen_dataset.py, 200,000 entities by default)
# into a fresh repository from each, wall seconds and peak RSS from
# /usr/bin/time, entities/s and MB/s of input read. The export is written
# by `kindsnap export --to datastore-export:` from a snapshot of the same
# JSON Lines file (EntityProto records, LevelDB log files of 32 MiB).
#
#   benches/gexport.sh [--entities N] [--kindsnap PATH] [--runs R]
#
# The fastest of R runs (default 3) of each counts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
entities=200000
runs=3
kindsnap="$root/target/release/kindsnap"
while (($#)); do
  case "$1" in
    --entities) entities=$2; shift 2 ;;
    --kindsnap) kindsnap=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "gexport.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/kindsnap-gexportbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export KINDSNAP_CACHE_DIR="$work/cache"
python3 "$here/gen_dataset.py" --out "$work/data" --entities "$entities" >&2
jsonl="$work/data/day1.jsonl"
export_dir="$work/export/2026-11-20T03:00:00_1"
"$kindsnap" -q --repo "$work/prep" init
"$kindsnap" -q --repo "$work/prep" snapshot --from "jsonl:$jsonl" --name day1 --no-cache
"$kindsnap" -q --repo "$work/prep" export day1 --to "datastore-export:$export_dir"
mb() { du -sb "$1" | awk '{printf "%.1f", $1 / 1e6}'; }
best() { # label from -> "secs rss"
  local best_s="" best_kb=0
  for _ in $(seq "$runs"); do
    rm -rf "$work/repo" "$work/cache"
    "$kindsnap" -q --repo "$work/repo" init
    /usr/bin/time -f '%e %M' -o "$work/time" \
      "$kindsnap" -q --repo "$work/repo" snapshot --from "$1" --no-cache >/dev/null
    read -r secs kb < "$work/time"
    got=$("$kindsnap" --repo "$work/repo" log --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["entities"])')
    [ "$got" = "$entities" ] || { echo "gexport.sh: $1 gave $got entities, not $entities" >&2; exit 1; }
    if [ -z "$best_s" ] || awk "BEGIN{exit !($secs < $best_s)}"; then best_s=$secs best_kb=$kb; fi
  done
  echo "$best_s $best_kb"
}
echo "kindsnap $("$kindsnap" --version | cut -d' ' -f2), $entities entities, $(nproc) cores, best of $runs"
printf '| source | input | seconds | entities/s | MB/s | peak RSS |\n|---|---|---|---|---|---|\n'
for src in jsonl export; do
  if [ "$src" = jsonl ]; then from="jsonl:$jsonl" size=$(mb "$jsonl"); else from="datastore-export:$export_dir" size=$(mb "$export_dir"); fi
  read -r secs kb <<<"$(best "$from")"
  awk -v s="$src" -v size="$size" -v secs="$secs" -v n="$entities" -v kb="$kb" 'BEGIN {
    printf "| %s | %s MB | %.2f | %.0f | %.1f | %d MB |\n", s, size, secs, n / secs, size / secs, kb / 1024 }'
done
