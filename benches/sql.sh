#!/usr/bin/env bash
# SQL benchmark (not a timed test): a ROWS-row table in SQLite and in
# PostgreSQL, day 1 and day 2 (1% of rows updated at spread-out positions).
#
#   kindsnap snapshot of each engine          vs  sqlite3 .dump / pg_dump
#   kindsnap day-2 snapshot (repository growth) vs  restic and borg backing
#                                                  up the day-2 dump file
#
#   benches/sql.sh [ROWS]        (default 1000000)
#
# Prints a Markdown table (the numbers in docs/benchmarks.md, "SQL").
# Installs what it needs: restic, borg, GNU time (benches/setup-tools.sh),
# PostgreSQL (scripts/postgres.sh). Starts a private PostgreSQL server (as
# nobody when run as root) in a temp dir and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"

benches/setup-tools.sh
pgbin="$(scripts/postgres.sh)"
command -v sqlite3 >/dev/null || { echo "sql.sh: needs the sqlite3 CLI (apt-get install sqlite3)" >&2; exit 1; }
cargo build --release --quiet
ks="$PWD/target/release/kindsnap"

work="$(mktemp -d /tmp/kindsnap-sqlbench.XXXXXX)"
chmod 755 "$work"
pg_pid=""
cleanup() {
  if [[ -n "$pg_pid" ]]; then kill -INT "$pg_pid" 2>/dev/null || true; wait "$pg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# -- PostgreSQL, private
asuser=()
if [[ "$(id -u)" == 0 ]]; then asuser=(setpriv --reuid=65534 --regid=65534 --clear-groups --); fi
mkdir -p "$work/pg"
echo bench > "$work/pg/pw"
[[ "$(id -u)" == 0 ]] && chown -R 65534:65534 "$work/pg"
"${asuser[@]}" "$pgbin/initdb" -D "$work/pg/data" -U postgres -E UTF8 --no-locale --no-sync \
  --auth-local=trust --auth-host=scram-sha-256 --pwfile="$work/pg/pw" >/dev/null
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${asuser[@]}" "$pgbin/postgres" -D "$work/pg/data" -p "$port" -k "$work/pg" \
  -c listen_addresses=127.0.0.1 >"$work/pg/log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
export PGPASSWORD=bench
url="postgres://postgres:bench@127.0.0.1:$port/bench"
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d "postgres://postgres:bench@127.0.0.1:$port/postgres" -c "CREATE DATABASE bench"

# -- The same data in both engines
table="CREATE TABLE item (id bigint PRIMARY KEY, sku text NOT NULL, qty integer NOT NULL,
  price double precision, note text, updated text NOT NULL)"
row="i, 'SKU-' || substr('0000000' || i, -8, 8), i % 97, (i % 1000) / 7.0,
  'item number ' || i || ' with a short note', '2026-11-20 00:00:00'"
db="$work/app.db"
sqlite3 "$db" >/dev/null "PRAGMA journal_mode = WAL; $table;
  WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $rows)
  INSERT INTO item SELECT $row FROM c;"
psql -d "$url" -c "$table" -c "INSERT INTO item SELECT i, 'SKU-' || lpad(i::text, 8, '0'), i % 97,
  (i % 1000) / 7.0, 'item number ' || i || ' with a short note', '2026-11-20 00:00:00'
  FROM generate_series(1, $rows) i" -c "VACUUM ANALYZE item"
day2="UPDATE item SET qty = qty + 1, updated = '2026-11-21 00:00:00' WHERE (id * 7919) % 100 = 0"

# -- Measuring: wall seconds and peak RSS of one command, bytes of a dir
measure() { # label, command...
  local label="$1" out="$work/time.txt"
  shift
  /usr/bin/time -f "%e %M" -o "$out" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
  read -r secs kib <"$out"
  printf '%s\t%s\t%s\n' "$label" "$secs" "$((kib / 1024))" >>"$work/times.tsv"
}
size() { du -sb "$1" | cut -f1; }
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.1f} MB')" "$1"; }

"$ks" --repo "$work/ks-sqlite" init >/dev/null
"$ks" --repo "$work/ks-pg" init >/dev/null
export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD_FILE="$work/pg/pw"
export BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
restic init -q
borg init --encryption=none "$work/borg" >/dev/null

: >"$work/times.tsv"
for day in 1 2; do
  if [[ $day == 2 ]]; then
    sqlite3 "$db" "$day2"
    psql -d "$url" -c "$day2"
  fi
  s0="$(size "$work/ks-sqlite")"; p0="$(size "$work/ks-pg")"
  measure "kindsnap snapshot sqlite:" "$ks" -q --repo "$work/ks-sqlite" snapshot --from "sqlite:$db" --name "day$day"
  measure "kindsnap snapshot postgres://" "$ks" -q --repo "$work/ks-pg" snapshot --from "$url" --name "day$day"
  eval "ks_sqlite_$day=$(( $(size "$work/ks-sqlite") - s0 ))"
  eval "ks_pg_$day=$(( $(size "$work/ks-pg") - p0 ))"
  measure "sqlite3 .dump" sh -c "sqlite3 '$db' .dump > '$work/dump.sql'"
  eval "dump_sqlite_$day=$(size "$work/dump.sql")"
  measure "pg_dump" "$pgbin/pg_dump" -d "$url" -f "$work/pg_dump.sql"
  eval "dump_pg_$day=$(size "$work/pg_dump.sql")"
  r0="$(size "$work/restic")"; b0="$(size "$work/borg")"
  measure "restic backup (sqlite3 .dump)" restic backup -q "$work/dump.sql"
  measure "borg create (sqlite3 .dump)" borg create --compression zstd,3 "$work/borg::day$day" "$work/dump.sql"
  eval "restic_$day=$(( $(size "$work/restic") - r0 ))"
  eval "borg_$day=$(( $(size "$work/borg") - b0 ))"
  mv "$work/times.tsv" "$work/times-$day.tsv"; : >"$work/times.tsv"
done

echo
echo "ROWS=$rows, day 2 updates $(sqlite3 "$db" "SELECT count(*) FROM item WHERE updated LIKE '2026-11-21%'") rows"
echo
echo "| step | day 1: seconds | day 1: peak RSS MiB | day 2: seconds | day 2: peak RSS MiB |"
echo "|---|---|---|---|---|"
paste "$work/times-1.tsv" "$work/times-2.tsv" | while IFS=$'\t' read -r l s1 m1 _ s2 m2; do
  echo "| $l | $s1 | $m1 | $s2 | $m2 |"
done
echo
echo "| stored | day 1 | day 2 (added) |"
echo "|---|---|---|"
echo "| dump file, sqlite3 .dump | $(mb "$dump_sqlite_1") | $(mb "$dump_sqlite_2") (whole file) |"
echo "| dump file, pg_dump | $(mb "$dump_pg_1") | $(mb "$dump_pg_2") (whole file) |"
echo "| kindsnap repository, from SQLite | $(mb "$ks_sqlite_1") | $(mb "$ks_sqlite_2") |"
echo "| kindsnap repository, from PostgreSQL | $(mb "$ks_pg_1") | $(mb "$ks_pg_2") |"
echo "| restic repository (sqlite3 .dump) | $(mb "$restic_1") | $(mb "$restic_2") |"
echo "| borg repository, zstd,3 (sqlite3 .dump) | $(mb "$borg_1") | $(mb "$borg_2") |"
