#!/usr/bin/env bash
# Incremental reads against a far-away server (issue 14): 35,000 entities
# (one kind of 30,000, five of 1,000; ≈400 bytes each, every one with an
# indexed `updated` timestamp) on the dev server with N ms added to every
# API call; a day-1 snapshot with `--changed-property updated`; then 1% of
# the entities change (300 updated, 25 inserted, 25 deleted), and, in one
# run:
#
#   plain        the plain sequential cursor loop (benches/datastore_plain.rs
#                scan: one cursor per kind, 4 kinds at once)
#   incremental  kindsnap snapshot --changed-property updated (day 2)
#   full         kindsnap snapshot --changed-property updated --full (with a
#                parent: the incremental snapshot)
#
# and checks `kindsnap diff` finds the incremental and the full snapshot
# identical. Prints wall seconds, the ratio to the plain loop, and the
# entity reads the server billed for each kindsnap run.
#
#   benches/datastore_incremental.sh [--latency-ms N] [--profile debug|release]
#
# Needs `cargo build [--release] --bin kindsnap --bench datastore_plain` and
# tests/devserver/setup.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
latency=200
profile=release
while (($#)); do
  case "$1" in
    --latency-ms) latency=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "datastore_incremental.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
ks="$root/target/$profile/kindsnap"
plain=$(ls -t "$root"/target/"$profile"/deps/datastore_plain-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[[ -x "$ks" && -n "$plain" ]] || { echo "datastore_incremental.sh: build kindsnap and the datastore_plain bench ($profile) first" >&2; exit 2; }
py="$("$root/tests/devserver/setup.sh")"

work=$(mktemp -d "${TMPDIR:-/tmp}/kindsnap-incrbench.XXXXXX")
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

# Day 1's data, written two hours ago.
python3 - "$work/data.jsonl" <<'PY'
import datetime, json, random, sys
rng = random.Random(1)
then = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2))
stamp = then.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
with open(sys.argv[1], 'w') as f:
    for kind, n in [('Big', 30000)] + [('Small%d' % i, 1000) for i in range(5)]:
        for i in range(n):
            key = {'partitionId': {'projectId': 'bench'},
                   'path': [{'kind': kind, 'id': str(rng.randrange(1, 1 << 52))}]}
            props = {'n': {'integerValue': str(i)},
                     'title': {'stringValue': 'entity %d of %s' % (i, kind)},
                     'body': {'stringValue': 'x' * rng.randrange(100, 500), 'excludeFromIndexes': True},
                     'score': {'doubleValue': rng.random()},
                     'updated': {'timestampValue': stamp}}
            f.write(json.dumps({'key': key, 'properties': props}) + '\n')
PY
start
"$plain" restore "$base" bench "$work/data.jsonl" 500 4 >/dev/null
stop
start --latency-ms "$latency"
stats() { curl -s -X POST "$base/stats$1"; }
now() { date +%s.%N; }
src="datastore://$hostport/bench"
"$ks" --repo "$work/r" init >/dev/null
"$ks" --repo "$work/r" -q snapshot --from "$src" --changed-property updated --name day1

# Day 2: 1% changed, by the app, now.
python3 - "$work/data.jsonl" "$base" <<'PY'
import datetime, json, random, sys, urllib.request
rng = random.Random(2)
lines = [json.loads(l) for l in open(sys.argv[1])]
stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
picked = rng.sample(lines, 325)
muts = []
for e in picked[:300]:
    e['properties']['n'] = {'integerValue': '-1'}
    e['properties']['updated'] = {'timestampValue': stamp}
    muts.append({'upsert': e})
for e in picked[300:]:
    muts.append({'delete': e['key']})
for i in range(25):
    e = json.loads(json.dumps(lines[i]))
    e['key']['path'][0]['id'] = str(rng.randrange(1 << 52, 1 << 53))
    e['properties']['updated'] = {'timestampValue': stamp}
    muts.append({'upsert': e})
req = urllib.request.Request(sys.argv[2] + '/v1/projects/bench:commit',
                             json.dumps({'mode': 'NON_TRANSACTIONAL', 'mutations': muts}).encode(),
                             {'content-type': 'application/json'})
urllib.request.urlopen(req).read()
PY

t=$(now); "$plain" scan "$base" bench 4 >/dev/null; P=$(echo "$(now) - $t" | bc)
stats /reset >/dev/null
t=$(now); "$ks" --repo "$work/r" snapshot --from "$src" --changed-property updated --name inc --json >"$work/inc.json"; I=$(echo "$(now) - $t" | bc)
inc_stats=$(stats /reset)
t=$(now); "$ks" --repo "$work/r" snapshot --from "$src" --changed-property updated --full --name full --json >"$work/full.json"; F=$(echo "$(now) - $t" | bc)
full_stats=$(stats /reset)
n=$("$ks" --repo "$work/r" diff inc full --keys --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("entries", [])))')
if [[ "$n" == 0 ]]; then same=identical; else same="DIFFERENT ($n entries)"; fi
billed() { python3 -c 'import json,sys; k=json.loads(sys.argv[1])["kinds"]; print(sum(v["entity_reads"] for n,v in k.items() if "__" not in n), sum(v["small_ops"] for n,v in k.items() if "__" not in n))' "$1"; }
read -r ie is <<<"$(billed "$inc_stats")"
read -r fe fs <<<"$(billed "$full_stats")"
printf '%-48s %8s %8s %13s %10s\n' "35,000 entities, 1% changed, ${latency} ms per call ($profile)" "seconds" "vs plain" "entity reads" "small ops"
printf '%-48s %8.2f %8.2f %13s %10s\n' "plain cursor loop (datastore_plain scan)" "$P" 1 35000 0
printf '%-48s %8.2f %8.2f %13s %10s\n' "kindsnap incremental (--changed-property)" "$I" "$(echo "$I / $P" | bc -l)" "$ie" "$is"
printf '%-48s %8.2f %8.2f %13s %10s\n' "kindsnap --full with a parent" "$F" "$(echo "$F / $P" | bc -l)" "$fe" "$fs"
echo "incremental vs full: $same"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); [print(" ", k["kind"], k.get("read")) for k in r["kinds"]]; print("  notes:", r["notes"])' "$work/inc.json"
