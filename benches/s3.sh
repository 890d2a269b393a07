#!/usr/bin/env bash
# Snapshot into the S3 test server (moto, tests/s3/setup.sh) against the same
# into a local directory: day 1 and day 2 of the benchmark data set
# (benches/gen_dataset.py), wall seconds and peak RSS from /usr/bin/time.
#
#   benches/s3.sh [--entities N] [--kindsnap PATH]
#
# moto runs on this machine (loopback), so the S3 numbers measure the
# protocol's cost (requests, uploads, the cache), not a network.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
entities=200000
kindsnap="$root/target/release/kindsnap"
while (($#)); do
  case "$1" in
    --entities) entities=$2; shift 2 ;;
    --kindsnap) kindsnap=$2; shift 2 ;;
    *) echo "s3.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
moto=$("$root/tests/s3/setup.sh")
work=$(mktemp -d /tmp/kindsnap-s3bench.XXXXXX)
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$work"' EXIT
python3 "$here/gen_dataset.py" --out "$work/data" --entities "$entities" >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" KINDSNAP_CACHE_DIR="$work/cache"
run() { # label repo args...
  local label=$1 repo=$2; shift 2
  /usr/bin/time -f '%e %M' -o "$work/time" "$kindsnap" -q --repo "$repo" "$@" >/dev/null
  read -r secs kb < "$work/time"
  printf '%-28s %7.2f s  %6d MB RSS\n' "$label" "$secs" "$((kb / 1024))"
}
echo "kindsnap $("$kindsnap" --version | cut -d' ' -f2), $entities entities"
"$kindsnap" -q --repo "$work/local" init
"$kindsnap" -q --repo s3://bench/repo init
cp "$work/data/day1.jsonl" "$work/src.jsonl"
run "local day 1" "$work/local" snapshot --from "jsonl:$work/src.jsonl"
run "s3 day 1" s3://bench/repo snapshot --from "jsonl:$work/src.jsonl"
cp "$work/data/day2.jsonl" "$work/src.jsonl"
run "local day 2" "$work/local" snapshot --from "jsonl:$work/src.jsonl"
run "s3 day 2" s3://bench/repo snapshot --from "jsonl:$work/src.jsonl"
run "s3 log (warm cache)" s3://bench/repo log
mv "$work/cache" "$work/cache.old"
run "s3 log (empty cache)" s3://bench/repo log
run "s3 diff (manifests only)" s3://bench/repo diff latest~1 latest
run "s3 check --read-data" s3://bench/repo check --read-data
echo "local repository: $(du -sb "$work/local" | cut -f1) bytes"
