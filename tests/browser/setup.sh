#!/usr/bin/env bash
# Installs what tests/browser/test_notebooks_in_browser.py needs:
#   * the `playwright` Python package (exact pin, read from requirements-dev.txt when it has one),
#     installed into .venv (or the interpreter given as $PYTHON_BIN);
#   * Debian's `chromium` package, which provides /usr/bin/chromium.
# It never runs `playwright install` (that downloads browsers from the internet); the test drives
# the system Chromium through `executable_path`. Without root, it prints what to install and exits 1;
# with --optional it exits 0 instead (the browser test then skips), for use from `make test`.
set -euo pipefail
OPTIONAL=0
[ "${1:-}" = "--optional" ] && OPTIONAL=1
cd "$(dirname "$0")/../.."

PYTHON_BIN=${PYTHON_BIN:-.venv/bin/python}
PLAYWRIGHT_PIN="playwright==1.65.2"
if [ -f requirements-dev.txt ] && grep -qE '^playwright==' requirements-dev.txt; then
    PLAYWRIGHT_PIN=$(grep -E '^playwright==' requirements-dev.txt | head -n1 | tr -d '[:space:]')
fi

if ! "$PYTHON_BIN" -c 'import playwright.sync_api' 2>/dev/null \
   || [ "$("$PYTHON_BIN" -c 'from importlib.metadata import version; print(version("playwright"))')" != "${PLAYWRIGHT_PIN#playwright==}" ]; then
    echo "browser test set-up: pip install $PLAYWRIGHT_PIN"
    if ! "$PYTHON_BIN" -m pip install --quiet --disable-pip-version-check "$PLAYWRIGHT_PIN"; then
        echo "browser test set-up: could not install $PLAYWRIGHT_PIN" >&2
        [ "$OPTIONAL" -eq 1 ] && { echo "continuing; tests/browser will be skipped" >&2; exit 0; }
        exit 1
    fi
fi

chromium_path() {
    for c in "${COURSEKIT_CHROMIUM:-}" /usr/bin/chromium chromium chromium-browser; do
        [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
    done
    return 1
}

if ! chromium_path >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "browser test set-up: Chromium is missing and this needs root. Run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
        echo "(or point COURSEKIT_CHROMIUM at an existing Chromium/Chrome binary)" >&2
        if [ "$OPTIONAL" -eq 1 ]; then
            echo "browser test set-up: continuing without Chromium; tests/browser will be skipped" >&2
            exit 0
        fi
        exit 1
    fi
    echo "browser test set-up: apt-get install chromium"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "browser test set-up: $("$PYTHON_BIN" -c 'from importlib.metadata import version; print("playwright", version("playwright"))'), $(chromium_path) ($("$(chromium_path)" --version 2>/dev/null || echo 'version unknown'))"
