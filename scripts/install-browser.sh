#!/usr/bin/env bash
# Install what the explorer's browser test needs, only where it is missing (idempotent):
# Debian's `chromium` (apt) and Playwright's Python package (pip, into .venv). Playwright's
# own browser download (`playwright install`) is never used: the test drives /usr/bin/chromium.
#
#   scripts/install-browser.sh            # from the repository root, or anywhere
#   PY=/path/to/python scripts/install-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium) (already installed)"
else
  echo "chromium: installing Debian's package"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: installing chromium needs root or sudo" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

if [ ! -x "$PY" ]; then
  echo "error: no Python at $PY: run 'make setup' first (or set PY)" >&2
  exit 1
fi
if "$PY" -c "import playwright" >/dev/null 2>&1; then
  echo "playwright: $("$PY" -m pip show playwright 2>/dev/null | sed -n 's/^Version: //p') (already installed)"
else
  echo "playwright: installing into $PY's environment"
  "$PY" -m pip install -q "playwright>=1.45"
fi
