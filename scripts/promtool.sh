#!/usr/bin/env bash
# Makes sure a promtool (Prometheus's rule checker) is installed for the
# deploy tests (tests/deploy.rs checks and unit-tests deploy/*.rules.yml with
# it), and prints its path.
#
# Looks for SWITCHBOARD_PROMTOOL, then `promtool` on PATH. When none is found,
# installs Debian's `prometheus` package (which ships promtool) with apt-get,
# as root or through `sudo -n`, without starting the Prometheus service;
# otherwise fails and says how to install one.
set -euo pipefail

die() {
    echo "promtool: ERROR: $*" >&2
    exit 1
}

# The first promtool found, or nothing.
find_promtool() {
    if [[ -n "${SWITCHBOARD_PROMTOOL:-}" ]]; then
        [[ -x "$SWITCHBOARD_PROMTOOL" ]] \
            || die "SWITCHBOARD_PROMTOOL=$SWITCHBOARD_PROMTOOL is not an executable file"
        echo "$SWITCHBOARD_PROMTOOL"
        return 0
    fi
    command -v promtool || true
}

found="$(find_promtool)"
if [[ -z "$found" ]]; then
    if [[ "$(id -u)" == 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        die "no promtool found (SWITCHBOARD_PROMTOOL, promtool) and not root: install it with \`sudo apt-get install prometheus\` (Debian/Ubuntu; then \`sudo systemctl disable --now prometheus\` if you do not want the server), or download a Prometheus release and point SWITCHBOARD_PROMTOOL at its promtool; the deploy tests fail without one"
    fi
    command -v apt-get >/dev/null \
        || die "no promtool found and no apt-get to install Debian's prometheus: install a Prometheus release and set SWITCHBOARD_PROMTOOL to its promtool"
    echo "promtool: installing Debian's prometheus for its promtool (apt-get install -y prometheus)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package's service is not started: only its promtool is wanted.
    # (A policy-rc.d that already refuses every start is left as it is.)
    added_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
        added_policy=yes
    fi
    installed=yes
    "${as_root[@]}" apt-get update -qq >&2 && "${as_root[@]}" apt-get install -y -qq prometheus >/dev/null \
        || installed=""
    if [[ -n "$added_policy" ]]; then
        "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    [[ -n "$installed" ]] \
        || die "apt-get install prometheus failed: install it yourself or set SWITCHBOARD_PROMTOOL"
    found="$(find_promtool)"
    [[ -n "$found" ]] || die "apt-get installed prometheus but no promtool is on PATH"
fi
echo "promtool: $("$found" --version 2>&1 | head -1 || echo promtool) ($found)" >&2
echo "$found"
