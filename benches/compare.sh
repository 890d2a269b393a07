#!/usr/bin/env bash
# End-to-end comparison: kindsnap against restic, borg and git on the same
# three daily JSON Lines dumps (benches/gen_dataset.py), measured side by side
# in one run. See benches/README.md.
#
#   benches/compare.sh [--entities N] [--seed S] [--kindsnap PATH] [--out FILE]
#                      [--tools kindsnap,borg,restic,git] [--git-gc aggressive]
#                      [--keep]
#
# Without --kindsnap only the other tools run. Wall seconds and peak RSS come
# from `/usr/bin/time -f '%e %M'`; repository sizes from `du -sb`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

entities=200000
seed=1
kindsnap=""
out=""
tools="kindsnap,borg,restic,git"
git_gc=plain
keep=0

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --entities) entities=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --kindsnap) kindsnap=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --git-gc) git_gc=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$entities" =~ ^[0-9]+$ ]] || { echo "compare.sh: --entities must be a number" >&2; exit 2; }
[[ "$git_gc" == plain || "$git_gc" == aggressive ]] || { echo "compare.sh: --git-gc plain|aggressive" >&2; exit 2; }

if [[ -n "$kindsnap" ]]; then
  [[ -x "$kindsnap" ]] || { echo "compare.sh: not an executable: $kindsnap" >&2; exit 2; }
  kindsnap=$(cd "$(dirname "$kindsnap")" && pwd)/$(basename "$kindsnap")
else
  tools=$(tr ',' '\n' <<<"$tools" | grep -vx kindsnap | paste -sd, - || true)
fi
[[ -n "$out" ]] && out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
IFS=, read -r -a tool_list <<<"$tools"

bash "$here/setup-tools.sh"

log() { printf '%s\n' "$*" >&2; }

# ---- data set, cached by entities + seed + generator version
gen_sum=$(sha256sum "$here/gen_dataset.py" | cut -c1-10)
data="$root/target/bench-data/n$entities-s$seed-$gen_sum"
if [[ ! -f "$data/.complete" ]]; then
  log "== generating $entities entities (seed $seed) into $data"
  rm -rf "$data.tmp"
  python3 "$here/gen_dataset.py" --out "$data.tmp" --entities "$entities" --seed "$seed"
  touch "$data.tmp/.complete"
  rm -rf "$data"
  mv "$data.tmp" "$data"
else
  log "== using cached data set $data"
fi

