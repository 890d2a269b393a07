#!/usr/bin/env bash
# How long `kindsnap ui` takes to serve the history page of a repository of
# N snapshots (default 365) of 20 kinds, one snapshot a "day" with a few to
# a few dozen entities changed, added or removed (busy kinds change
# almost daily, quiet ones rarely). Prints the time of five loads of `/`
# and of a few other pages. The repository is kept in DIR for a second
# run (delete it to generate again).
#
#   benches/ui_history.sh [N] [DIR]      (uses target/release/kindsnap if
#                                         built, else target/debug/kindsnap)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-365}"
dir="${2:-/tmp/kindsnap-ui-bench}"
ks="$root/target/release/kindsnap"
[[ -x "$ks" ]] || ks="$root/target/debug/kindsnap"
mkdir -p "$dir"
cd "$dir"

if [[ ! -d repo ]]; then
  "$ks" --repo repo init >/dev/null
  for d in $(seq 1 "$n"); do
    python3 - "$d" <<'PY'
import json, random, sys
day = int(sys.argv[1])
random.seed(7)
kinds = [f"Kind{i:02d}" for i in range(20)]
ents = {(k, j): 0 for k in kinds for j in range(100)}
for d in range(1, day + 1):
    r = random.Random(d)
    for _ in range(r.randint(0, 40)):
        k = kinds[min(int(r.expovariate(0.4)), 19)]
        j = r.randint(0, 140)
        if (k, j) in ents and r.random() < 0.1:
            del ents[(k, j)]
        else:
            ents[(k, j)] = d
with open("cur.jsonl", "w") as f:
    for (k, j), v in sorted(ents.items()):
        f.write(json.dumps({"key": {"partitionId": {"projectId": "p"}, "path": [{"kind": k, "id": str(j + 1)}]},
            "properties": {"v": {"integerValue": str(v)}, "name": {"stringValue": f"{k} {j} v{v}"}}}) + "\n")
PY
    "$ks" -q --repo repo snapshot --from jsonl:cur.jsonl --name "$(printf day%03d "$d")"
  done
fi

"$ks" --repo repo ui --listen 127.0.0.1:0 > ui.out 2>&1 &
ui=$!
trap 'kill "$ui" 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q http ui.out && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' ui.out)
echo "$("$ks" --repo repo log | tail -n +2 | wc -l) snapshots, $ks"
for _ in 1 2 3 4 5; do
  curl -s -o /dev/null -w "history  %{http_code} %{time_total}s %{size_download} bytes\n" "$url"
done
last=$(printf day%03d "$n")
prev=$(printf day%03d $((n - 1)))
for p in "diff?from=$prev&to=$last" "diff?from=day001&to=$last" "entity?snapshot=$last&key=Kind00:7" "snapshot/$last"; do
  curl -s -o /dev/null -w "%{http_code} %{time_total}s %{size_download} bytes  /$p\n" "$url$p"
done
