# switchboard: WebSocket gateway over NATS JetStream.
# `just tools` (a dependency of run/test/bench) installs the pinned just and
# nats-server into the git-ignored .tools/ when they are not on PATH.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The pinned tools in .tools/bin come first, for recipes and for the tests
# (which look for nats-server on PATH, then in .tools/bin).
export PATH := justfile_directory() + "/.tools/bin:" + env_var('PATH')

# List the recipes
default:
    @just --list

# Install just and nats-server >= 2.10 into .tools/ unless already available
tools:
    @bash scripts/tools.sh

# Build release and run the gateway in dev mode (--dev) with a local nats-server (prints a token and client examples first)
run *ARGS: tools
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    bin=./target/release/switchboard
    sub="$(python3 -c 'import uuid;print(uuid.uuid4())')"
    # --dev: the development secret, unless SWITCHBOARD_JWT_SECRET is set (the same for both).
    token="$("$bin" token --dev --sub "$sub" --channels '*' --roles publisher,auditor --name dev --ttl 24h)"
    listen="${SWITCHBOARD_LISTEN:-127.0.0.1:8080}"
    set -- {{ ARGS }}
    prev=""
    for arg in "$@"; do
        case "$arg" in --listen=*) listen="${arg#--listen=}" ;; esac
        [[ "$prev" == --listen ]] && listen="$arg"
        prev="$arg"
    done
    listen="${listen/#0.0.0.0:/127.0.0.1:}"
    channel_id="$(python3 -c 'import uuid;print(uuid.uuid4())')"
    echo "token: $token"
    echo "follow (another terminal, repo root): $bin tail --url ws://$listen --token $token global"
    echo "publish (another terminal, repo root): $bin publish --type channel_created --data '{\"channel_id\":\"$channel_id\",\"channel_name\":\"general\"}'"
    echo
    exec "$bin" serve --dev "$@"

# A local cluster: 3 nats-servers with JetStream (stores in ./data/cluster) and two gateways on it (R3 stream, sessions in the R3 bucket); prints their addresses and a token; Ctrl-C stops everything
cluster: tools
    cargo build --release
    bash scripts/cluster.sh

# Run all tests: unit, integration against real nats-servers, and a smoke run of each bench
test: tools
    cargo test --all-targets

# Check formatting and clippy lints (warnings are errors)
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Lint, then test (what .ci/run does)
ci: lint test

# Run one benchmark (publish, fanout, replay, projection, storm, sessions) or all of them
bench WHICH="all": tools
    #!/usr/bin/env bash
    set -euo pipefail
    which="{{ WHICH }}"
    if [[ "$which" != all ]]; then
        exec cargo bench --bench "$which"
    fi
    # Every bench target of the package (benches/), in name order.
    mapfile -t benches < <(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
        | python3 -c 'import json,sys; m=json.load(sys.stdin); print("\n".join(sorted({t["name"] for p in m["packages"] for t in p["targets"] if "bench" in t["kind"]})))' 2>/dev/null \
        | sed '/^$/d')
    if [[ ${#benches[@]} -eq 0 ]]; then
        shopt -s nullglob
        for f in benches/*.rs; do benches+=("$(basename "$f" .rs)"); done
    fi
    if [[ ${#benches[@]} -eq 0 ]]; then
        echo "bench: no bench targets found (benches/ is empty)" >&2
        exit 1
    fi
    for name in "${benches[@]}"; do
        echo "==> cargo bench --bench $name"
        cargo bench --bench "$name"
    done

# Property-based fuzzing of the WebSocket frame parsing (PROPTEST_CASES=20000 unless set)
fuzz:
    PROPTEST_CASES="${PROPTEST_CASES:-20000}" cargo test --test fuzz_frames -- --include-ignored

# Remove the local data directory (./data)
_clean-data:
    rm -rf ./data