# ---- scratch space, removed on exit
work=$(mktemp -d "${TMPDIR:-/tmp}/kindsnap-bench.XXXXXX")
cleanup() {
  if ((keep)); then log "== kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
runlog="$work/run.log"
: >"$runlog"

declare -A M          # M[tool:metric] = value
declare -A CMDS       # CMDS[tool] = the commands, for the report
WALL=0 RSS=0

# measure CMD...: runs CMD under /usr/bin/time, output to the run log;
# sets WALL (s) and RSS (KB). Returns CMD's status.
measure() {
  local tf="$work/time.out" rc=0
  printf '\n$ %s\n' "$*" >>"$runlog"
  /usr/bin/time -f '%e %M' -o "$tf" "$@" >>"$runlog" 2>&1 || rc=$?
  read -r WALL RSS < <(tail -n 1 "$tf")
  if ((rc)); then
    log "   FAILED (exit $rc): $*"
    tail -n 15 "$runlog" | sed 's/^/   | /' >&2
  fi
  return "$rc"
}

size_of() { du -sb "$1" | cut -f1; }

# stage DAY: copies dayN.jsonl to the one source path every tool reads.
stage() {
  cp "$data/day$1.jsonl" "$src/current.jsonl.tmp"
  mv "$src/current.jsonl.tmp" "$src/current.jsonl"
}

record_day() { # tool day repo-path
  M[$1:wall$2]=$WALL
  M[$1:rss$2]=$RSS
  M[$1:size$2]=$(size_of "$3")
}

fail() { M[$1:failed]=1; }

run_kindsnap() {
  local R="$work/kindsnap/repo"
  mkdir -p "$work/kindsnap"
  export KINDSNAP_CACHE_DIR="$work/kindsnap/cache"
  CMDS[kindsnap]="kindsnap --repo R init; per day: cp dayN.jsonl D/current.jsonl && kindsnap --repo R snapshot --from jsonl:D/current.jsonl --name dayN; kindsnap --repo R diff day1 day2"
  measure "$kindsnap" --repo "$R" init || { fail kindsnap; return; }
  M[kindsnap:size0]=$(size_of "$R")
  local d
  for d in 1 2 3; do
    stage $d
    measure "$kindsnap" --repo "$R" snapshot --from "jsonl:$src/current.jsonl" --name "day$d" \
      || { fail kindsnap; return; }
    record_day kindsnap $d "$R"
  done
  M[kindsnap:cache]=$(size_of "$KINDSNAP_CACHE_DIR")
  measure "$kindsnap" --repo "$R" diff day1 day2 && M[kindsnap:diff]=$WALL || true
}

run_borg() {
  local R="$work/borg/repo"
  mkdir -p "$work/borg/home"
  export BORG_BASE_DIR="$work/borg/home" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
    BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
  CMDS[borg]="$(borg --version): borg init -e none R; per day: cp dayN.jsonl current.jsonl && borg create --compression zstd,3 R::dayN current.jsonl; borg diff R::day1 day2"
  measure borg init -e none "$R" || { fail borg; return; }
  M[borg:size0]=$(size_of "$R")
  local d
  for d in 1 2 3; do
    stage $d
    (cd "$src" && measure borg create --compression zstd,3 "$R::day$d" current.jsonl) \
      || { fail borg; return; }
    # measure ran in a subshell: re-read its numbers.
    read -r WALL RSS < <(tail -n 1 "$work/time.out")
    record_day borg $d "$R"
  done
  M[borg:cache]=$(size_of "$work/borg/home")
  measure borg diff "$R::day1" day2 && M[borg:diff]=$WALL || true
}

run_restic() {
  local R="$work/restic/repo"
  mkdir -p "$work/restic"
  export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$work/restic/cache"
  local ver
  ver=$(restic version | awk '{print $1, $2}')
  CMDS[restic]="$ver: restic -r R init (repository v2, compression auto); per day: cp dayN.jsonl current.jsonl && restic -r R backup current.jsonl; restic -r R diff ID1 ID2"
  measure restic -r "$R" init || { fail restic; return; }
  M[restic:size0]=$(size_of "$R")
  local d
  for d in 1 2 3; do
    stage $d
    (cd "$src" && measure restic -r "$R" backup --host bench current.jsonl) \
      || { fail restic; return; }
    read -r WALL RSS < <(tail -n 1 "$work/time.out")
    record_day restic $d "$R"
  done
  M[restic:cache]=$(size_of "$RESTIC_CACHE_DIR")
  local ids
  ids=$(restic -r "$R" snapshots --json | python3 -c \
    'import json,sys; s=sorted(json.load(sys.stdin), key=lambda x: x["time"]); print(s[0]["id"], s[1]["id"])')
  # shellcheck disable=SC2086
  measure restic -r "$R" diff $ids && M[restic:diff]=$WALL || true
}

run_git() {
  local G="$work/git"
  mkdir -p "$G"
  local gc="git gc -q"
  [[ "$git_gc" == aggressive ]] && gc="git gc -q --aggressive"
  CMDS[git]="$(git --version): per day: cp dayN.jsonl current.jsonl && git add current.jsonl && git commit --allow-empty -m dayN && $gc; git diff --stat HEAD~2 HEAD~1"
  (cd "$G" && git init -q && git config user.name bench && git config user.email bench@example.com \
    && git config gc.auto 0 && git config commit.gpgsign false) || { fail git; return; }
  M[git:size0]=$(size_of "$G/.git")
  local d save_src=$src
  src=$G
  for d in 1 2 3; do
    stage $d
    (cd "$G" && measure bash -c "git add current.jsonl && git commit -q --allow-empty -m day$d && $gc") \
      || { fail git; src=$save_src; return; }
    read -r WALL RSS < <(tail -n 1 "$work/time.out")
    record_day git $d "$G/.git"
  done
  src=$save_src
  (cd "$G" && measure git diff --stat HEAD~2 HEAD~1) || true
  read -r WALL RSS < <(tail -n 1 "$work/time.out")
  M[git:diff]=$WALL
}

src="$work/src"
mkdir -p "$src"
for t in "${tool_list[@]}"; do
  [[ -z "$t" ]] && continue
  case "$t" in
    kindsnap|borg|restic|git) ;;
    *) echo "compare.sh: unknown tool: $t" >&2; exit 2 ;;
  esac
  log "== $t"
  "run_$t"
  rm -rf "${work:?}/$t" "$src/current.jsonl"
