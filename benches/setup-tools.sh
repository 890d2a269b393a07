#!/usr/bin/env bash
# Installs the tools benches/compare.sh measures kindsnap against, from the
# Debian archive: restic, borgbackup, git, GNU time (/usr/bin/time) and
# hyperfine, and the sqlite3 CLI (benches/sql.sh). Idempotent: prints nothing and touches nothing when everything
# is already installed. Needs root (or sudo) only when something is missing.
set -euo pipefail

# command -> Debian package
declare -A pkg_for=(
  [restic]=restic
  [borg]=borgbackup
  [git]=git
  [/usr/bin/time]=time
  [hyperfine]=hyperfine
  [python3]=python3
  [sqlite3]=sqlite3
)

missing=()
for cmd in "${!pkg_for[@]}"; do
  if [[ "$cmd" == /* ]]; then
    [[ -x "$cmd" ]] && continue
  else
    command -v "$cmd" >/dev/null 2>&1 && continue
  fi
  missing+=("${pkg_for[$cmd]}")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup-tools: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only if they are absent or older than a day.
lists=/var/lib/apt/lists
if [[ -z $(find "$lists" -maxdepth 1 -name '*Packages*' -mtime -1 -print -quit 2>/dev/null) ]]; then
  "${sudo[@]}" apt-get update -qq >&2
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
