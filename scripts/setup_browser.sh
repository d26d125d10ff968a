#!/usr/bin/env bash
# Installs the browser the browser tests drive: Debian's chromium at /usr/bin/chromium (Playwright's own browser
# download cannot work here). Called by scripts/setup.sh; fast and silent when chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  # not Debian/Ubuntu: the browser test skips outside CI (and fails in CI, which runs on Debian)
  echo "setup_browser: no apt-get here; install Chromium at /usr/bin/chromium yourself to run the browser test." >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
