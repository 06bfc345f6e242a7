#!/usr/bin/env bash
# Profiles the surviving gateway (B) during the busiest second of the
# `since_seq` resume storm (benches/storm.rs), with Linux `perf`.
#
#   bash scripts/profile-storm.sh        # needs perf (Debian: linux-perf) and the pinned tools
#   STORM_CLIENTS=15000 bash scripts/profile-storm.sh   # the 15,000-client storm
#
# perf samples the whole machine while the bench runs; beside it, B's CPU
# time is sampled every 0.1 s on perf's clock (/proc/uptime), and the report
# is cut to B's busiest second: the storm.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "profile-storm: perf not found (apt-get install linux-perf)" >&2; exit 1; }
export PATH="$PWD/.tools/bin:$PATH"
out="target/bench-report"
mkdir -p "$out"
cargo bench --bench storm --no-run >/dev/null 2>&1

perf record -F 499 -a -g -o "$out/storm.perf.data" >/dev/null 2>&1 &
perf_pid=$!
(
    while true; do
        t=$(cut -d' ' -f1 /proc/uptime)
        for p in $(pgrep -f 'release/switchboard serve' || true); do
            read -r -a stat < "/proc/$p/stat" 2>/dev/null || continue
            echo "$t $p $((stat[13] + stat[14]))"
        done
        sleep 0.1
    done
) > "$out/storm.cpu.txt" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT

STORM_ONLY=since_seq cargo bench --bench storm | tee "$out/storm.txt"
kill -INT "$perf_pid"
wait "$perf_pid" || true
kill "$sampler" 2>/dev/null || true

# B: the gateway sampled last; its busiest second.
read -r window pid < <(python3 - "$out/storm.cpu.txt" <<'PY'
import collections, sys
series = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, p, ticks = line.split()
    series[p].append((float(t), int(ticks)))
b = max(series, key=lambda p: series[p][-1][0])
s, best = series[b], (0, 0.0, 0.0)
for i, (t0, c0) in enumerate(s):
    for t1, c1 in s[i:]:
        if t1 - t0 >= 1.0:
            best = max(best, (c1 - c0, t0, t1))
            break
print(f"{best[1]},{best[2]} {b}")
PY
)
echo
echo "gateway B (pid $pid), busiest second $window (perf clock):"
perf report -i "$out/storm.perf.data" --pid "$pid" --time "$window" --no-children \
    --percentage relative --stdio -g none --percent-limit 1 2>/dev/null | grep '%'
