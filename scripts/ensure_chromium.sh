#!/usr/bin/env bash
# The browser tests (tests/browser.py) drive Debian's chromium with Playwright. Install it with
# apt-get when it is missing and we can (root, or passwordless sudo); otherwise say so loudly: the
# browser tests then skip with the same message. Playwright's own browser download is never used.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if [ "$SUDO" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get)..." >&2
  $SUDO apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium \
    >/dev/null 2>&1
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "*** WARNING: chromium could not be installed: the browser tests will be SKIPPED ***" >&2
  exit 1
fi
