# switchboard: WebSocket gateway over NATS JetStream.
# On a fresh clone `./x RECIPE` runs these recipes: it checks the
# prerequisites, makes the pinned Rust toolchain (rust-toolchain.toml)
# available and installs just and nats-server first. `just tools` (a
# dependency of run/test/bench) installs the pinned just and nats-server into
# the git-ignored .tools/ when they are not on PATH; `just sdk` builds the
# TypeScript SDK and the console (npm ci with the committed lock file; skipped
# when its outputs are newer than its inputs), which build.rs embeds (and
# builds itself when they are missing or stale and Node is on PATH); the
# browser tests install Debian's chromium when missing (scripts/browser.sh).

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

# Build the TypeScript SDK and the /console page (clients/typescript: npm ci when node_modules is missing or older than the lock file, then npm run build unless dist/ is newer than every input)
sdk:
    #!/usr/bin/env bash
    set -euo pipefail
    cd clients/typescript
    command -v npm >/dev/null || { echo "sdk: npm not found: install Node.js >= 20 with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
    # npm ci writes node_modules/.package-lock.json: older than the lock file means stale.
    if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
        npm ci --no-audit --no-fund
    fi
    # The stamp is dated when the last complete build began. `npm run build`
    # reads src/, console/, scripts/, the tsconfig files, package.json and
    # the installed packages (not schemas/: `npm run generate` writes
    # src/schema.generated.ts from them, and the JS tests check it).
    stamp=dist/.sdk-built
    outputs=(dist/index.js dist/index.d.ts dist/switchboard.js dist/console/index.html dist/console/console.js dist/console/console.css)
    fresh=true
    for f in "$stamp" "${outputs[@]}"; do [[ -f "$f" ]] || fresh=false; done
    if $fresh; then
        # Any input newer than the stamp (or a failed look) means a build.
        newer="$(find src console scripts package.json package-lock.json tsconfig*.json node_modules/.package-lock.json -newer "$stamp" -print -quit)" || newer="?"
        if [[ -z "$newer" ]]; then
            echo "sdk: clients/typescript/dist is up to date"
            exit 0
        fi
    fi
    mkdir -p dist
    touch dist/.sdk-building
    npm run build
    mv dist/.sdk-building "$stamp"

# Build release (with the console) and run the gateway in dev mode (--dev) with a local nats-server (prints a token, client examples and the console's address first)
run *ARGS: tools sdk
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    bin="${CARGO_TARGET_DIR:-./target}/release/switchboard"
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
    echo "console (a browser; 'Use dev token'): http://$listen/console"
    echo
    exec "$bin" serve --dev "$@"

# A local cluster: 3 nats-servers with JetStream (stores in ./data/cluster) and two gateways on it (R3 stream, sessions in the R3 bucket), on free loopback ports (CLUSTER_PORT, GATEWAY_PORT pin them); prints their addresses, a token, a tail and a publish command and the consoles; Ctrl-C stops everything
cluster: tools
    cargo build --release
    bash scripts/cluster.sh

# Run all tests: unit, integration against real nats-servers and a real OpenID Connect provider, a smoke run of each bench, then the SDK's and the browser tests
test: tools sdk _oidc
    cargo test --all-targets
    cargo test -p switchboard-harness --all-targets
    @just _test-js

# The OpenID Connect provider the tests run (harness/oidc: oidc-provider; npm ci when node_modules is missing or older than the lock file)
_oidc:
    #!/usr/bin/env bash
    set -euo pipefail
    cd harness/oidc
    command -v npm >/dev/null || { echo "oidc: npm not found: install Node.js >= 20 with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
    # npm ci writes node_modules/.package-lock.json: older than the lock file means stale.
    if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
        npm ci --no-audit --no-fund
    fi

# Run the TypeScript SDK's and the browser tests only (against the debug gateway build)
test-js: tools sdk
    cargo build
    @just _test-js

# The JS tests (node --test), with a Chromium for the browser tests (installed when missing and possible)
_test-js:
    #!/usr/bin/env bash
    set -euo pipefail
    # Without a Chromium the browser tests fail and say why; the others still run.
    if chromium="$(bash scripts/browser.sh)"; then
        export SWITCHBOARD_CHROMIUM="$chromium"
    fi
    cd clients/typescript
    npm test

# Build the container image (deploy/Dockerfile) around a release build, with podman or else docker; ARGS go to the engine's build (e.g. --from IMAGE to use another base)
image TAG="switchboard:latest" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    engine="$(command -v podman || command -v docker || true)"
    [[ -n "$engine" ]] || { echo "image: neither podman nor docker found: install one (Debian: apt-get install podman)" >&2; exit 1; }
    cargo build --release
    # The build context is the binary alone (target/ is far too large to send).
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cp "${CARGO_TARGET_DIR:-target}/release/switchboard" "$context/"
    "$engine" build -t "{{ TAG }}" {{ ARGS }} -f deploy/Dockerfile "$context"

# Check formatting and clippy lints (warnings are errors)
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy -p switchboard-harness --all-targets -- -D warnings

# Lint, then test (what .ci/run does)
ci: lint test

# Run one benchmark (publish, fanout, replay, projection, storm, sessions, session_writes, sweep, disconnect, upgrades, presence, catalog, failover, compression, soak) or all of them; all leaves out soak (an hour under churn: `just bench soak`, SOAK_SECS to shorten it)
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
        # The soak runs for an hour: only on its own (`just bench soak`).
        if [[ "$name" == soak ]]; then
            echo "==> soak left out (an hour: run \`just bench soak\`)"
            continue
        fi
        echo "==> cargo bench --bench $name"
        cargo bench --bench "$name"
    done

# Property-based fuzzing of the WebSocket frame parsing (PROPTEST_CASES=20000 unless set)
fuzz:
    PROPTEST_CASES="${PROPTEST_CASES:-20000}" cargo test --test fuzz_frames -- --include-ignored

# Remove the local data directory (./data)
_clean-data:
    rm -rf ./data

# The Autobahn|Testsuite's fuzzing client (sections 1-7, and 12-13: permessage-deflate) against an echo server on the gateway's own transport (examples/autobahn_echo.rs); Python 2.7 (pyenv's 2.7.18) in a virtualenv under .tools/autobahn; fails unless every case passes; the report is in target/autobahn/
autobahn:
    bash scripts/autobahn.sh
