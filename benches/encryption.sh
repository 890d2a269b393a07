#!/usr/bin/env bash
# Plain against encrypted repositories on the daily-dump data set
# (benches/gen_dataset.py): day-1 and day-2 snapshots, diff, export and
# check --read-data, each timed, in alternating rounds so drift on a
# shared machine hits both modes alike. Prints a markdown table of means
# (docs/benchmarks.md, "Encryption").
#
#   cargo build --release
#   benches/encryption.sh [--kindsnap target/release/kindsnap] [--entities 200000] [--rounds 5]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
kindsnap="$root/target/release/kindsnap"
entities=200000
rounds=5
seed=1
while [ $# -gt 0 ]; do
  case "$1" in
    --kindsnap) kindsnap="$2"; shift 2 ;;
    --entities) entities="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
gen_sum=$(sha256sum "$here/gen_dataset.py" | cut -c1-10)
data="$root/target/bench-data/n$entities-s$seed-$gen_sum"
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data.tmp"
  python3 "$here/gen_dataset.py" --out "$data.tmp" --entities "$entities" --seed "$seed"
  touch "$data.tmp/.complete"
  rm -rf "$data"
  mv "$data.tmp" "$data"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KINDSNAP_PASSWORD="benchmark password"
results="$work/results.tsv"

now() { date +%s.%N; }
# time_it MODE STEP COMMAND...: run, append "MODE STEP seconds".
time_it() {
  local mode="$1" step="$2"; shift 2
  local t0 t1
  t0=$(now)
  "$@" > /dev/null
  t1=$(now)
  echo -e "$mode\t$step\t$(echo "$t1 - $t0" | bc -l)" >> "$results"
}

round() {
  local mode="$1" repo="$work/repo-$1" cache="$work/cache-$1"
  rm -rf "$repo" "$cache" "$work/cur.jsonl" "$work/out.jsonl"
  export KINDSNAP_CACHE_DIR="$cache"
  local flag=--plain
  [ "$mode" = encrypted ] && flag=--encrypt
  "$kindsnap" --repo "$repo" init "$flag" > /dev/null
  # The fixed cost of every command: `log` of an empty repository (for
  # an encrypted one, mostly argon2id opening the key).
  time_it "$mode" "open (log, empty)" "$kindsnap" --repo "$repo" log
  cp "$data/day1.jsonl" "$work/cur.jsonl"
  time_it "$mode" "day-1 snapshot" "$kindsnap" --repo "$repo" snapshot --from "jsonl:$work/cur.jsonl" --name d1
  cp "$data/day2.jsonl" "$work/cur.jsonl"
  time_it "$mode" "day-2 snapshot" "$kindsnap" --repo "$repo" snapshot --from "jsonl:$work/cur.jsonl" --name d2
  time_it "$mode" "diff --stat" "$kindsnap" --repo "$repo" diff d1 d2 --stat
  time_it "$mode" "export day 2" "$kindsnap" --repo "$repo" export d2 --to "jsonl:$work/out.jsonl"
  time_it "$mode" "check --read-data" "$kindsnap" --repo "$repo" check --read-data
  echo -e "$mode\trepository MB\t$(du -sb "$repo" | cut -f1 | awk '{print $1/1e6}')" >> "$results"
}

for _ in $(seq "$rounds"); do
  round plain
  round encrypted
done

python3 - "$results" "$rounds" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    mode, step, v = line.rstrip("\n").split("\t")
    if step not in order:
        order.append(step)
    rows[(mode, step)].append(float(v))
print(f"| step (means of {sys.argv[2]}) | plain | encrypted | ratio |")
print("|---|---:|---:|---:|")
for step in order:
    p, e = rows[("plain", step)], rows[("encrypted", step)]
    mp, me = statistics.mean(p), statistics.mean(e)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    unit = "" if "MB" in step else " s"
    print(f"| {step} | {mp:.2f}{unit} ± {sd(p):.2f} | {me:.2f}{unit} ± {sd(e):.2f} | {me / mp:.3f} |")
PY
