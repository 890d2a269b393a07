#!/usr/bin/env bash
# Datastore connector throughput against the dev server, compared with the
# plainest client doing the same HTTP work (benches/datastore_plain.rs: same
# batch size, same concurrency, no repository, no hashing, no journal).
#
#   benches/datastore.sh [--entities N] [--runs R] [--storage]
#
# restore: `kindsnap restore` of a snapshot of N entities into an empty
#          server, against the plain loop of commits of the same JSON lines.
# snapshot: `kindsnap snapshot --from datastore://…` of the loaded server
#          into an empty repository, against a plain runQuery loop.
# R interleaved runs each (default 3); medians of wall seconds are printed.
# Needs `cargo build --release --benches` and tests/devserver/setup.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
entities=100000
runs=3
storage=0
while (($#)); do
  case "$1" in
    --entities) entities=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --storage) storage=1; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "datastore.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
ks="$root/target/release/kindsnap"
plain=$(ls -t "$root"/target/release/deps/datastore_plain-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[[ -x "$ks" && -n "$plain" ]] || { echo "datastore.sh: run cargo build --release --benches first" >&2; exit 2; }
py="$("$root/tests/devserver/setup.sh")"

work=$(mktemp -d "${TMPDIR:-/tmp}/kindsnap-dsbench.XXXXXX")
server_pid=""
cleanup() { [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Data: the first N entities of the benchmark data set (gen_dataset.py).
python3 "$here/gen_dataset.py" --out "$work/data" --entities "$entities" --seed 1 >/dev/null
src="$work/data/day1.jsonl"
"$ks" --repo "$work/repo" init >/dev/null
"$ks" --repo "$work/repo" snapshot --from "jsonl:$src" --name src >/dev/null

args=(--port 0)
((storage)) && args+=(--storage "$work/ds.bin")
"$py" "$root/tests/devserver/server.py" "${args[@]}" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do grep -q LISTENING "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^LISTENING //p' "$work/server.out")
hostport=${base#http://}
reset() { curl -s -X POST "$base/reset" >/dev/null; }

now() { date +%s.%N; }
declare -a R_KS R_PLAIN S_KS S_PLAIN
for r in $(seq "$runs"); do
  reset; t=$(now); "$plain" restore "$base" bench "$src" 500 4 >/dev/null; R_PLAIN+=("$(echo "$(now) - $t" | bc)")
  reset; t=$(now); "$ks" --repo "$work/repo" -q restore src --to "datastore://$hostport/bench"; R_KS+=("$(echo "$(now) - $t" | bc)")
  t=$(now); "$plain" scan "$base" bench 4 >/dev/null; S_PLAIN+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$work/r2"; "$ks" --repo "$work/r2" init >/dev/null
  t=$(now); "$ks" --repo "$work/r2" -q snapshot --from "datastore://$hostport/bench"; S_KS+=("$(echo "$(now) - $t" | bc)")
  echo "run $r: restore plain ${R_PLAIN[-1]} s, kindsnap ${R_KS[-1]} s; scan plain ${S_PLAIN[-1]} s, kindsnap snapshot ${S_KS[-1]} s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rp=$(median "${R_PLAIN[@]}"); rk=$(median "${R_KS[@]}")
sp=$(median "${S_PLAIN[@]}"); sk=$(median "${S_KS[@]}")
printf '%-28s %10s %10s %12s\n' "" "plain s" "kindsnap s" "kindsnap/plain throughput"
printf '%-28s %10.2f %10.2f %12.2f\n' "restore $entities entities" "$rp" "$rk" "$(echo "$rp / $rk" | bc -l)"
printf '%-28s %10.2f %10.2f %12.2f\n' "snapshot $entities entities" "$sp" "$sk" "$(echo "$sp / $sk" | bc -l)"
