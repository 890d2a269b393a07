#!/usr/bin/env bash
# Split reads against a far-away server: `kindsnap snapshot` of 35,000
# entities (one kind of 30,000, five of 1,000; ≈400 bytes each) from the
# dev server with N ms added to every API call (a remote production app),
# against the plain sequential cursor loop (benches/datastore_plain.rs
# scan: one cursor per kind, 4 kinds at once, so the 30,000 kind is one
# cursor of 100 pages).
#
#   benches/datastore_split.sh [--latency-ms N] [--runs R] [--profile debug|release]
#
# Timed (wall seconds, median of R interleaved runs, default 1):
#   plain          the plain loop
#   kindsnap 1cur  kindsnap snapshot with the big kind kept to one cursor
#                  (kindsnap.toml [kinds.Big] concurrency = 1)
#   kindsnap split kindsnap snapshot with the defaults (big kinds split into
#                  __scatter__-sampled key ranges, 8 queries in flight)
# Also prints the server's request count and billed reads for the split run.
# Needs `cargo build [--release] --bin kindsnap --bench datastore_plain`
# and tests/devserver/setup.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
latency=200
runs=1
profile=release
while (($#)); do
  case "$1" in
    --latency-ms) latency=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "datastore_split.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
ks="$root/target/$profile/kindsnap"
plain=$(ls -t "$root"/target/"$profile"/deps/datastore_plain-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[[ -x "$ks" && -n "$plain" ]] || { echo "datastore_split.sh: build kindsnap and the datastore_plain bench ($profile) first" >&2; exit 2; }
py="$("$root/tests/devserver/setup.sh")"

work=$(mktemp -d "${TMPDIR:-/tmp}/kindsnap-splitbench.XXXXXX")
server_pid=""
stop() { [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=""; }
cleanup() { stop || true; rm -rf "$work"; }
trap cleanup EXIT
start() {
  : >"$work/server.out"
  "$py" "$root/tests/devserver/server.py" --port 0 --storage "$work/ds.bin" "$@" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 300); do grep -q LISTENING "$work/server.out" 2>/dev/null && break; sleep 0.1; done
  base=$(sed -n 's/^LISTENING //p' "$work/server.out")
  hostport=${base#http://}
}

python3 - "$work/data.jsonl" <<'PY'
import json, random, sys
rng = random.Random(1)
with open(sys.argv[1], 'w') as f:
    for kind, n in [('Big', 30000)] + [('Small%d' % i, 1000) for i in range(5)]:
        for i in range(n):
            key = {'partitionId': {'projectId': 'bench'},
                   'path': [{'kind': kind, 'id': str(rng.randrange(1, 1 << 52))}]}
            props = {'n': {'integerValue': str(i)},
                     'title': {'stringValue': 'entity %d of %s' % (i, kind)},
                     'body': {'stringValue': 'x' * rng.randrange(100, 500), 'excludeFromIndexes': True},
                     'score': {'doubleValue': rng.random()}}
            f.write(json.dumps({'key': key, 'properties': props}) + '\n')
PY
start
"$plain" restore "$base" bench "$work/data.jsonl" 500 4 >/dev/null
stop
start --latency-ms "$latency"
stats() { curl -s -X POST "$base/stats$1"; }

now() { date +%s.%N; }
declare -a P ONE SPLIT
printf '[kinds.Big]\nconcurrency = 1\n' >"$work/one.toml"
for r in $(seq "$runs"); do
  t=$(now); "$plain" scan "$base" bench 4 >/dev/null; P+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$work/r1"; "$ks" --repo "$work/r1" init >/dev/null
  t=$(now); "$ks" --config "$work/one.toml" --repo "$work/r1" -q snapshot --from "datastore://$hostport/bench"; ONE+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$work/r2"; "$ks" --repo "$work/r2" init >/dev/null
  stats /reset >/dev/null
  t=$(now); "$ks" --repo "$work/r2" snapshot --from "datastore://$hostport/bench" --json >"$work/split.json"; SPLIT+=("$(echo "$(now) - $t" | bc)")
  echo "run $r: plain ${P[-1]} s, kindsnap one cursor ${ONE[-1]} s, kindsnap split ${SPLIT[-1]} s" >&2
done
echo "split run, as the server counted it: $(stats '')" >&2
echo "split run, as kindsnap reported it: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["entities"], "entities;", r["reads"])' "$work/split.json")" >&2
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p=$(median "${P[@]}"); o=$(median "${ONE[@]}"); s=$(median "${SPLIT[@]}")
printf '%-44s %8s %8s\n' "35,000 entities, ${latency} ms per call ($profile)" "seconds" "vs plain"
printf '%-44s %8.2f %8.2f\n' "plain cursor loop (datastore_plain scan)" "$p" 1
printf '%-44s %8.2f %8.2f\n' "kindsnap snapshot, big kind one cursor" "$o" "$(echo "$p / $o" | bc -l)"
printf '%-44s %8.2f %8.2f\n' "kindsnap snapshot, split (defaults)" "$s" "$(echo "$p / $s" | bc -l)"
