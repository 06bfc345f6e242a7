#!/usr/bin/env bash
# Runs the Autobahn|Testsuite's fuzzing client (`wstest -m fuzzingclient`)
# against an echo server on the gateway's own transport
# (examples/autobahn_echo.rs: its handshake and permessage-deflate
# negotiation, its inflating reader and its frame writer), and fails unless
# every case passes.
#
# The suite runs under Python 2.7 (pyenv's 2.7.18, or AUTOBAHN_PYTHON), in a
# virtualenv under .tools/autobahn made on first use with pinned packages.
# Cases: sections 1-7 (framing, pings, reserved bits, opcodes, fragments,
# UTF-8, closing) and 12-13 (permessage-deflate: payloads, and every offer
# of window sizes and context takeover), or AUTOBAHN_CASES (a JSON list).
# Every case must be OK, NON-STRICT or INFORMATIONAL, UNIMPLEMENTED
# included as a failure. The report is written to target/autobahn/
# (index.html, index.json).
set -euo pipefail

die() {
    echo "autobahn: ERROR: $*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${AUTOBAHN_PYTHON:-${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python}"
venv=.tools/autobahn
report=target/autobahn
cases="${AUTOBAHN_CASES:-[\"1.*\", \"2.*\", \"3.*\", \"4.*\", \"5.*\", \"6.*\", \"7.*\", \"12.*\", \"13.*\"]}"

# The virtualenv: virtualenv 16 (the last to make Python 2 environments
# from Python 2 itself), then the suite with the versions that install
# and run on Python 2.7.
if [[ ! -x "$venv/bin/wstest" ]]; then
    [[ -x "$python" ]] || die "no Python 2.7 at $python: install it (pyenv install 2.7.18) or set AUTOBAHN_PYTHON"
    "$python" -m pip install --disable-pip-version-check -q --target .tools/virtualenv-py2 'virtualenv==16.7.12'
    rm -rf "$venv"
    PYTHONPATH=.tools/virtualenv-py2 "$python" -m virtualenv -q -p "$python" "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q \
        'autobahntestsuite==25.10.1' 'autobahn==0.10.9' 'Twisted==19.10.0' \
        'txaio==2.1.0' 'zope.interface==4.6.0' 'six==1.16.0' \
        'pyOpenSSL==19.1.0' 'cryptography==3.3.2' 'service-identity==18.1.0' \
        'klein==17.10.0' 'Werkzeug==1.0.1' 'Jinja2==2.11.3' 'MarkupSafe==1.1.1' \
        'ujson==2.0.3' 'wsaccel==0.6.6' 'unittest2==1.1.0'
fi

# The echo server, built in release (the suite's larger cases are slow in
# a debug build), on a free port.
cargo build --release --quiet --example autobahn_echo
echo_bin="${CARGO_TARGET_DIR:-target}/release/examples/autobahn_echo"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$report"
"$echo_bin" "127.0.0.1:$port" >"$report/echo.log" 2>&1 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "echoing on" "$report/echo.log" 2>/dev/null && break
    kill -0 "$echo_pid" 2>/dev/null || die "the echo server exited: $(cat "$report/echo.log")"
    sleep 0.1
done

cat >"$report/fuzzingclient.json" <<JSON
{
    "outdir": ".",
    "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$port"}],
    "cases": $cases,
    "exclude-cases": [],
    "exclude-agent-cases": {}
}
JSON
(cd "$report" && "$root/$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1) \
    || die "wstest failed: $(tail -20 "$report/wstest.log")"

# Every case's verdict, counted per section; any other verdict fails.
"$python" - "$report/index.json" <<'PY'
import json, sys
from collections import Counter, defaultdict
results = json.load(open(sys.argv[1]))["switchboard"]
passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
sections = defaultdict(Counter)
failed = []
for case, result in results.items():
    sections[int(case.split(".")[0])][result["behavior"]] += 1
    if result["behavior"] not in passing or result["behaviorClose"] not in passing:
        failed.append((case, result["behavior"], result["behaviorClose"]))
for section in sorted(sections):
    counts = ", ".join("%s %d" % kv for kv in sorted(sections[section].items()))
    print("section %2d: %s" % (section, counts))
print("%d cases, %d failed" % (len(results), len(failed)))
def key(case):
    return [int(part) for part in case[0].split(".")]
for case in sorted(failed, key=key):
    print("  %s: %s (close: %s)" % case)
sys.exit(1 if failed else 0)
PY