done

# ---- report
fmt() { # printf format, value: "-" when the value is missing
  if [[ -z "${2:-}" ]]; then echo "-"; else awk -v a="$2" "BEGIN { printf \"$1\", a }"; fi
}
calc() { # awk expression over a b; empty when a value is missing
  [[ -n "${2:-}" && -n "${3-x}" ]] || return 0
  awk -v a="$2" -v b="${3:-0}" "BEGIN { printf \"%f\", $1 }"
}
day1_bytes=$(stat -c %s "$data/day1.jsonl")
day2_bytes=$(stat -c %s "$data/day2.jsonl")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
table=$(
  echo "Data: $entities entities, seed $seed; day1.jsonl $(awk -v b="$day1_bytes" 'BEGIN{printf "%.1f", b/1e6}') MB, day2.jsonl = day3.jsonl $(awk -v b="$day2_bytes" 'BEGIN{printf "%.1f", b/1e6}') MB (1% updated, 0.2% deleted, 0.5% inserted). Machine: $(nproc) CPUs, $cpu. MB = 10^6 bytes."
  echo
  echo "| tool | day-1 wall s | day-1 peak RSS MB | day-1 repo MB | day-2 wall s | day-2 growth MB | day-3 growth KB | diff s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${tool_list[@]}"; do
    [[ -z "$t" ]] && continue
    note=""
    [[ -n "${M[$t:failed]:-}" ]] && note=" (failed; its stderr is above, --keep keeps run.log)"
    printf '| %s%s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$note" \
      "$(fmt %.2f "${M[$t:wall1]:-}")" \
      "$(fmt %.0f "$(calc a/1024 "${M[$t:rss1]:-}")")" \
      "$(fmt %.1f "$(calc a/1e6 "${M[$t:size1]:-}")")" \
      "$(fmt %.2f "${M[$t:wall2]:-}")" \
      "$(fmt %.1f "$(calc '(b-a)/1e6' "${M[$t:size1]:-}" "${M[$t:size2]:-}")")" \
      "$(fmt %.0f "$(calc '(b-a)/1e3' "${M[$t:size2]:-}" "${M[$t:size3]:-}")")" \
      "$(fmt %.2f "${M[$t:diff]:-}")"
  done
  echo
  echo "Commands (each day: the day's file is first copied to the one source path, not timed):"
  echo
  for t in "${tool_list[@]}"; do
    [[ -n "$t" && -n "${CMDS[$t]:-}" ]] && echo "- $t — ${CMDS[$t]}"
  done
  echo
  echo "Per step (wall s / peak RSS MB / repository bytes after the step):"
  echo
  for t in "${tool_list[@]}"; do
    [[ -z "$t" ]] && continue
    line="- $t: init ${M[$t:size0]:--} B"
    for d in 1 2 3; do
      line+="; day$d $(fmt %.2f "${M[$t:wall$d]:-}") s / $(fmt %.0f "$(calc a/1024 "${M[$t:rss$d]:-}")") MB / ${M[$t:size$d]:--} B"
    done
    echo "$line"
  done
  echo
  line="Caches kept outside the repository after day 3 (not in the sizes above):"
  for t in "${tool_list[@]}"; do
    [[ -n "$t" && -n "${M[$t:cache]:-}" ]] && line+=" $t $(fmt %.1f "$(calc a/1e6 "${M[$t:cache]}")") MB;"
  done
  echo "${line%;}."
  echo
  echo "Growth = change of \`du -sb\` of the repository (git: \`.git\`); wall s and peak RSS from \`/usr/bin/time -f '%e %M'\`; Diff columns differ in kind: kindsnap diffs entities by kind, git diffs lines (one entity per line), borg/restic only report that the file changed."
)
printf '%s\n' "$table"
if [[ -n "$out" ]]; then
  printf '%s\n' "$table" >"$out"
  log "== table written to $out"
fi
