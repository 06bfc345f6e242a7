#!/usr/bin/env bash
# Makes sure a Chromium for the browser tests (clients/typescript/test/browser.test.mjs)
# is installed, and prints its path.
#
# Looks for SWITCHBOARD_CHROMIUM, then `chromium` and `chromium-browser` on PATH.
# When none is found, installs Debian's `chromium` package with apt-get, as root
# or through `sudo -n`; otherwise fails and says how to install one. It never
# downloads a browser build of its own (no `playwright install`): the tests
# drive the system's Chromium through playwright-core's `executablePath`.
set -euo pipefail

die() {
    echo "browser: ERROR: $*" >&2
    exit 1
}

# The first Chromium found, or nothing.
find_chromium() {
    if [[ -n "${SWITCHBOARD_CHROMIUM:-}" ]]; then
        [[ -x "$SWITCHBOARD_CHROMIUM" ]] \
            || die "SWITCHBOARD_CHROMIUM=$SWITCHBOARD_CHROMIUM is not an executable file"
        echo "$SWITCHBOARD_CHROMIUM"
        return 0
    fi
    command -v chromium || command -v chromium-browser || true
}

found="$(find_chromium)"
if [[ -z "$found" ]]; then
    if [[ "$(id -u)" == 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        die "no Chromium found (SWITCHBOARD_CHROMIUM, chromium, chromium-browser) and not root: install it with \`sudo apt-get install chromium\` (Debian/Ubuntu), or point SWITCHBOARD_CHROMIUM at a Chromium or Chrome executable; the browser tests fail without one"
    fi
    command -v apt-get >/dev/null \
        || die "no Chromium found and no apt-get to install Debian's chromium: install a Chromium and set SWITCHBOARD_CHROMIUM to its executable"
    echo "browser: installing Debian's chromium (apt-get install -y chromium)" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq >&2 \
        || die "apt-get update failed: install chromium yourself (apt-get install chromium) or set SWITCHBOARD_CHROMIUM"
    "${as_root[@]}" apt-get install -y -qq chromium >/dev/null \
        || die "apt-get install chromium failed: install it yourself or set SWITCHBOARD_CHROMIUM"
    found="$(find_chromium)"
    [[ -n "$found" ]] || die "apt-get installed chromium but no chromium is on PATH"
fi
echo "browser: $("$found" --version 2>/dev/null | head -1 || echo chromium) ($found)" >&2
echo "$found"
