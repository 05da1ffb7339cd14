#!/usr/bin/env bash
# Make a headless Chromium available for tests/report/test_browser.py.
# Idempotent: does nothing when chromium is already on PATH (or at /usr/bin/chromium).
# Installs Debian's `chromium` with apt-get when run as root on an apt system;
# otherwise prints what to do and exits 0 (the browser test then skips with that reason).
# Playwright's Python package bundles its own driver; no browser is downloaded.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  echo "chromium: $(command -v chromium || echo /usr/bin/chromium)"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium
  echo "chromium installed: $(command -v chromium)"
else
  echo "chromium not found and cannot install it here (needs root and apt-get);" \
       "install a Chromium and set THRESHER_CHROMIUM=/path/to/chromium" >&2
fi
