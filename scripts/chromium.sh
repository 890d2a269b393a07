#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver are installed, from
# Debian's `chromium` and `chromium-driver` packages, for the browser test
# of `kindsnap ui` (tests/ui.rs). Idempotent: does nothing when
# /usr/bin/chromium and /usr/bin/chromedriver exist. Needs root (or sudo)
# only to install.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  exit 0
fi

echo "chromium.sh: installing Debian's chromium and chromium-driver packages" >&2
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
[[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || {
  echo "chromium.sh: /usr/bin/chromium or /usr/bin/chromedriver missing after the install" >&2
  exit 1
}
