#!/usr/bin/env bash
# Retention benchmark: 60 daily snapshots of the 200,000-entity data set
# (benches/gen_dataset.py day 1, then benches/gen_days.py: 1% of the
# entities change each day), forget 30 of them (every other day), prune.
#
#   cargo build --release
#   benches/prune.sh [--kindsnap target/release/kindsnap] [--entities N] [--days 60]
#
# Prints wall seconds and repository bytes (du -sb) before and after.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
kindsnap="$root/target/release/kindsnap"
entities=200000
days=60
while (($#)); do
  case "$1" in
    --kindsnap) kindsnap=$2; shift 2 ;;
    --entities) entities=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    *) echo "prune.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
gen_sum=$(sha256sum "$here/gen_dataset.py" | cut -c1-10)
data="$root/target/bench-data/n$entities-s1-$gen_sum"
if [[ ! -f "$data/.complete" ]]; then
  rm -rf "$data.tmp"
  python3 "$here/gen_dataset.py" --out "$data.tmp" --entities "$entities" --seed 1
  touch "$data.tmp/.complete"; rm -rf "$data"; mv "$data.tmp" "$data"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kindsnap-prune.XXXXXX")
trap 'rm -rf "$work"' EXIT
repo="$work/repo"
"$kindsnap" --repo "$repo" init >/dev/null
t0=$(date +%s.%N)
for d in $(seq 1 "$days"); do
  python3 "$here/gen_days.py" "$data/day1.jsonl" "$d" "$work/export.jsonl"
  day=$(date -u -d "2026-01-01 + $((d - 1)) days" +%Y-%m-%d)
  (cd "$work" && KINDSNAP_NOW="${day}T05:00:00Z" "$kindsnap" --repo "$repo" \
     snapshot --from jsonl:export.jsonl --name "day$d" -q)
done
t1=$(date +%s.%N)
echo "snapshots: $days days in $(echo "$t1 - $t0" | bc) s"
size() { du -sb "$repo" | cut -f1; }
before=$(size)
echo "repository before forget: $before bytes"
# Forget every other day: keep the odd days.
keep=()
for d in $(seq 1 2 "$days"); do keep+=(--keep-name "day$d"); done
t0=$(date +%s.%N)
"$kindsnap" --repo "$repo" forget "${keep[@]}" -q
t1=$(date +%s.%N)
echo "forget: $(echo "$t1 - $t0" | bc) s; after forget $(size) bytes"
t0=$(date +%s.%N)
/usr/bin/time -f 'prune: %e s wall, %M KB peak RSS' "$kindsnap" --repo "$repo" prune
t1=$(date +%s.%N)
after=$(size)
echo "repository after prune: $after bytes (freed $((before - after)))"
t0=$(date +%s.%N)
"$kindsnap" --repo "$repo" check --read-data -q
t1=$(date +%s.%N)
echo "check --read-data: $(echo "$t1 - $t0" | bc) s"
"$kindsnap" --repo "$repo" stats | head -6
